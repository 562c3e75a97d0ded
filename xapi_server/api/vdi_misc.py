"""VDI.revert, VDI.resize_online, changed-block tracking and NBD details.

The disk work is in services/storage/vdiops.py; growing a disk a guest has open is the
hypervisor's (its QEMU holds the image)."""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import service, vdiops
from ..services.storage.attach import target_of
from ..services.vm.calls import hv_call

# The SM capability xapi requires for every CBT operation.
CBT_CAPABILITY = "VDI_CONFIG_CBT"


@implements("VDI.revert")
async def revert(ctx, snapshot):
    ctx.store.record("VDI", snapshot)
    await vdiops.revert(ctx.server, snapshot)


@implements("VDI.resize_online")
async def resize_online(ctx, vdi, size):
    store = ctx.store
    store.record("VDI", vdi)

    async def grow_in_guests(vbds, new_size):
        for vbd in vbds:
            vm = store.get("VBD", vbd, "VM")
            hv = ctx.server.runtime_of_vm(vm).vms.hv
            await hv_call(hv.resize_disk(store.get("VM", vm, "uuid"),
                                         target_of(store.record("VBD", vbd))[0], new_size))
    await vdiops.resize_online(ctx.server, vdi, size, grow_in_guests)


def _assert_cbt(ctx, vdi):
    """xapi checks the SR driver's CBT capability first; no driver here offers it (qcow2
    persistent dirty bitmaps could: not done yet)."""
    sr = ctx.store.get("VDI", vdi, "SR")
    if CBT_CAPABILITY not in service.driver_for(ctx.server, sr).capabilities:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", sr)


@implements("VDI.enable_cbt", "VDI.disable_cbt", "VDI.data_destroy")
def cbt_operation(ctx, self):
    ctx.store.record("VDI", self)
    _assert_cbt(ctx, self)


@implements("VDI.list_changed_blocks")
def list_changed_blocks(ctx, vdi_from, vdi_to):
    ctx.store.record("VDI", vdi_from)
    ctx.store.record("VDI", vdi_to)
    _assert_cbt(ctx, vdi_to)


@implements("VDI.get_nbd_info")
def get_nbd_info(ctx, self):
    """xapi lists one entry per address of a host's PIF on a network whose purpose is
    nbd (or insecure_nbd), and none without such a network. This server has no NBD
    server for clients: with such a network it says so rather than list nothing."""
    store = ctx.store
    rec = store.record("VDI", self)
    if rec["type"] == "cbt_metadata":
        raise ApiError("VDI_INCOMPATIBLE_TYPE", self, "cbt_metadata")
    if any({"nbd", "insecure_nbd"} & set(n["purpose"]) for n in store.tables["network"].values()):
        raise ApiError("NOT_IMPLEMENTED", "get_nbd_info")
    return []
