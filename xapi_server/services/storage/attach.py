"""Disks in guests: what VM.start, VM shutdown and VBD.plug/unplug/insert/eject use.

For the VM code (see the report of issue 4):
  * `disk_element(store, vbd)` / `disk_xml_for(store, vbd)`: the libvirt <disk>;
    `disk_devices`, the device contributor that adds every VBD of a VM at domain
    build (the Server puts it in its VmComposition).
  * `await prepare_vm_disks(server, vm)` before starting the domain (activates the
    volumes, refuses a VDI another running guest writes to, marks VBDs attached);
    `await release_vm_disks(server, vm)` once the domain is gone.
  * `await hotplug(server, vbd)`, `await hotunplug(server, vbd)`, `await
    change_media(server, vbd)` for a running guest.
Disks are virtio (vda, vdb ...: userdevice 0 is vda); CD drives are IDE (hda..hdd),
which the guest kernel of a "pc" machine always has.
"""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from ...backends.hypervisor import HypervisorError
from ...errors import ApiError
from ..vm.reachable import ensure_reachable
from . import service
from .service import NULL

MAX_DISKS = 16      # userdevice 0..15 -> vda..vdp
MAX_CDS = 4         # IDE: hda..hdd


def target_of(vbd_rec: dict) -> tuple[str, str]:
    """(target dev, bus) for a VBD's userdevice."""
    n = int(vbd_rec["userdevice"])
    if vbd_rec["type"] == "CD":
        return "hd" + chr(ord("a") + n), "ide"
    return "vd" + chr(ord("a") + n), "virtio"


def disk_element(store, vbd: str) -> ET.Element:
    rec = store.record("VBD", vbd)
    dev, bus = target_of(rec)
    cd = rec["type"] == "CD"
    disk = ET.Element("disk", type="file" if cd else "block", device="cdrom" if cd else "disk")
    source = None
    fmt = "raw"
    if not rec["empty"] and rec["VDI"] != NULL:
        vdi = store.record("VDI", rec["VDI"])
        sr = store.record("SR", vdi["SR"])
        pbd = service.host_pbd(store, vdi["SR"], _host(store))
        drv = service.make_driver(sr["type"], sr["uuid"],
                                  store.get("PBD", pbd, "device_config") if pbd else {})
        source, fmt = drv.path(vdi["location"]), drv.disk_format
        if not source.startswith("/dev/"):
            disk.set("type", "file")
    elif not cd:
        raise ApiError("VBD_IS_EMPTY", vbd)
    else:
        disk.set("type", "file")
    # The format is always stated: qemu must never guess it from the contents.
    ET.SubElement(disk, "driver", name="qemu", type=fmt)
    if source is not None:
        ET.SubElement(disk, "source", {"dev" if disk.get("type") == "block" else "file": source})
    ET.SubElement(disk, "target", dev=dev, bus=bus)
    if rec["mode"] == "RO" or cd:
        ET.SubElement(disk, "readonly")
    if rec["VDI"] != NULL and not rec["empty"] and store.get("VDI", rec["VDI"], "sharable"):
        ET.SubElement(disk, "shareable")
    ET.SubElement(disk, "serial").text = rec["uuid"][:20]
    return disk


def disk_xml_for(store, vbd: str) -> str:
    return ET.tostring(disk_element(store, vbd), encoding="unicode")


def _host(store) -> str:
    return store.meta.get("host_ref", NULL)


def disk_devices(ctx) -> list[ET.Element]:
    """Device contributor (services/vm/domxml.py): the VM's disks and CD drives by
    userdevice; an empty CD drive is there, an empty disk is not."""
    store = ctx.store
    vbds = sorted(ctx.vm["VBDs"], key=lambda v: int(store.get("VBD", v, "userdevice")))
    return [disk_element(store, v) for v in vbds
            if not (store.get("VBD", v, "empty") and store.get("VBD", v, "type") != "CD")]


def check_writers(store, vbd: str) -> None:
    """A non-sharable VDI is written by one running guest at most."""
    rec = store.record("VBD", vbd)
    vdi = rec["VDI"]
    if rec["empty"] or vdi == NULL:
        return
    vrec = store.record("VDI", vdi)
    if vrec["missing"]:
        raise ApiError("VDI_MISSING", vrec["SR"], vdi)
    if rec["mode"] == "RW" and vrec["read_only"]:
        raise ApiError("VDI_READONLY", vdi)
    if vrec["sharable"]:
        return
    for other in service.attached_vbds(store, vdi):
        if other != vbd and (rec["mode"] == "RW" or store.get("VBD", other, "mode") == "RW"):
            raise ApiError("VDI_IN_USE", vdi, "attach")


async def prepare_vm_disks(server, vm: str) -> None:
    store = server.store
    done = []
    try:
        for vbd in store.get("VM", vm, "VBDs"):
            rec = store.record("VBD", vbd)
            if rec["empty"] or rec["VDI"] == NULL:
                continue
            check_writers(store, vbd)
            await service.activate(server, rec["VDI"])
            done.append(vbd)
            store.update("VBD", vbd, currently_attached=True, device=target_of(rec)[0])
    except BaseException:
        for vbd in done:
            await _release(server, vbd)
        raise
    for vbd in store.get("VM", vm, "VBDs"):   # empty CD drives exist in the guest too
        if store.get("VBD", vbd, "empty") and not store.get("VBD", vbd, "currently_attached"):
            store.update("VBD", vbd, currently_attached=True,
                         device=target_of(store.record("VBD", vbd))[0])


