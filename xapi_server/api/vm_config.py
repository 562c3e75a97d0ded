"""VM records: create and destroy, the template flag, blocked operations, and the
read-only questions (boot record, free device slots, where it can boot)."""
from __future__ import annotations

import contextlib
import os

from ..datamodel import NULL_REF
from ..dispatch.generic import check_ref, constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError
from ..hostinfo import meminfo
from ..services.vm import domxml
from ..services.vm.calls import hv_call
from . import boot_files
from .vm_checks import assert_operation_valid, update_allowed_operations, vm_operation
from .vm_memory import assert_memory_valid, memory_overhead, VCPU_CONSTRAINT
from .vm_sync import ensure_metrics

# xapi: HVM guests with PV drivers get 16 disk slots and 7 network slots.
VBD_DEVICES = [str(i) for i in range(16)]
VIF_DEVICES = [str(i) for i in range(7)]


def new_vm(store, fields: dict) -> str:
    """Create a VM record with its VM_metrics and a true allowed_operations."""
    fields = {**fields, "power_state": "Halted", "domid": -1, "resident_on": NULL_REF,
              "current_operations": {}}
    fields.setdefault("memory_overhead", 0)
    ref = store.create("VM", fields)
    store.update("VM", ref, memory_overhead=memory_overhead(store.record("VM", ref)))
    ensure_metrics(store, ref)
    update_allowed_operations(store, ref)
    return ref


@implements("VM.create")
def create(ctx, args):
    fields = constructor_fields(ctx, "VM", args)
    assert_memory_valid({f"memory_{k}": fields.get(f"memory_{k}", 0)
                         for k in ("static_min", "dynamic_min", "dynamic_max", "static_max")})
    vmax, vstart = fields.get("VCPUs_max", 0), fields.get("VCPUs_at_startup", 0)
    if vstart < 1 or vstart > vmax:
        raise ApiError("INVALID_VALUE", VCPU_CONSTRAINT, vstart)
    boot_files.resolve_record(ctx.server.settings, fields, must_exist=False)
    return new_vm(ctx.store, fields)


@implements("VM.set_PV_kernel", "VM.set_PV_ramdisk")
def set_boot_file(ctx, self, value):
    """Only files in the allowed boot folders (checked again at start: see boot_files)."""
    field = ctx.message.field
    ctx.store.record("VM", self)
    boot_files.resolve(ctx.server.settings, field, value, must_exist=False)
    ctx.store.update("VM", self, **{field: value})


@implements("VM.destroy")
async def destroy(ctx, self):
    """Halted or suspended VMs only; the domain, the metrics, consoles and the VM's
    VBD/VIF records go with it (disks, i.e. VDIs, stay, as in xapi)."""
    store = ctx.store
    async with vm_operation(ctx, self, "destroy"):
        rec = store.record("VM", self)
        await _undefine(ctx, rec)
        for cname, refs in (("VBD", rec["VBDs"]), ("VIF", rec["VIFs"]),
                            ("console", rec["consoles"])):
            for ref in refs:
                if store.exists(cname, ref):
                    store.delete(cname, ref)
        for cname, ref in (("VM_metrics", rec["metrics"]),
                           ("VM_guest_metrics", rec["guest_metrics"])):
            if ref != NULL_REF and store.exists(cname, ref):
                store.delete(cname, ref)
    runtime = ctx.server.runtime_of_vm(self)   # while the record says where it ran
    store.delete("VM", self)
    runtime.vms.boot_records.pop(self, None)
    with contextlib.suppress(OSError):
        os.unlink(domxml.console_log_path(ctx.server.settings.data_dir, rec["uuid"]))


async def _undefine(ctx, rec):
    hv = ctx.server.runtime_of_vm(ctx.store.by_uuid("VM", rec["uuid"])).vms.hv
    if hv.uri:  # nothing to undefine without a hypervisor connection
        await hv_call(hv.undefine(rec["uuid"]))


