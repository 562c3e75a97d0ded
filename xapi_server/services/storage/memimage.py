"""A guest's memory image in a VDI, as xapi keeps the memory of a checkpoint (and of a
VM reverted to one) in its `suspend_VDI`.

    vdi = await store_image(server, sr, path, "name")   # the file's bytes into a new VDI
    await load_image(server, vdi, path)                 # and back into a file
    xml = disks_now(store, vm, image_xml)               # the image's domain XML with
                                                        # the VM's disks of today
The hypervisor writes and reads the image as a plain file; the VDI holds it in its
SR's own format, padded to whole MiB (the hypervisor ignores what follows the image).
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

from ...backends.storage import qcow
from . import service, vdiops
from .attach import disk_element, target_of
from .service import NULL, errors

MIB = 1 << 20
IMAGE_TYPE = "suspend"   # xapi's VDI type for memory images


async def store_image(server, sr: str, path: str, name: str) -> str:
    """A new VDI on `sr` holding the file at `path`."""
    size = -(-os.path.getsize(path) // MIB) * MIB
    vdi = await vdiops.create(server, sr, size, {"name_label": name, "type": IMAGE_TYPE,
                                                  "name_description": "Memory image"})
    try:
        await _convert(server, vdi, path, to_vdi=True)
    except BaseException:
        await vdiops.destroy(server, vdi)
        raise
    return vdi


async def load_image(server, vdi: str, path: str) -> None:
    """The memory image of `vdi` as the plain file `path`."""
    await _convert(server, vdi, path, to_vdi=False)


async def _convert(server, vdi, path, to_vdi):
    rec = server.store.record("VDI", vdi)
    drv = service.driver_for(server, rec["SR"])
    vdi_path = await service.activate(server, vdi)
    try:
        with errors(rec["SR"], vdi):
            if to_vdi:
                await qcow.convert(path, "raw", vdi_path, drv.disk_format, existing=True)
            else:
                await qcow.convert(vdi_path, drv.disk_format, path, "raw")
    finally:
        await service.deactivate(server, vdi)


def disks_now(store, vm: str, image_xml: str) -> str:
    """The domain XML of a memory image with each disk's source replaced by what the
    VM's VBD at that position holds today (a reverted VM has new disks). The rest,
    PCI addresses included, stays as the image says: the guest's hardware must be
    exactly what it was when its memory was saved."""
    root = ET.fromstring(image_xml)
    vbds = {target_of(store.record("VBD", v))[0]: v for v in store.get("VM", vm, "VBDs")}
    devices = root.find("devices")
    for disk in list(devices.iterfind("disk")):
        dev = disk.find("target").get("dev")
        vbd = vbds.get(dev)
        for old in disk.findall("source") + disk.findall("backingStore"):
            disk.remove(old)   # the old image and the chain it had then
        if vbd is None or (store.get("VBD", vbd, "empty") and
                           store.get("VBD", vbd, "type") != "CD"):
            continue
        fresh = disk_element(store, vbd)
        disk.set("type", fresh.get("type"))
        source = fresh.find("source")
        if source is not None:
            disk.insert(1, source)   # after <driver>, where libvirt writes it
    return ET.tostring(root, encoding="unicode")


def image_sr(store, vm: str, pool: str) -> str:
    """Where a memory image of `vm` goes: its suspend_SR, the pool's suspend image SR,
    its default SR, or else the SR of the VM's first disk (NULL when none)."""
    candidates = [store.get("VM", vm, "suspend_SR"),
                  store.get("pool", pool, "suspend_image_SR"),
                  store.get("pool", pool, "default_SR")]
    for vbd in sorted(store.get("VM", vm, "VBDs"),
                      key=lambda v: int(store.get("VBD", v, "userdevice"))):
        rec = store.record("VBD", vbd)
        if rec["type"] == "Disk" and not rec["empty"] and rec["VDI"] != NULL:
            candidates.append(store.get("VDI", rec["VDI"], "SR"))
    for sr in candidates:
        if sr != NULL and store.exists("SR", sr) and \
                store.get("SR", sr, "content_type") != "iso":
            return sr
    return NULL
