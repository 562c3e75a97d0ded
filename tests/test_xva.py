"""VM export and import (XVA) against the real server: GET /export, PUT /import,
/export_metadata, /import_metadata, over HTTPS with the task protocol, and through the
real `xe` client.

Disks are qcow2 volumes of a file SR; their bytes are written with qemu-io and read back
with qemu-img convert (sha256 of the whole disk). An XVA made by the tests' own writer
(tests/xva_writer.py) imports; truncated, corrupt and hostile archives are refused with
xapi's error codes and leave no VM, VDI, VBD or VIF behind.
"""
import copy
import hashlib
import io
import random
import os
import re
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import zlib
import xml.etree.ElementTree as ET

import pytest
import xxhash
import zstandard

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import ServerProcess, add_local_user  # noqa: E402
import xva_writer  # noqa: E402

MiB = 1024 * 1024
XE = os.path.join(os.path.dirname(sys.executable), "xe")


# -- fixtures and helpers --------------------------------------------------------------

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-xva"))).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def x(srv):
    session = srv.session()
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture(scope="module")
def sr(x, tmp_path_factory):
    host = x.host.get_all()[0]
    path = str(tmp_path_factory.mktemp("xva-sr") / "sr")
    ref = x.SR.create(host, {"path": path}, "0", "xva test SR", "", "file", "user", False, {})
    return ref, path


@pytest.fixture(scope="module")
def network(x):
    return x.network.create({"name_label": "xva test network", "name_description": "",
                             "MTU": "1500", "other_config": {}})


def image(x, sr, vdi) -> str:
    return os.path.join(sr[1], x.VDI.get_location(vdi) + ".qcow2")


def qemu_io(path, command):
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], check=True,
                   capture_output=True)


def disk_sha(x, sr, vdi, tmp_path) -> str:
    out = str(tmp_path / f"read-{vdi[-12:]}.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw",
                    image(x, sr, vdi), out], check=True)
    with open(out, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    os.unlink(out)
    return digest


def make_vm(x, sr, network, name, disks):
    """A halted VM with a VDI per (size, [qemu-io writes]) and one VIF."""
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, name)
    x.VM.set_is_a_template(vm, False)
    for i, (size, writes) in enumerate(disks):
        vdi = x.VDI.create({"SR": sr[0], "virtual_size": str(size), "type": "user",
                            "name_label": f"{name} disk {i}", "name_description": f"d{i}",
                            "sharable": False, "read_only": False,
                            "other_config": {"k": f"v{i}"}})
        for command in writes:
            qemu_io(image(x, sr, vdi), command)
        x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": str(i), "bootable": i == 0,
                      "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VIF.create({"VM": vm, "network": network, "device": "0", "MAC": "",
                  "MTU": "1500", "other_config": {"vif": "1"}, "qos_algorithm_type": "",
                  "qos_algorithm_params": {}})
    return vm


def counts(x) -> dict:
    return {c: len(getattr(x, c).get_all()) for c in ("VM", "VDI", "VBD", "VIF")}


def views_left(srv) -> list[str]:
    """Disk views (FUSE mounts) the server still has open: none once a transfer ends."""
    with open("/proc/mounts") as f:
        return [line for line in f if srv.data_dir in line]


def disks_of(x, vm) -> list[str]:
    vbds = sorted(x.VM.get_VBDs(vm), key=lambda v: x.VBD.get_userdevice(v))
    return [x.VBD.get_VDI(v) for v in vbds
            if x.VBD.get_type(v) == "Disk" and x.VBD.get_VDI(v) != "OpaqueRef:NULL"]