@implements("VM.set_is_a_template")
async def set_is_a_template(ctx, self, value):
    rec = ctx.store.record("VM", self)
    if value and not rec["is_a_template"]:
        async with vm_operation(ctx, self, "make_into_template"):
            await _undefine(ctx, rec)  # a template has no domain to start behind our back
            ctx.store.update("VM", self, is_a_template=True)
    elif not value and rec["is_a_template"]:
        ctx.store.update("VM", self, is_a_template=False, is_default_template=False)
    update_allowed_operations(ctx.store, self)


@implements("VM.set_blocked_operations")
def set_blocked_operations(ctx, self, value):
    ctx.store.record("VM", self)
    ctx.store.update("VM", self, blocked_operations=dict(value))
    update_allowed_operations(ctx.store, self)


@implements("VM.add_to_blocked_operations")
def add_to_blocked_operations(ctx, self, key, value):
    current = ctx.store.record("VM", self)["blocked_operations"]
    if key in current:
        raise ApiError("MAP_DUPLICATE_KEY", "VM", "blocked_operations", self, key)
    ctx.store.update("VM", self, blocked_operations={**current, key: value})
    update_allowed_operations(ctx.store, self)


@implements("VM.remove_from_blocked_operations")
def remove_from_blocked_operations(ctx, self, key):
    current = dict(ctx.store.record("VM", self)["blocked_operations"])
    current.pop(key, None)
    ctx.store.update("VM", self, blocked_operations=current)
    update_allowed_operations(ctx.store, self)


@implements("VM.assert_operation_valid")
def assert_operation_valid_impl(ctx, self, op):
    assert_operation_valid(ctx.store, self, op)


@implements("VM.update_allowed_operations")
def update_allowed_operations_impl(ctx, self):
    ctx.store.record("VM", self)
    update_allowed_operations(ctx.store, self)


@implements("VM.get_boot_record")
def get_boot_record(ctx, self):
    rec = ctx.store.record("VM", self)
    # Only a running VM has one; after a server restart the current record stands in.
    return ctx.server.runtime_of_vm(self).vms.boot_records.get(self, rec)


def _used(ctx, cname, refs, field):
    return {ctx.store.record(cname, r)[field] for r in refs if ctx.store.exists(cname, r)}


@implements("VM.get_allowed_VBD_devices")
def get_allowed_VBD_devices(ctx, vm):
    used = _used(ctx, "VBD", ctx.store.record("VM", vm)["VBDs"], "userdevice")
    return [d for d in VBD_DEVICES if d not in used]


@implements("VM.get_allowed_VIF_devices")
def get_allowed_VIF_devices(ctx, vm):
    used = _used(ctx, "VIF", ctx.store.record("VM", vm)["VIFs"], "device")
    return [d for d in VIF_DEVICES if d not in used]


def _assert_can_boot_here(ctx, vm, host):
    rec = ctx.store.record("VM", vm)
    check_ref(ctx, "host", host)
    if not ctx.store.record("host", host)["enabled"]:
        raise ApiError("HOST_DISABLED", host)
    assert_memory_valid(rec)
    free = meminfo().get("MemAvailable", 0)
    if ctx.server.runtime(host).vms.hv.capabilities.uses_host_memory and free \
            and rec["memory_dynamic_min"] > free:
        raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", rec["memory_dynamic_min"], free)


@implements("VM.assert_can_boot_here")
def assert_can_boot_here(ctx, self, host):
    _assert_can_boot_here(ctx, self, host)


@implements("VM.get_possible_hosts")
def get_possible_hosts(ctx, vm):
    host = ctx.server.host_ref
    try:
        _assert_can_boot_here(ctx, vm, host)
    except ApiError as exc:
        if exc.code == "HANDLE_INVALID" and exc.params[0] == "VM":
            raise
        return []
    return [host]
