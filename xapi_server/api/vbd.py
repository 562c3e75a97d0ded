"""VBD: disk and CD drives of VMs. create/destroy, plug/unplug on a running VM
(libvirt hotplug, services/storage/attach.py), insert/eject for CDs."""
from __future__ import annotations

from ..dispatch.generic import constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import attach, service, vdiops, vmdisks
from ..services.storage.service import NULL
from ..services.vm import qos
from .device_qos import register_qos_setters


FORCE_UNPLUG_WAIT = 5.0   # seconds a guest gets to let go of a device on unplug_force


def _power(store, vm) -> str:
    return store.get("VM", vm, "power_state")


def _require_running(store, vm):
    state = _power(store, vm)
    if state != "Running":
        raise ApiError("VM_BAD_POWER_STATE", vm, "running", state.lower())


def _userdevice(store, vm, wanted: str, cd: bool) -> str:
    limit = attach.MAX_CDS if cd else attach.MAX_DISKS
    used = {store.get("VBD", v, "userdevice") for v in store.get("VM", vm, "VBDs")}
    if wanted == "autodetect":
        for n in range(limit):
            if str(n) not in used:
                return str(n)
        raise ApiError("ILLEGAL_VBD_DEVICE", NULL, wanted)
    if not wanted.isdigit() or int(wanted) >= limit:
        raise ApiError("ILLEGAL_VBD_DEVICE", NULL, wanted)
    wanted = str(int(wanted))
    if wanted in used:
        raise ApiError("DEVICE_ALREADY_EXISTS", wanted)
    return wanted


@implements("VBD.create")
def create(ctx, args):
    store = ctx.store
    fields = constructor_fields(ctx, "VBD", args)
    vm = fields.get("VM", NULL)
    store.record("VM", vm)
    cd = fields.get("type") == "CD"
    if cd and fields.get("mode") != "RO":
        raise ApiError("VBD_CDS_MUST_BE_READONLY")
    if fields.get("empty"):
        if not cd:
            raise ApiError("VBD_NOT_REMOVABLE_MEDIA", NULL)
        fields["VDI"] = NULL
    else:
        vdi = fields.get("VDI", NULL)
        rec = store.record("VDI", vdi)
        if fields.get("mode") == "RW" and rec["read_only"]:
            raise ApiError("VDI_READONLY", vdi)
        if cd:
            _assert_cd_media(store, vdi)
    fields["userdevice"] = _userdevice(store, vm, fields.get("userdevice", ""), cd)
    qos.check_vbd({"qos_algorithm_type": "", "qos_algorithm_params": {}, **fields})
    fields.update(currently_attached=False, device="")
    return store.create("VBD", fields)


@implements("VBD.destroy")
def destroy(ctx, self):
    if ctx.store.get("VBD", self, "currently_attached") and \
            _power(ctx.store, ctx.store.get("VBD", self, "VM")) != "Halted":
        raise ApiError("OPERATION_NOT_ALLOWED", "VBD currently attached to a running VM")
    ctx.store.delete("VBD", self)


@implements("VBD.plug")
async def plug(ctx, self):
    store = ctx.store
    rec = store.record("VBD", self)
    _require_running(store, rec["VM"])
    if rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_ATTACHED", self)
    await attach.hotplug(ctx.server, self)
    await qos.apply_vbd(ctx.server, self)    # its I/O limits (services/vm/qos.py)


# qos_algorithm_type "iotune" (limits, live too) or xapi's "ionice" (checked only).
register_qos_setters("VBD", qos.check_vbd, qos.apply_vbd)


@implements("VBD.unplug")
async def unplug(ctx, self):
    store = ctx.store
    rec = store.record("VBD", self)
    _require_running(store, rec["VM"])
    if not rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_DETACHED", self)
    if not rec["unpluggable"]:
        raise ApiError("VBD_NOT_UNPLUGGABLE", self)
    await attach.hotunplug(ctx.server, self)


@implements("VBD.unplug_force")
async def unplug_force(ctx, self):
    """As xapi: not refused for a VBD marked not unpluggable, and the guest is given
    a short time only. QEMU cannot pull a device a guest holds (the PCI unplug needs the
    guest's consent): one it keeps is DEVICE_DETACH_REJECTED, as from xapi."""
    store = ctx.store
    rec = store.record("VBD", self)
    _require_running(store, rec["VM"])
    if not rec["currently_attached"]:
        raise ApiError("DEVICE_ALREADY_DETACHED", self)
    if rec["type"] == "CD":   # IDE drives of a "pc" machine cannot be unplugged at all
        raise ApiError("DEVICE_DETACH_REJECTED", "VBD", self, "IDE devices cannot be unplugged")
    await attach.hotunplug(ctx.server, self, timeout=FORCE_UNPLUG_WAIT)


@implements("VBD.assert_attachable")
def assert_attachable(ctx, self):
    store = ctx.store
    rec = store.record("VBD", self)
    if not rec["empty"] and rec["VDI"] != NULL:
        service.driver_for(ctx.server, store.get("VDI", rec["VDI"], "SR"))
    attach.check_writers(store, self)