def wait_task(x, task, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = x.task.get_record(task)
        if rec["status"] not in ("pending", "cancelling"):
            return rec
        time.sleep(0.1)
    raise AssertionError(f"task {task} still pending")


def connect(srv):
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    return ssl._create_unverified_context().wrap_socket(raw)


def read_head(sock) -> tuple[str, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, rest


def read_all(sock, first=b"") -> bytes:
    parts = [first]
    while True:
        piece = sock.recv(1 << 20)
        if not piece:
            return b"".join(parts)
        parts.append(piece)


@pytest.fixture(scope="module")
def sid(srv):
    session = srv.session()
    yield session._session
    session.xenapi.session.logout()


def get(srv, sid, path) -> tuple[str, dict, bytes]:
    with connect(srv) as s:
        s.sendall(f"GET {path}&session_id={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, rest = read_head(s)
        return status, headers, read_all(s, rest)


def put(srv, sid, path, body: bytes, length=True, close_after=None):
    """PUT as xe does: headers, wait for the 200, then the body. `close_after`: send
    only that many bytes of it, then close."""
    with connect(srv) as s:
        head = f"PUT {path}&session_id={sid} HTTP/1.0\r\nHost: x\r\n"
        if length:
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n")
        status, headers, _ = read_head(s)
        if status.split()[1] == "200":
            try:     # a server that gives up early closes while we send: its task says why
                s.sendall(body if close_after is None else body[:close_after])
                if close_after is None:
                    read_all(s)
            except OSError:         # ssl.SSLError and ConnectionError are OSErrors
                pass
        return status, headers


def export(x, srv, sid, vm, compression=None) -> tuple[bytes, dict]:
    task = x.task.create("export", "")
    query = f"/export?ref={vm}&task_id={task}"
    if compression:
        query += f"&use_compression={compression}"
    status, headers, body = get(srv, sid, query)
    assert status == "HTTP/1.0 200 OK", (status, body[:300])
    rec = wait_task(x, task)
    assert rec["status"] == "success", rec["error_info"]
    x.task.destroy(task)
    return body, headers


def import_xva(x, srv, sid, sr, data: bytes, extra="", path="/import") -> dict:
    task = x.task.create("import", "")
    status, _ = put(srv, sid, f"{path}?sr_id={sr[0]}&task_id={task}{extra}", data)
    rec = wait_task(x, task)
    rec["http_status"] = status
    rec["task"] = task
    return rec


def new_vms(rec) -> list[str]:
    return re.findall(r"OpaqueRef:[0-9a-f-]+", rec["result"])


def members(data: bytes) -> list[str]:
    return tarfile.open(fileobj=io.BytesIO(data)).getnames()


def destroy_vm(x, vm):
    for vdi in disks_of(x, vm):
        x.VDI.destroy(vdi)
    x.VM.destroy(vm)


# -- round trip ------------------------------------------------------------------------

KEPT = ("name_label", "name_description", "memory_static_max", "memory_dynamic_max",
        "memory_dynamic_min", "memory_static_min", "VCPUs_max", "VCPUs_at_startup",
        "PV_args", "HVM_boot_policy", "HVM_boot_params", "platform", "tags",
        "actions_after_shutdown", "actions_after_reboot", "actions_after_crash",
        "is_a_template", "VCPUs_params", "xenstore_data", "user_version")


@pytest.fixture(scope="module")
def source_vm(x, sr, network):
    vm = make_vm(x, sr, network, "xva source", [
        (5 * MiB + 4096, ["write -P 0x5a 0 64k", "write -P 0x11 3M 8k",
                          "write -P 0x77 5242880 4096"]),
        (3 * MiB, ["write -P 0x42 1M 1M"])])
    x.VM.set_name_description(vm, "exported <&> round trip")
    x.VM.set_PV_args(vm, "console=ttyS0 quiet")
    x.VM.add_tags(vm, "xva")
    x.VM.set_xenstore_data(vm, {"vm-data/a": "b"})
    x.VM.set_VCPUs_max(vm, "2")
    x.VM.add_to_other_config(vm, "export-me", "yes")
    return vm


@pytest.mark.parametrize("compression", [None, "zstd", "gzip"])
def test_round_trip_keeps_fields_and_every_byte(x, srv, sid, sr, source_vm, compression,
                                                tmp_path):
    before = counts(x)
    data, headers = export(x, srv, sid, source_vm, compression)
    assert headers["content-disposition"] == 'attachment; filename="export.xva"'
    plain = data
    if compression == "zstd":
        assert data[:4] == b"\x28\xb5\x2f\xfd"
        plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    elif compression == "gzip":
        assert data[:2] == b"\x1f\x8b"
        plain = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    names = members(plain)
    assert names[0] == "ova.xml" and plain[-1024:] == bytes(1024)
    assert len(plain) % 512 == 0
    # disk 0 is 6 chunks: 0 (data), 3 (data), 5 (the last, short): zero chunks left out
    disk_members = [n for n in names if not n.endswith(".xxhash") and n != "ova.xml"]
    prefixes = sorted({n.split("/")[0] for n in disk_members})
    assert len(prefixes) == 2
    assert all(n + ".xxhash" in names for n in disk_members)
    sizes = {n.split("/")[0]: [] for n in disk_members}
    for n in disk_members:
        sizes[n.split("/")[0]].append(n.split("/")[1])
    assert sorted(map(sorted, sizes.values())) == sorted(
        [["00000000", "00000003", "00000005"], ["00000000", "00000001", "00000002"]])
    tf = tarfile.open(fileobj=io.BytesIO(plain))
    for n in disk_members:
        chunk = tf.extractfile(n).read()
        assert tf.extractfile(n + ".xxhash").read() == b"%016X" % xxhash.xxh64_intdigest(chunk)

    rec = import_xva(x, srv, sid, sr, data)
    assert rec["status"] == "success", rec["error_info"]
    assert rec["result"].startswith("<value><array><data><value>OpaqueRef:")
    assert x.task.get_other_config(rec["task"])["object_creation"] == "complete"
    [vm] = new_vms(rec)
    try:
        old, new = x.VM.get_record(source_vm), x.VM.get_record(vm)
        for field in KEPT:
            assert new[field] == old[field], field
        assert new["other_config"]["export-me"] == "yes"
        assert new["other_config"]["import_task"] == rec["task"]
        assert new["current_operations"] == {} and new["power_state"] == "Halted"
        assert new["uuid"] != old["uuid"]
        src, dst = disks_of(x, source_vm), disks_of(x, vm)
        assert len(dst) == 2
        for a, b in zip(src, dst):
            assert x.VDI.get_virtual_size(b) == x.VDI.get_virtual_size(a)
            assert x.VDI.get_SR(b) == sr[0]
            assert x.VDI.get_name_label(b) == x.VDI.get_name_label(a)
            assert x.VDI.get_other_config(b) == x.VDI.get_other_config(a)
            assert disk_sha(x, sr, b, tmp_path) == disk_sha(x, sr, a, tmp_path)
        [vif] = x.VM.get_VIFs(vm)
        [old_vif] = x.VM.get_VIFs(source_vm)
        assert x.VIF.get_network(vif) == x.VIF.get_network(old_vif)
        assert x.VIF.get_MAC(vif) != x.VIF.get_MAC(old_vif)       # not a restore
        assert x.VIF.get_other_config(vif) == {"vif": "1"}
        vbds = {x.VBD.get_userdevice(v): x.VBD.get_bootable(v) for v in x.VM.get_VBDs(vm)}
        assert vbds["0"] is True and vbds["1"] is False
    finally:
        x.task.destroy(rec["task"])
        destroy_vm(x, vm)
    assert counts(x) == before


def test_restore_keeps_uuids_and_macs(x, srv, sid, sr, network):
    vm = make_vm(x, sr, network, "xva restore", [(1 * MiB, ["write -P 1 0 4k"])])
    data, _ = export(x, srv, sid, vm)
    uuid, mac = x.VM.get_uuid(vm), x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    clash = import_xva(x, srv, sid, sr, data, "&restore=true")
    assert clash["status"] == "failure" and clash["error_info"][0] == "IMPORT_ERROR"
    destroy_vm(x, vm)
    rec = import_xva(x, srv, sid, sr, data, "&restore=true")
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)
    assert x.VM.get_uuid(new) == uuid
    assert x.VIF.get_MAC(x.VM.get_VIFs(new)[0]) == mac
    destroy_vm(x, new)


def test_xva_from_the_tests_own_writer_imports(x, srv, sid, sr, network, tmp_path):
    disk0 = bytearray(3 * MiB + 512)
    disk0[0:4] = b"boot"
    disk0[2 * MiB + 7:2 * MiB + 12] = b"hello"
    disk1 = os.urandom(MiB // 2)
    data = xva_writer.xva("from writer", [bytes(disk0), disk1],
                          networks=["xva test network"])
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, data)
    assert rec["status"] == "success", rec["error_info"]
    [vm] = new_vms(rec)
    assert x.VM.get_name_label(vm) == "from writer"
    assert x.VM.get_other_config(vm)["written-by"] == "xva_writer"
    assert x.VM.get_memory_static_max(vm) == str(256 << 20)
    d0, d1 = disks_of(x, vm)
    assert disk_sha(x, sr, d0, tmp_path) == hashlib.sha256(disk0).hexdigest()
    assert disk_sha(x, sr, d1, tmp_path) == hashlib.sha256(disk1).hexdigest()
    [vif] = x.VM.get_VIFs(vm)
    assert x.VIF.get_network(vif) == network
    destroy_vm(x, vm)
    assert counts(x) == before


def test_an_unknown_network_maps_to_the_nat_network(x, srv, sid, sr):
    """A VIF whose network has no namesake here goes on the host-internal NAT network
    (services/network/nat.py) when there is one: the guest gets an address at once."""
    nat = x.network.create({"name_label": "NAT for the test", "other_config":
                            {"xapi-py:nat": "10.213.99.1/24"}})
    try:
        rec = import_xva(x, srv, sid, sr, xva_writer.xva(
            "unknown net", [bytes(MiB)], networks=["no such network here"]))
        assert rec["status"] == "success", rec["error_info"]
        [vm] = new_vms(rec)
        [vif] = x.VM.get_VIFs(vm)
        assert x.VIF.get_network(vif) == nat
        destroy_vm(x, vm)
    finally:
        x.network.destroy(nat)


def _ova_classes(body: bytes) -> list[str]:
    text = tarfile.open(fileobj=io.BytesIO(body)).extractfile("ova.xml").read().decode()
    return re.findall(r"<member><name>class</name><value>(\w+)</value>", text)


def _forget_records(x, vm):
    """Remove an imported metadata VM without touching the disks it shares."""
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    for vif in x.VM.get_VIFs(vm):
        x.VIF.destroy(vif)
    x.VM.destroy(vm)


def test_metadata_with_snapshots_and_excluded_devices(x, srv, sid, sr, network):
    vm = make_vm(x, sr, network, "xva snapshotted", [(MiB, ["write -P 7 0 4k"])])
    snap = x.VM.snapshot(vm, "xva snap")
    _, _, body = get(srv, sid, f"/export_metadata?ref={vm}")
    assert _ova_classes(body).count("VM") == 2
    rec = import_xva(x, srv, sid, sr, body, path="/import_metadata")
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)                                 # the VM, not its snapshot
    [new_snap] = x.VM.get_snapshots(new)
    assert x.VM.get_is_a_snapshot(new_snap) and x.VM.get_name_label(new_snap) == "xva snap"
    assert disks_of(x, new_snap) == disks_of(x, snap)
    assert x.VM.get_snapshot_time(new_snap) == x.VM.get_snapshot_time(snap)
    _forget_records(x, new_snap)
    _forget_records(x, new)
    _, _, body = get(srv, sid, f"/export_metadata?ref={vm}&export_snapshots=false"
                               "&excluded_device_types=vif")
    assert _ova_classes(body) == ["VM", "VM_metrics", "VBD", "VDI", "SR"]
    # all=true: every VM and template of the pool but the built-in templates, snapshots
    # with their VMs
    _, _, body = get(srv, sid, "/export_metadata?all=true")
    records = x.VM.get_all_records().values()
    assert _ova_classes(body).count("VM") == len(
        [r for r in records if not r["is_default_template"]])
    assert ">xva snap<" in tarfile.open(fileobj=io.BytesIO(body)).extractfile(
        "ova.xml").read().decode()
    destroy_vm(x, snap)
    destroy_vm(x, vm)


def test_paths_with_a_trailing_slash_and_roles(x, srv, sid, sr, network):
    """XO calls /export/ and /import/; vm-admin may export, vm-operator may not."""
    vm = make_vm(x, sr, network, "xva roles", [(MiB, ["write -P 9 0 4k"])])
    add_local_user(x, "xva-admin", "vm-admin", "pw-admin")
    add_local_user(x, "xva-operator", "vm-operator", "pw-operator")
    admin = srv.session("xva-admin", "pw-admin")
    task = admin.xenapi.task.create("export", "")
    status, _, data = get(srv, admin._session, f"/export/?ref={vm}&task_id={task}")
    assert status == "HTTP/1.0 200 OK"
    assert wait_task(admin.xenapi, task)["status"] == "success"
    rec = import_xva(admin.xenapi, srv, admin._session, sr, data, path="/import/")
    assert rec["status"] == "success", rec["error_info"]
    destroy_vm(x, new_vms(rec)[0])
    operator = srv.session("xva-operator", "pw-operator")
    for method, path in (("GET", f"/export?ref={vm}"), ("PUT", f"/import?sr_id={sr[0]}"),
                         ("GET", f"/export_metadata?ref={vm}"),
                         ("PUT", "/import_metadata?x=1")):
        task = operator.xenapi.task.create("refused", "")
        with connect(srv) as s:
            s.sendall(f"{method} {path}&task_id={task}&session_id={operator._session} "
                      "HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode())
            assert read_head(s)[0].split()[1] == "403", path
        error = wait_task(operator.xenapi, task)["error_info"]
        assert error[0] == "RBAC_PERMISSION_DENIED", error
        assert error[1] == "http/" + {"/export": "get_export", "/import": "put_import",
                                      "/export_metadata": "get_export_metadata",
                                      "/import_metadata": "put_import_metadata"}[
                                          path.split("?")[0]]
    destroy_vm(x, vm)


def test_snapshot_export_into_the_default_sr(x, srv, sid, sr, network, tmp_path):
    """A snapshot exports as xapi's do (it comes back a template, not a snapshot); no
    sr_id means the pool's default SR, and without one DEFAULT_SR_NOT_FOUND."""
    vm = make_vm(x, sr, network, "xva snap source", [(MiB, ["write -P 3 0 8k"])])
    snap = x.VM.snapshot(vm, "xva exported snapshot")
    data, _ = export(x, srv, sid, snap)
    pool = x.pool.get_all()[0]
    default = x.pool.get_default_SR(pool)
    task = x.task.create("import", "")
    put(srv, sid, f"/import?task_id={task}", data)
    rec = wait_task(x, task)
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)
    assert x.VM.get_is_a_template(new) and not x.VM.get_is_a_snapshot(new)
    assert x.VM.get_name_label(new) == "xva exported snapshot"
    [disk] = disks_of(x, new)
    assert x.VDI.get_SR(disk) == default
    destroy_vm(x, new)
    x.pool.set_default_SR(pool, "OpaqueRef:NULL")
    try:
        task = x.task.create("import", "")
        status, _ = put(srv, sid, f"/import?task_id={task}", data)
        assert status.split()[1] == "500"
        assert wait_task(x, task)["error_info"][0] == "DEFAULT_SR_NOT_FOUND"
    finally:
        x.pool.set_default_SR(pool, default)
    destroy_vm(x, snap)
    destroy_vm(x, vm)


# -- refusals -------------------------------------------------------------------------

def _tar_member(name: str, data: bytes, size=None) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data) if size is None else size
    return info.tobuf(tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def _good():
    return xva_writer.xva("hostile", [b"\1" * MiB + bytes(MiB)])


def _flip_chunk_byte(data: bytes) -> bytes:
    at = data.index(b"Ref:100/00000000\0") + 512 + 100    # inside the first chunk
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def _laughs() -> bytes:
    ova = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
           '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
           '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
           '<value>&lol3;</value>').encode()
    return _tar_member("ova.xml", ova) + bytes(1024)


