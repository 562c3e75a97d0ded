"""A small XVA writer of the tests' own, written from the format description only (the
reference's §5.3/§5.4, XO's minimal templates), never from xapi_server.formats: if both
sides shared a misreading, an import of this file would not catch it.

    data = xva(vm_name="from-writer", disks=[bytes_of_disk, ...], networks=["net0"])

The tar is Python's tarfile (ustar, as XO's tar-stream writes), the chunks 1 MiB with
`<id>/%08d` names and `.xxhash` members (XXH64, 16 uppercase hex digits), zero chunks
left out except the first and last, ova.xml a hand-built XML-RPC struct with only the
fields XO's templates carry (the importer must be lenient about the rest).
"""
from __future__ import annotations

import io
import tarfile
from xml.sax.saxutils import escape

import xxhash

CHUNK = 1024 * 1024


def xml_value(value) -> str:
    """An XML-RPC value in ocaml-rpc's spelling."""
    if isinstance(value, bool):
        return f"<value><boolean>{int(value)}</boolean></value>"
    if isinstance(value, (int, str)):
        return f"<value>{escape(str(value))}</value>"
    if isinstance(value, dict):
        members = "".join(f"<member><name>{escape(k)}</name>{xml_value(v)}</member>"
                          for k, v in value.items())
        return f"<value><struct>{members}</struct></value>"
    if isinstance(value, list):
        items = "".join(xml_value(v) for v in value)
        return f"<value><array><data>{items}</data></array></value>"
    raise TypeError(value)


def ova_xml(vm_name: str, disk_sizes: list[int], networks: list[str], ids=None) -> str:
    """The metadata as text (see ova_header)."""
    return xml_value(ova_header(vm_name, disk_sizes, networks, ids))


def ova_header(vm_name: str, disk_sizes: list[int], networks: list[str],
               ids=None) -> dict:
    """The metadata: a VM with one VBD per disk and one VIF per network. `ids` gives
    the disk VDIs' ids (default Ref:100, Ref:101 ...)."""
    vdi_ids = ids or [f"Ref:{100 + i}" for i in range(len(disk_sizes))]
    vbd_ids = [f"Ref:{200 + i}" for i in range(len(disk_sizes))]
    vif_ids = [f"Ref:{300 + i}" for i in range(len(networks))]
    net_ids = [f"Ref:{400 + i}" for i in range(len(networks))]
    objects = [{"class": "VM", "id": "Ref:1", "snapshot": {
        "name_label": vm_name, "name_description": "made by tests/xva_writer.py",
        "is_a_template": False, "memory_static_max": str(256 << 20),
        "memory_dynamic_max": str(256 << 20), "memory_dynamic_min": str(256 << 20),
        "memory_static_min": str(128 << 20), "VCPUs_max": "2", "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cd"}, "platform": {"acpi": "1"},
        "other_config": {"written-by": "xva_writer"}, "VBDs": vbd_ids, "VIFs": vif_ids,
        "power_state": "Halted"}}]
    for i, size in enumerate(disk_sizes):
        objects.append({"class": "VBD", "id": vbd_ids[i], "snapshot": {
            "VM": "Ref:1", "VDI": vdi_ids[i], "userdevice": str(i), "bootable": i == 0,
            "mode": "RW", "type": "Disk", "empty": False, "unpluggable": False}})
        objects.append({"class": "VDI", "id": vdi_ids[i], "snapshot": {
            "name_label": f"writer disk {i}", "name_description": "", "virtual_size": str(size),
            "type": "user", "read_only": False, "sharable": False, "SR": "Ref:9"}})
    for i, name in enumerate(networks):
        objects.append({"class": "VIF", "id": vif_ids[i], "snapshot": {
            "VM": "Ref:1", "network": net_ids[i], "device": str(i),
            "MAC": f"02:00:00:00:00:{i:02x}", "MTU": "1500"}})
        objects.append({"class": "network", "id": net_ids[i], "snapshot": {
            "name_label": name, "bridge": "xenbr0"}})
    objects.append({"class": "SR", "id": "Ref:9", "snapshot": {
        "name_label": "somewhere", "content_type": "user"}})
    version = {"hostname": "localhost", "date": "2024-01-01", "product_version": "8.2.1",
               "product_brand": "XCP-ng", "build_number": "release/yangtze/master/58",
               "xapi_major": "1", "xapi_minor": "20", "export_vsn": "2"}
    return {"version": version, "objects": objects}


class Tar:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.USTAR_FORMAT)

    def add(self, name: str, data: bytes):
        info = tarfile.TarInfo(name)
        info.size = len(data)
        self.tar.addfile(info, io.BytesIO(data))

    def bytes(self) -> bytes:
        # two zero blocks end the archive; no padding to tar's 10 KiB records
        return self.buf.getvalue() + b"\0" * 1024


def add_disk(tar: Tar, ident: str, data: bytes, checksum=None):
    count = max(1, -(-len(data) // CHUNK))
    for n in range(count):
        piece = data[n * CHUNK:(n + 1) * CHUNK]
        if n not in (0, count - 1) and not piece.strip(b"\0"):
            continue
        tar.add(f"{ident}/{n:08d}", piece)
        digest = checksum(piece) if checksum else b"%016X" % xxhash.xxh64_intdigest(piece)
        tar.add(f"{ident}/{n:08d}.xxhash", digest)


def xva(vm_name: str, disks: list[bytes], networks=("Pool-wide network",)) -> bytes:
    tar = Tar()
    tar.add("ova.xml", ova_xml(vm_name, [len(d) for d in disks], list(networks)).encode())
    for i, data in enumerate(disks):
        add_disk(tar, f"Ref:{100 + i}", data)
    return tar.bytes()
