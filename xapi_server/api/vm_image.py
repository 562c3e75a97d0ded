"""A VM whose memory is in its suspend_VDI (reverted to a checkpoint): resumed from that
image, or its image dropped when it is shut down instead.

libvirt knows nothing of such a VM (its domain is off, with no managed save), so the
runtime sync keeps it Suspended while the record names an image (api/vm_sync.py).
"""
from __future__ import annotations

import os
import shutil
import tempfile

from ..datamodel import NULL_REF
from ..services.storage import memimage, vdiops
from ..services.vm.calls import hv_call
from ..services.vm.reachable import ensure_reachable


def has_image(store, vm: str) -> bool:
    return store.get("VM", vm, "suspend_VDI") != NULL_REF


def scratch_dir(server) -> str:
    """A private directory for a memory image on its way to or from a VDI (the
    hypervisor writes a new file there: it refuses to overwrite one)."""
    return tempfile.mkdtemp(prefix=".memory-", dir=server.settings.data_dir)


async def resume_from_image(ctx, vm: str, paused: bool) -> None:
    """Run the VM again from the memory image in its suspend_VDI, with its disks of
    today; the image VDI is destroyed once the guest runs, as xapi does."""
    store, server = ctx.store, ctx.server
    runtime = server.runtime_of_vm(vm).vms
    memory = store.get("VM", vm, "suspend_VDI")
    for hook in server.vm_parts.start_hooks:   # disks active, bridges there
        await hook(ctx, vm)
    work = scratch_dir(server)
    try:
        path = os.path.join(work, "memory.img")
        await memimage.load_image(server, memory, path)
        image_xml = await hv_call(runtime.hv.saved_image_xml(path))
        xml = memimage.disks_now(store, vm, image_xml)
        await ensure_reachable(server, runtime.hv, xml)
        await hv_call(runtime.hv.restore(path, xml, paused))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    store.update("VM", vm, suspend_VDI=NULL_REF)
    if store.exists("VDI", memory):
        await vdiops.destroy(server, memory)
    await runtime.refresh(vm)


async def discard_image(ctx, vm: str) -> None:
    """A suspended VM shut down: its memory image goes (the VM is Halted after)."""
    memory = ctx.store.get("VM", vm, "suspend_VDI")
    if memory == NULL_REF:
        return
    # Halted at once: a snapshot record has no domain whose state the sync would read.
    ctx.store.update("VM", vm, suspend_VDI=NULL_REF, power_state="Halted")
    if ctx.store.exists("VDI", memory):
        await vdiops.destroy(ctx.server, memory)
