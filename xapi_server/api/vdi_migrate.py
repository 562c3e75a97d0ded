"""VDI.pool_migrate: a disk of a running VM moves to another SR the VM's host reaches,
while the guest runs (libvirt mirrors the disk into a volume made first in that SR, then
the domain switches to it); the VM's VBD then names the new VDI and the old one is
destroyed, as xapi does (it runs a storage migration of the VM to its own host).

The host running the VM does it: in a pool the coordinator sends the call to the
member the VM runs on (api/pool_forward.run_on_member), with the records it needs, and
writes back the new VDI, the VBD naming it and the old one gone.
"""
from __future__ import annotations

from ..backends.hypervisor import HypervisorError
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import attach, service, vdiops
from . import pool_forward
from .vm_checks import vm_operation


def _running_user(store, vdi: str) -> tuple[str, str]:
    """(VBD, VM) of the running VM the disk is plugged into."""
    for vbd in store.get("VDI", vdi, "VBDs"):
        vm = store.get("VBD", vbd, "VM")
        if store.get("VBD", vbd, "currently_attached") and \
                store.get("VM", vm, "power_state") == "Running":
            return vbd, vm
    raise ApiError("VDI_NEEDS_VM_FOR_MIGRATE", vdi)


@implements("VDI.pool_migrate")
async def pool_migrate(ctx, vdi, sr, options):
    server, store = ctx.server, ctx.store
    store.record("SR", sr)
    vbd, vm = _running_user(store, vdi)
    host = store.get("VM", vm, "resident_on")
    if not server.role.is_member and host != server.host_ref and store.exists("host", host):
        return await pool_forward.run_on_member(ctx, host, [vdi, sr, options])
    runtime = server.runtime_of_vm(vm)
    if sr == store.get("VDI", vdi, "SR"):
        return vdi
    if not service.host_pbd(store, sr, runtime.host_ref):
        raise ApiError("VM_REQUIRES_SR", vm, sr)
    async with vm_operation(ctx, vm, "migrate_send"):
        rec = store.record("VDI", vdi)
        new = await vdiops.create(server, sr, rec["virtual_size"], {
            "name_label": rec["name_label"], "name_description": rec["name_description"],
            "type": rec["type"], "sharable": rec["sharable"], "read_only": rec["read_only"],
            "other_config": dict(rec["other_config"])})
        drv = service.driver_for(server, sr)
        try:
            await service.activate(server, new)
            progress = (lambda f: server.tasks.set_progress(ctx.task, 0.99 * f)) \
                if ctx.task else None
            await runtime.vms.hv.copy_disk(
                store.get("VM", vm, "uuid"), attach.target_of(store.record("VBD", vbd))[0],
                drv.path(store.get("VDI", new, "location")), drv.disk_format, progress)
        except HypervisorError as exc:
            await service.deactivate(server, new)
            await vdiops.destroy(server, new)
            raise ApiError("SR_BACKEND_FAILURE", "EIO", "", str(exc)) from None
        except BaseException:
            await service.deactivate(server, new)
            await vdiops.destroy(server, new)
            raise
        store.update("VBD", vbd, VDI=new)
        await service.deactivate(server, vdi)
        await vdiops.destroy(server, vdi)
    return new