async def _release(server, vbd: str) -> None:
    store = server.store
    rec = store.record("VBD", vbd)
    if rec["currently_attached"] and not rec["empty"] and rec["VDI"] != NULL:
        await service.deactivate(server, rec["VDI"])
    store.update("VBD", vbd, currently_attached=False)


async def release_vm_disks(server, vm: str) -> None:
    for vbd in server.store.get("VM", vm, "VBDs"):
        if server.store.get("VBD", vbd, "currently_attached"):
            await _release(server, vbd)


# Operations during which a VM's disks are attached although it is not running yet.
_STARTING = {"start", "start_on", "resume", "resume_on", "revert", "hard_reboot",
             "clean_reboot"}


def _holds_disks_while_stopped(store, vm: str) -> bool:
    """Whether `vm` is stopped (and not starting) with a disk still attached. Its Row is
    not kept for the awaits that follow: held while a VM.clone links a child to it, it
    made the store copy its list of children (store/relations.py), and a base cloned
    10,000 times is woken here by every clone (its children changed)."""
    if not store.exists("VM", vm):
        return False
    rec = store.record("VM", vm)
    if rec["power_state"] in ("Running", "Paused"):
        return False
    if _STARTING & set(rec["current_operations"].values()):
        return False
    return any(store.exists("VBD", vbd) and store.get("VBD", vbd, "currently_attached")
               for vbd in rec["VBDs"])


async def watch_power_states(server) -> None:
    """Release the disks of VMs that stopped, however they stopped (shutdown, crash,
    `virsh destroy` behind our back, a start that failed after the disks were made
    ready): VBD.currently_attached and volume activation follow the VM's power state."""
    store = server.store
    seen = store.generation
    while True:
        await store.wait_change(seen, 60.0)
        since = store.changed_since(seen, "VM", "VBD")
        changed = set(since["VM"]) | {store.get("VBD", r, "VM") for r in since["VBD"]}
        seen = store.generation
        for vm in changed:
            if not _holds_disks_while_stopped(store, vm):
                continue
            try:
                await release_vm_disks(server, vm)
                await store.flush()
            except Exception:   # keep watching; the next change retries
                continue


# -- a running guest ------------------------------------------------------------------

async def _hv(server, op: str, vm_uuid: str, xml: str) -> None:
    """attach/detach/update a device of a running domain."""
    hv = _hypervisor(server, vm_uuid)
    if op != "detach":
        await ensure_reachable(server, hv, xml)
    try:
        await getattr(hv, f"{op}_device")(vm_uuid, xml)
    except HypervisorError as exc:
        raise ApiError("INTERNAL_ERROR", f"{op} failed: {exc}") from None


def _hypervisor(server, vm_uuid: str):
    """The hypervisor of the host the VM runs on (services/host.py)."""
    vm = server.store.by_uuid("VM", vm_uuid)
    runtime = server.runtime_of_vm(vm).vms   # api/vm_sync.VmRuntime, None until started
    if runtime is None:
        raise ApiError("INTERNAL_ERROR", "no hypervisor backend")
    return runtime.hv


async def _target_present(server, vm_uuid: str, dev: str) -> bool:
    hv = _hypervisor(server, vm_uuid)
    if not hv.capabilities.guest_releases_devices:
        return False    # gone when detach returned
    return dev in await hv.device_targets(vm_uuid)


async def hotplug(server, vbd: str) -> None:
    store = server.store
    rec = store.record("VBD", vbd)
    check_writers(store, vbd)
    active = not rec["empty"] and rec["VDI"] != NULL
    if active:
        await service.activate(server, rec["VDI"])
    try:
        await _hv(server, "attach", store.get("VM", rec["VM"], "uuid"), disk_xml_for(store, vbd))
    except BaseException:
        if active:
            await service.deactivate(server, rec["VDI"])
        raise
    store.update("VBD", vbd, currently_attached=True, device=target_of(rec)[0])


async def hotunplug(server, vbd: str, timeout: float = 30.0) -> None:
    """Ask the guest to let go; the device leaves once the guest agrees (virtio
    unplug is cooperative), else DEVICE_DETACH_REJECTED."""
    store = server.store
    rec = store.record("VBD", vbd)
    uuid = store.get("VM", rec["VM"], "uuid")
    dev = target_of(rec)[0]
    try:
        await _hv(server, "detach", uuid, disk_xml_for(store, vbd))
    except ApiError as e:
        raise ApiError("DEVICE_DETACH_REJECTED", "VBD", vbd, e.params[-1]) from None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while await _target_present(server, uuid, dev):
        if loop.time() > deadline:
            raise ApiError("DEVICE_DETACH_REJECTED", "VBD", vbd, "the guest did not release it")
        await asyncio.sleep(0.2)
    await _release(server, vbd)


async def change_media(server, vbd: str, old_vdi: str) -> None:
    """The CD drive of a running guest now holds the VBD's (new) VDI, or nothing."""
    store = server.store
    rec = store.record("VBD", vbd)
    new = rec["VDI"] if not rec["empty"] else NULL
    if new != NULL:
        check_writers(store, vbd)     # as at start and hotplug: no disk someone writes
        await service.activate(server, new)
    try:
        await _hv(server, "update", store.get("VM", rec["VM"], "uuid"), disk_xml_for(store, vbd))
    except BaseException:
        if new != NULL:
            await service.deactivate(server, new)
        raise
    if old_vdi != NULL:
        await service.deactivate(server, old_vdi)
