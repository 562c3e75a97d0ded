"""VM.checkpoint: a snapshot with the guest's memory, as xapi makes it.

The running guest is paused, its memory and device state saved to a file and its
disks snapshotted while nothing changes them, then it runs on; the image goes into a
VDI (the snapshot's suspend_VDI) and the snapshot record is Suspended. VM.revert to it
leaves the VM Suspended with a copy of that image (api/vm_clone.py), and VM.resume
brings the guest back where it was (api/vm_image.py).
"""
from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone

from ..backends.hypervisor import HypervisorError
from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import memimage, vdiops
from ..services.vm.calls import hv_call
from .vm_checks import update_allowed_operations, vm_operation
from .vm_clone import _duplicate
from .vm_image import scratch_dir


def _snapshot_fields(vm: str, state: str) -> dict:
    return {"is_a_template": True, "is_a_snapshot": True, "snapshot_of": vm,
            "snapshot_time": datetime.now(timezone.utc), "parent": vm,
            "snapshot_info": {"power-state-at-snapshot": state,
                              "disk-snapshot-type": "crash_consistent"}}


async def _discard(ctx, snap: str) -> None:
    """Undo a half-made checkpoint: the snapshot record and its disk copies."""
    store = ctx.store
    for vbd in list(store.get("VM", snap, "VBDs")):
        vdi = store.get("VBD", vbd, "VDI")
        store.delete("VBD", vbd)
        if vdi != NULL_REF and store.exists("VDI", vdi) and not store.get("VDI", vdi, "VBDs") \
                and store.get("VDI", vdi, "is_a_snapshot"):
            await vdiops.destroy(ctx.server, vdi)
    metrics = store.get("VM", snap, "metrics")
    if store.exists("VM_metrics", metrics):
        store.delete("VM_metrics", metrics)
    store.delete("VM", snap)


async def _checkpoint_live(ctx, vm: str, new_name: str, state: str) -> tuple[str, str]:
    """(snapshot, image file) of a Running or Paused VM; it is in `state` again after."""
    store = ctx.store
    hv = ctx.server.runtime_of_vm(vm).vms.hv
    uuid = store.get("VM", vm, "uuid")
    work = scratch_dir(ctx.server)
    path = os.path.join(work, "memory.img")
    try:
        if state == "Running":
            await hv_call(hv.pause(uuid))   # memory and disks saved at the same instant
        try:
            await hv.save_memory(uuid, path)
        except HypervisorError:
            raise ApiError("VM_CHECKPOINT_SUSPEND_FAILED", vm) from None
        snap = await _duplicate(ctx, vm, new_name, "snapshot", **_snapshot_fields(vm, state))
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        if state == "Running":
            try:
                await hv.unpause(uuid)
            except HypervisorError:
                raise ApiError("VM_CHECKPOINT_RESUME_FAILED", vm) from None
    return snap, path


@implements("VM.checkpoint")
async def checkpoint(ctx, vm, new_name):
    store = ctx.store
    async with vm_operation(ctx, vm, "checkpoint"):
        rec = store.record("VM", vm)
        state = rec["power_state"]
        if state == "Suspended":
            # Already an image: only one kept in the VM's suspend_VDI can be copied
            # (libvirt's own managed save file cannot be read back).
            if rec["suspend_VDI"] == NULL_REF:
                raise ApiError("VM_CHECKPOINT_SUSPEND_FAILED", vm)
            snap = await _duplicate(ctx, vm, new_name, "snapshot", **_snapshot_fields(vm, state))
            try:
                memory = await vdiops.clone(ctx.server, rec["suspend_VDI"])
            except BaseException:
                await _discard(ctx, snap)
                raise
        else:
            sr = memimage.image_sr(store, vm, ctx.server.pool_ref)
            if sr == NULL_REF:
                raise ApiError("VM_REQUIRES_SR", vm, NULL_REF)
            snap, path = await _checkpoint_live(ctx, vm, new_name, state)
            try:
                memory = await memimage.store_image(
                    ctx.server, sr, path, f"Suspend image of {new_name}")
            except BaseException:
                await _discard(ctx, snap)
                raise
            finally:
                shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        store.update("VM", snap, suspend_VDI=memory, power_state="Suspended")
        update_allowed_operations(store, snap)
        await ctx.server.runtime_of_vm(vm).vms.refresh(vm)
        return snap