def _assert_cd_media(store, vdi):
    """What may go into a CD drive: media that can be shared read-only. ISO library
    images always; another disk only while nobody writes to it (xapi allows ISOs
    only). The guest's drive is read-only, but a disk some running VM writes to
    would be read half-written by one and, once both hold it, block the other's
    next start: VDI_IN_USE, as any second attach of a written disk."""
    rec = store.record("VDI", vdi)
    if not rec["managed"]:
        raise ApiError("VDI_NOT_MANAGED", vdi)
    if store.get("SR", rec["SR"], "content_type") == "iso" or rec["read_only"]:
        return
    if any(store.get("VBD", v, "mode") == "RW" for v in service.attached_vbds(store, vdi)):
        raise ApiError("VDI_IN_USE", vdi, "insert")


def _removable(store, vbd):
    if store.get("VBD", vbd, "type") != "CD":
        raise ApiError("VBD_NOT_REMOVABLE_MEDIA", vbd)


async def _media_changed(ctx, vbd, old_vdi, undo):
    """Tell a running guest its CD drive changed; on failure put the record back."""
    store = ctx.store
    rec = store.record("VBD", vbd)
    if _power(store, rec["VM"]) == "Running" and rec["currently_attached"]:
        try:
            await attach.change_media(ctx.server, vbd, old_vdi)
        except BaseException:
            store.update("VBD", vbd, **undo)
            raise


@implements("VBD.insert")
async def insert(ctx, vbd, vdi):
    store = ctx.store
    rec = store.record("VBD", vbd)
    if _power(store, rec["VM"]) == "Suspended":   # as xapi: its devices are in the image
        raise ApiError("VM_BAD_POWER_STATE", rec["VM"], "halted, running", "suspended")
    _removable(store, vbd)
    if not rec["empty"]:
        raise ApiError("VBD_NOT_EMPTY", vbd)
    _assert_cd_media(store, vdi)
    store.update("VBD", vbd, VDI=vdi, empty=False)
    await _media_changed(ctx, vbd, NULL, {"VDI": NULL, "empty": True})


@implements("VBD.eject")
async def eject(ctx, vbd):
    store = ctx.store
    rec = store.record("VBD", vbd)
    _removable(store, vbd)
    if rec["empty"]:
        raise ApiError("VBD_IS_EMPTY", vbd)
    old = rec["VDI"]
    store.update("VBD", vbd, VDI=NULL, empty=True)
    await _media_changed(ctx, vbd, old, {"VDI": old, "empty": False})


# -- VM integration: the seams api/vm.py and api/vm_clone.py offer, composed by the
# Server (server.py, VmComposition) -------------------------------------------------------

async def disks_ready(ctx, vm):
    """Before the domain is defined: volumes active, VBDs attached (or refuse)."""
    await attach.prepare_vm_disks(ctx.server, vm)


async def copy_disks(ctx, mode, src, new, sr):
    progress = None
    if ctx.task:
        progress = lambda f: ctx.server.tasks.set_progress(ctx.task, f)  # noqa: E731
    if mode == "revert":
        await _revert_disks(ctx, src, new)
    else:
        await vmdisks.copy_vm_disks(ctx.server, src, new, mode, sr, progress=progress)


async def _revert_disks(ctx, snapshot, vm):
    """The VM gets clones of the snapshot's disks (and of its memory image, if it has
    one); its current disks go unless something else (another VM, a snapshot record)
    still uses them."""
    store = ctx.store
    old = list(store.get("VM", vm, "VBDs"))
    await vmdisks.copy_vm_disks(ctx.server, snapshot, vm, "clone")
    memory = store.get("VM", snapshot, "suspend_VDI")
    if memory != NULL:   # a checkpoint's memory image: the VM gets a copy of it
        store.update("VM", vm, suspend_VDI=await vdiops.clone(ctx.server, memory))
    for vbd in old:
        vdi = store.get("VBD", vbd, "VDI")
        store.delete("VBD", vbd)
        if vdi != NULL and store.exists("VDI", vdi) and not store.get("VDI", vdi, "VBDs") \
                and store.get("SR", store.get("VDI", vdi, "SR"), "content_type") != "iso":
            await vdiops.destroy(ctx.server, vdi)


async def provision_disks(ctx, vm, disks, default_sr):
    """VM.provision: the disks a template's other_config:disks asks for."""
    store = ctx.store
    name = store.get("VM", vm, "name_label")
    made = []
    try:
        for disk in disks:
            sr = store.by_uuid("SR", disk["sr"]) if disk.get("sr") else default_sr
            if sr == NULL or not store.exists("SR", sr):
                raise ApiError("VM_REQUIRES_SR", vm, sr)
            vdi = await vdiops.create(ctx.server, sr, disk["size"], {
                "name_label": f"{name} {disk.get('device', '0')}",
                "type": disk.get("type", "system")})
            made.append(vdi)
            store.create("VBD", {"VM": vm, "VDI": vdi, "userdevice": disk.get("device", "0"),
                                 "bootable": disk["bootable"], "mode": "RW", "type": "Disk",
                                 "empty": False, "currently_attached": False})
    except BaseException:
        for vdi in made:
            for vbd in list(store.get("VDI", vdi, "VBDs")):
                store.delete("VBD", vbd)
            await vdiops.destroy(ctx.server, vdi)
        raise