def _external_entity() -> bytes:
    ova = ('<?xml version="1.0"?><!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
           '<value>&e;</value>').encode()
    return _tar_member("ova.xml", ova) + bytes(1024)


def _traversal() -> bytes:
    good = _good()
    ova_end = 512 + (-(-int(good[124:136].rstrip(b"\0 "), 8) // 512)) * 512
    return good[:ova_end] + _tar_member("Ref:100/../../../tmp/evil", b"x" * 10) + bytes(1024)


def _absurd_size() -> bytes:
    good = _good()
    ova_end = 512 + (-(-int(good[124:136].rstrip(b"\0 "), 8) // 512)) * 512
    return good[:ova_end] + _tar_member("Ref:100/00000000", b"", size=8 ** 11 - 1)


def _bad_header_checksum() -> bytes:
    good = bytearray(_good())
    good[10] ^= 0x01          # inside ova.xml's header name field
    return bytes(good)


def _with_ova(edit, disks=(b"\1" * MiB,)) -> bytes:
    """An archive from the tests' writer whose ova.xml text `edit` changed."""
    tar = xva_writer.Tar()
    tar.add("ova.xml", edit(xva_writer.ova_xml("hostile", [len(d) for d in disks], []))
            .encode())
    for i, data in enumerate(disks):
        xva_writer.add_disk(tar, f"Ref:{100 + i}", data)
    return tar.bytes()


HOSTILE = {
    "truncated": (lambda: _good()[:MiB], "IMPORT_ERROR_PREMATURE_EOF"),
    "bad chunk checksum": (lambda: _flip_chunk_byte(_good()),
                           "IMPORT_ERROR_SOME_CHECKSUMS_FAILED"),
    "path traversal": (_traversal, "IMPORT_ERROR"),
    "absurd member size": (_absurd_size, "IMPORT_ERROR"),
    "billion laughs": (_laughs, "IMPORT_ERROR"),
    "external entity": (_external_entity, "IMPORT_ERROR"),
    "wrong first member": (lambda: _tar_member("hello.txt", b"hi") + _good(),
                           "IMPORT_ERROR_UNEXPECTED_FILE"),
    "corrupt tar header": (_bad_header_checksum, "IMPORT_ERROR"),
    "gnu long name": (lambda: tarfile.TarInfo("L" * 150).tobuf(tarfile.GNU_FORMAT)
                      + bytes(1024), "IMPORT_ERROR"),
    "not an archive": (lambda: os.urandom(4096), "IMPORT_ERROR"),
    "dangling reference": (lambda: _with_ova(lambda t: t.replace("Ref:200", "Ref:999", 1)),
                           "IMPORT_ERROR_FAILED_TO_FIND_OBJECT"),
    "two disks on one device": (
        lambda: _with_ova(lambda t: t.replace("<name>userdevice</name><value>1</value>",
                                              "<name>userdevice</name><value>0</value>"),
                          disks=(b"\1" * MiB, b"\2" * MiB)), "DEVICE_ALREADY_EXISTS"),
    "truncated zstd": (lambda: zstandard.ZstdCompressor().compress(_good())[:-200],
                       "IMPORT_ERROR_PREMATURE_EOF"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_bad_archives_are_refused_and_leave_nothing(x, srv, sid, sr, network, case):
    make, code = HOSTILE[case]
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, make())
    assert rec["http_status"] == "HTTP/1.1 200 OK"
    assert rec["status"] == "failure"
    assert rec["error_info"][0] == code, rec["error_info"]
    assert counts(x) == before
    assert not [v for v in x.VM.get_all_records().values()
                if v["name_label"] == "hostile"]


# What a malformed ova.xml may fail with: the archive's codes, and the API's own for a
# value it refuses (never INTERNAL_ERROR, which would be a bug of ours).
MALFORMED_OK = {"IMPORT_ERROR", "IMPORT_ERROR_FAILED_TO_FIND_OBJECT",
                "IMPORT_ERROR_PREMATURE_EOF", "IMPORT_ERROR_UNEXPECTED_FILE",
                "INVALID_VALUE", "INVALID_DEVICE", "ILLEGAL_VBD_DEVICE",
                "DEVICE_ALREADY_EXISTS", "MAC_INVALID", "UUID_INVALID"}
ODD_VALUES = [{"a": "b"}, ["Ref:1"], True, "", "Ref:nowhere", "-1", "99999999999999999999",
              "1e3", {"struct": [{"deep": [1]}]}, "OpaqueRef:NULL", "\u00e9\u4e2d"]


def test_malformed_ova_xml_fields_never_break_the_server(x, srv, sid, sr, network):
    """Every field of every object of a small ova.xml, in turn, given values of the
    wrong type or shape: the import succeeds leniently or fails with a clear code."""
    rng = random.Random(14)
    base = xva_writer.ova_header("fuzzed", [MiB], ["xva test network"])
    disk = b"\5" * MiB
    before = counts(x)
    cases = [(i, field) for i, obj in enumerate(base["objects"])
             for field in obj["snapshot"]] + [(i, key) for i in range(len(base["objects"]))
                                              for key in ("class", "id")]
    outcomes = set()
    for i, field in cases:
        header = copy.deepcopy(base)
        target = header["objects"][i] if field in ("class", "id") else \
            header["objects"][i]["snapshot"]
        target[field] = rng.choice(ODD_VALUES)
        tar = xva_writer.Tar()
        tar.add("ova.xml", xva_writer.xml_value(header).encode())
        xva_writer.add_disk(tar, "Ref:100", disk)
        rec = import_xva(x, srv, sid, sr, tar.bytes())
        if rec["status"] == "success":
            for vm in new_vms(rec):
                destroy_vm(x, vm)
            outcomes.add("success")
        else:
            assert rec["error_info"][0] in MALFORMED_OK, (field, target[field],
                                                          rec["error_info"])
            outcomes.add(rec["error_info"][0])
        x.task.destroy(rec["task"])
        assert counts(x) == before, (field, target[field])
    assert "success" in outcomes and len(outcomes) > 2, outcomes


def test_corrupted_bytes_never_break_the_server(x, srv, sid, sr):
    """Bytes of a good archive overwritten at random (headers, ova.xml, chunks, the
    compressed stream): a clear failure or a lenient success, never INTERNAL_ERROR."""
    rng = random.Random(5)
    good = xva_writer.xva("fuzzed", [os.urandom(MiB // 2) + bytes(MiB)],
                          networks=["xva test network"])
    packed = zstandard.ZstdCompressor().compress(good)
    before = counts(x)
    allowed = MALFORMED_OK | {"IMPORT_ERROR_SOME_CHECKSUMS_FAILED"}
    for n in range(16):
        data = bytearray(packed if n % 4 == 3 else good)
        limit = len(data) if n % 2 else 4096          # half of them in the first blocks
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(limit)] = rng.randrange(256)
        rec = import_xva(x, srv, sid, sr, bytes(data))
        if rec["status"] == "success":
            for vm in new_vms(rec):
                destroy_vm(x, vm)
        else:
            assert rec["error_info"][0] in allowed, rec["error_info"]
        x.task.destroy(rec["task"])
        assert counts(x) == before


def test_force_imports_past_a_bad_checksum(x, srv, sid, sr):
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, _flip_chunk_byte(_good()), "&force=true")
    assert rec["status"] == "success", rec["error_info"]
    [vm] = new_vms(rec)
    destroy_vm(x, vm)
    assert counts(x) == before


def test_disconnect_and_cancel_leave_nothing(x, srv, sid, sr):
    data = xva_writer.xva("hostile", [os.urandom(4 * MiB)])
    before = counts(x)
    task = x.task.create("import", "")
    put(srv, sid, f"/import?sr_id={sr[0]}&task_id={task}", data, close_after=len(data) // 2)
    rec = wait_task(x, task)
    assert rec["status"] == "failure"
    assert rec["error_info"][0] == "IMPORT_ERROR_PREMATURE_EOF"
    assert counts(x) == before
    assert views_left(srv) == []

    task = x.task.create("import", "")
    with connect(srv) as s:
        s.sendall(f"PUT /import?sr_id={sr[0]}&task_id={task}&session_id={sid} HTTP/1.0\r\n"
                  f"Content-Length: {len(data)}\r\n\r\n".encode())
        assert read_head(s)[0] == "HTTP/1.1 200 OK"
        s.sendall(data[:len(data) // 2])
        deadline = time.monotonic() + 30
        while not x.task.get_other_config(task).get("object_creation"):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert counts(x)["VM"] == before["VM"] + 1     # made, being filled
        while x.task.get_progress(task) <= 0:          # the disk's bytes are arriving
            assert time.monotonic() < deadline
            time.sleep(0.05)
        x.task.cancel(task)
        rec = wait_task(x, task)
    assert rec["status"] == "cancelled"
    assert counts(x) == before
    assert views_left(srv) == []


def test_absurd_disk_size_in_ova_xml_is_refused(x, srv, sid, sr):
    tar = xva_writer.Tar()
    tar.add("ova.xml", xva_writer.ova_xml("hostile", [2 ** 62], []).encode())
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, tar.bytes())
    assert rec["status"] == "failure"
    assert rec["error_info"][:2] == ["INVALID_VALUE", "virtual_size"], rec["error_info"]
    assert counts(x) == before


def test_export_to_a_client_that_leaves(x, srv, sid, sr, network):
    vm = make_vm(x, sr, network, "xva big", [(48 * MiB, ["write -P 0x33 0 48M"])])
    task = x.task.create("export", "")
    with connect(srv) as s:
        s.sendall(f"GET /export?ref={vm}&task_id={task}&session_id={sid} HTTP/1.0\r\n\r\n"
                  .encode())
        assert read_head(s)[0] == "HTTP/1.0 200 OK"
    rec = wait_task(x, task)
    assert rec["status"] == "failure" and rec["error_info"][0] == "INTERNAL_ERROR"
    assert "client closed" in rec["error_info"][1]
    assert x.VM.get_current_operations(vm) == {}
    assert views_left(srv) == []
    destroy_vm(x, vm)


def test_cancel_as_soon_as_the_vm_exists_leaves_nothing(x, srv, sid, sr):
    """The cancel lands while the disk's view is being opened, or just after: the view
    is still closed and unmounted, the records removed."""
    data = xva_writer.xva("hostile", [os.urandom(4 * MiB)])
    before = counts(x)
    for delay in (0, 0.05, 0.1, 0.15, 0.2, 0.3):      # spread over the view's opening
        task = x.task.create("import", "")
        with connect(srv) as s:
            s.sendall(f"PUT /import?sr_id={sr[0]}&task_id={task}&session_id={sid} "
                      f"HTTP/1.0\r\nContent-Length: {len(data)}\r\n\r\n".encode())
            assert read_head(s)[0] == "HTTP/1.1 200 OK"
            s.sendall(data[:len(data) // 2])
            deadline = time.monotonic() + 30
            while not x.task.get_other_config(task).get("object_creation"):
                assert time.monotonic() < deadline
            time.sleep(delay)
            x.task.cancel(task)
            assert wait_task(x, task)["status"] == "cancelled"
        assert counts(x) == before
        assert views_left(srv) == []


def test_refusals_before_the_body(x, srv, sid, sr, source_vm, tmp_path):
    host = x.host.get_all()[0]
    (tmp_path / "isos").mkdir()
    iso = x.SR.create(host, {"location": str(tmp_path / "isos")}, "0", "isos", "", "iso",
                      "iso", False, {})
    task = x.task.create("import", "")
    with connect(srv) as s:
        s.sendall(f"PUT /import?sr_id={iso}&task_id={task}&session_id={sid} HTTP/1.0\r\n"
                  "Content-Length: 10\r\n\r\n".encode())
        assert read_head(s)[0].startswith("HTTP/1.1 400")
    assert wait_task(x, task)["error_info"] == ["SR_OPERATION_NOT_SUPPORTED", iso]
    task = x.task.create("import", "")
    with connect(srv) as s:
        s.sendall(f"PUT /import?sr_id={sr[0]}&task_id={task}&session_id={sid} HTTP/1.1\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        assert read_head(s)[0].startswith("HTTP/1.1 403")
    rec = wait_task(x, task)
    assert rec["error_info"] == ["IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"]
    # a running VM is not exported: 500 and VM_BAD_POWER_STATE, as xapi
    vm = x.VM.clone(source_vm, "xva running")
    x.VM.start(vm, False, False)
    try:
        task = x.task.create("export", "")
        status, _, _ = get(srv, sid, f"/export?uuid={x.VM.get_uuid(vm)}&task_id={task}")
        assert status.split()[1] == "500"
        rec = wait_task(x, task)
        assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
        assert x.VM.get_current_operations(vm) == {}
    finally:
        x.VM.hard_shutdown(vm)
        destroy_vm(x, vm)


def test_ova_xml_is_written_as_xapi_writes_it(x, srv, sid, source_vm):
    _, _, body = get(srv, sid, f"/export_metadata?ref={source_vm}")
    text = tarfile.open(fileobj=io.BytesIO(body)).extractfile("ova.xml").read().decode()
    assert text.startswith("<value><struct><member><name>version</name>")  # no declaration
    root = ET.fromstring(text)
    top = root.find("struct")
    assert [m.findtext("name") for m in top.findall("member")] == ["version", "objects"]
    version = {m.findtext("name"): m.find("value") for m in top[0].find("value/struct")}
    assert version["export_vsn"].text == "2" and len(version["export_vsn"]) == 0  # bare int
    objects = top[1].find("value/array/data").findall("value")
    classes, ids = [], set()
    for obj in objects:
        members = obj.find("struct").findall("member")
        assert [m.findtext("name") for m in members] == ["class", "id", "snapshot"]
        classes.append(members[0].find("value").text)
        ids.add(members[1].find("value").text)
    assert classes == ["VM", "VM_metrics", "VBD", "VBD", "VIF", "network", "VDI", "VDI",
                       "SR"]
    assert all(re.fullmatch(r"Ref:\d+", i) for i in ids)
    # every reference is an exported object's id or NULL: nothing of this pool leaks out
    refs = set(re.findall(r"OpaqueRef:[^<]*", text))
    assert refs <= {"OpaqueRef:NULL"}
    assert "<string>" not in text and "<boolean>1</boolean>" in text


def test_metadata_export_and_import(x, srv, sid, sr, source_vm):
    status, headers, body = get(srv, sid, f"/export_metadata?ref={source_vm}")
    assert status == "HTTP/1.0 200 OK" and int(headers["content-length"]) == len(body)
    assert members(body) == ["ova.xml"] and body[-1024:] == bytes(1024)
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, body, path="/import_metadata")
    assert rec["status"] == "success", rec["error_info"]
    [vm] = new_vms(rec)
    assert x.VM.get_name_label(vm) == x.VM.get_name_label(source_vm)
    assert disks_of(x, vm) == disks_of(x, source_vm)       # the same disks, no copies
    assert counts(x)["VDI"] == before["VDI"]
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    for vif in x.VM.get_VIFs(vm):
        x.VIF.destroy(vif)
    x.VM.destroy(vm)
