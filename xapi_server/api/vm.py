"""VM power operations: start, shutdowns, reboots, suspend/resume, pause/unpause.

Each runs inside `vm_operation` (checks in xapi's order, current_operations held for
its duration), makes the hypervisor calls through the runtime of the VM's host
(`_runtime`; never blocking the event loop), and ends by re-reading the domain so
the record says what the hypervisor says. The domain XML is rebuilt from the VM
record at every boot.
"""
from __future__ import annotations

import os

from ..dispatch.generic import check_ref
from ..dispatch.registry import implements
from ..errors import ApiError
from ..hostinfo import meminfo
from ..services.vm import domxml
from ..services.vm.calls import hv_call
from ..services.vm.reachable import ensure_reachable
from ..wire.xmlrpc import encode_value
from . import boot_files, pool_forward
from .vm_image import discard_image, has_image, resume_from_image
from .host_maintenance import assert_takes_new_vms
from .vm_checks import update_allowed_operations, vm_operation
from .vm_sync import ensure_metrics
from .vm_memory import assert_memory_valid

CLEAN_SHUTDOWN_TIMEOUT = 1200.0   # seconds a guest gets to act on the power button
SHUTDOWN_FALLBACK_TIMEOUT = 60.0  # VM.shutdown: then it is pulled
REBOOT_TIMEOUT = 1200.0

def _runtime(ctx, vm):
    """The VM service of the host the VM runs on, or would start on (services/host.py)."""
    return ctx.server.runtime_of_vm(vm).vms


def _progress(ctx, fraction):
    ctx.server.tasks.set_progress(ctx.task, fraction)


def _check_host(ctx, host):
    check_ref(ctx, "host", host)
    if host != ctx.server.host_ref:
        raise ApiError("VM_NOT_RESIDENT_HERE", "OpaqueRef:NULL", host)


def _assert_can_boot(ctx, vm, rec, force=False):
    assert_memory_valid(rec)
    if rec["VCPUs_at_startup"] < 1 or rec["VCPUs_at_startup"] > rec["VCPUs_max"]:
        raise ApiError("INVALID_VALUE", "VCPUs_at_startup", rec["VCPUs_at_startup"])
    rt = _runtime(ctx, vm)
    # Confined even on the test driver (a policy, not a hypervisor matter); the files
    # need to exist only where a real QEMU reads them.
    caps = rt.hv.capabilities
    boot = boot_files.resolve_record(ctx.server.settings, rec,
                                     must_exist=caps.reads_boot_files)
    if not caps.uses_host_memory:
        return boot
    if not force:
        free = meminfo().get("MemAvailable", 0)
        if free and rec["memory_dynamic_min"] > free:
            raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", rec["memory_dynamic_min"], free)
    return boot


async def boot(ctx, vm, paused=False, force=False):
    """Build the XML from the record, (re)define the domain and start it."""
    rt = _runtime(ctx, vm)
    rec = ctx.store.record("VM", vm)
    boot_paths = _assert_can_boot(ctx, vm, rec, force)
    # Storage and network make their devices ready (activate volumes, bridges ...) and
    # then add them to the XML, in the order the Server composed (server.py).
    parts = ctx.server.vm_parts
    for hook in parts.start_hooks:
        await hook(ctx, vm)
    rec = ctx.store.record("VM", vm)
    # The XML names the resolved boot files: what was checked is what QEMU reads.
    build = domxml.BuildContext(ctx.store, vm, {**rec, **boot_paths}, rt.hv.domain_type,
                                ctx.server.settings.data_dir, rt.hv.capabilities)
    xml = domxml.build(build, parts.devices)
    await ensure_reachable(ctx.server, rt.hv, xml)
    os.makedirs(os.path.dirname(domxml.console_log_path(build.data_dir, rec["uuid"])),
                exist_ok=True)
    _progress(ctx, 0.2)
    await hv_call(rt.hv.define(rec["uuid"], xml))
    await hv_call(rt.hv.start(rec["uuid"], paused))
    _progress(ctx, 0.9)
    rt.boot_records[vm] = dict(rec)
    # The snapshot leaves out the previous snapshot: nested, it would grow (and be
    # escaped once more) with every boot, making each write and read of the VM slower.
    ctx.store.update("VM", vm, last_booted_record=encode_value({**rec,
                                                                 "last_booted_record": ""}))
    await rt.refresh(vm)


async def _wait_halted(ctx, vm, timeout) -> bool:
    store = ctx.store
    return await _runtime(ctx, vm).wait_until(
        lambda: store.record("VM", vm)["power_state"] == "Halted", timeout, vm,
        progress=lambda f: _progress(ctx, 0.1 + 0.8 * f))




@implements("VM.start")
async def start(ctx, vm, start_paused, force):
    if await pool_forward.start_elsewhere(ctx, vm, None, start_paused, force):
        return   # placed on a pool member, which ran it
    assert_takes_new_vms(ctx.store, ctx.server.host_ref, chosen_by_caller=False)
    async with vm_operation(ctx, vm, "start"):
        await boot(ctx, vm, start_paused, force)


@implements("VM.start_on")
async def start_on(ctx, vm, host, start_paused, force):
    ctx.store.record("VM", vm)
    if await pool_forward.start_elsewhere(ctx, vm, host, start_paused, force):
        return
    _check_host(ctx, host)
    assert_takes_new_vms(ctx.store, host, chosen_by_caller=True)
    async with vm_operation(ctx, vm, "start_on"):
        await boot(ctx, vm, start_paused, force)


@implements("VM.clean_shutdown")
async def clean_shutdown(ctx, vm):
    async with vm_operation(ctx, vm, "clean_shutdown"):
        await _clean_shutdown(ctx, vm, CLEAN_SHUTDOWN_TIMEOUT)


async def _clean_shutdown(ctx, vm, timeout):
    uuid = ctx.store.record("VM", vm)["uuid"]
    await hv_call(_runtime(ctx, vm).hv.shutdown(uuid))
    if not await _wait_halted(ctx, vm, timeout):
        raise ApiError("VM_SHUTDOWN_TIMEOUT", vm, int(timeout))


@implements("VM.hard_shutdown")
async def hard_shutdown(ctx, vm):
    async with vm_operation(ctx, vm, "hard_shutdown"):
        await _hard_shutdown(ctx, vm)


async def _hard_shutdown(ctx, vm):
    rt = _runtime(ctx, vm)
    await hv_call(rt.hv.destroy(ctx.store.record("VM", vm)["uuid"]))
    await discard_image(ctx, vm)
    await rt.refresh(vm)


@implements("VM.shutdown")
async def shutdown(ctx, vm):
    """Clean when the guest runs, hard if it does not comply (or is not running)."""
    async with vm_operation(ctx, vm, "shutdown"):
        if ctx.store.record("VM", vm)["power_state"] == "Running":
            try:
                await _clean_shutdown(ctx, vm, SHUTDOWN_FALLBACK_TIMEOUT)
                return
            except ApiError as exc:
                if exc.code != "VM_SHUTDOWN_TIMEOUT":
                    raise
        await _hard_shutdown(ctx, vm)


@implements("VM.clean_reboot")
async def clean_reboot(ctx, vm):
    rt = _runtime(ctx, vm)
    async with vm_operation(ctx, vm, "clean_reboot"):
        uuid = ctx.store.record("VM", vm)["uuid"]
        seen = rt.reboots.get(uuid, 0)
        await hv_call(rt.hv.reboot(uuid))
        if rt.hv.capabilities.reboot_reported_by_event:   # else done when reboot returned
            done = await rt.wait_until(
                lambda: rt.reboots.get(uuid, 0) > seen
                or ctx.store.record("VM", vm)["power_state"] == "Halted",
                REBOOT_TIMEOUT, vm, progress=lambda f: _progress(ctx, 0.1 + 0.8 * f))
            if not done:
                raise ApiError("VM_SHUTDOWN_TIMEOUT", vm, int(REBOOT_TIMEOUT))
        rt.boot_records[vm] = dict(ctx.store.record("VM", vm))
        await rt.refresh(vm)


@implements("VM.hard_reboot")
async def hard_reboot(ctx, vm):
    """A new domain from the current record: configuration changes take effect."""
    async with vm_operation(ctx, vm, "hard_reboot"):
        await _hard_shutdown(ctx, vm)
        await boot(ctx, vm, paused=False, force=True)


async def _domain_op(ctx, vm, op, method, *args):
    """The common shape: claim `op`, one hypervisor call on the domain, re-read it."""
    rt = _runtime(ctx, vm)
    async with vm_operation(ctx, vm, op):
        await hv_call(getattr(rt.hv, method)(ctx.store.record("VM", vm)["uuid"], *args))
        await rt.refresh(vm)


@implements("VM.suspend")
async def suspend(ctx, vm):
    await _domain_op(ctx, vm, "suspend", "suspend")


async def _resume(ctx, vm, op, start_paused):
    if not has_image(ctx.store, vm):   # libvirt's managed save
        held = ctx.store.get("VM", vm, "scheduled_to_be_resident_on")
        if held != ctx.server.host_ref and ctx.store.exists("host", held) and \
                ctx.store.get("VM", vm, "power_state") == "Suspended":
            # suspended by a pool member, whose hypervisor keeps its memory
            raise ApiError("OPERATION_NOT_ALLOWED", "the VM's memory is kept by host "
                           f"{ctx.store.get('host', held, 'uuid')}: resume it there")
        return await _domain_op(ctx, vm, op, "resume", start_paused)
    async with vm_operation(ctx, vm, op):
        await resume_from_image(ctx, vm, start_paused)


@implements("VM.resume")
async def resume(ctx, vm, start_paused, force):
    assert_takes_new_vms(ctx.store, ctx.server.host_ref, chosen_by_caller=False)
    await _resume(ctx, vm, "resume", start_paused)


@implements("VM.resume_on")
async def resume_on(ctx, vm, host, start_paused, force):
    ctx.store.record("VM", vm)
    _check_host(ctx, host)
    assert_takes_new_vms(ctx.store, host, chosen_by_caller=True)
    await _resume(ctx, vm, "resume_on", start_paused)


@implements("VM.pause")
async def pause(ctx, vm):
    await _domain_op(ctx, vm, "pause", "pause")


@implements("VM.unpause")
async def unpause(ctx, vm):
    await _domain_op(ctx, vm, "unpause", "unpause")


@implements("VM.power_state_reset")
async def power_state_reset(ctx, vm):
    """Forget the runtime state (xapi: for a VM whose host died). If the domain
    really runs, the next event or poll brings the truth back."""
    ctx.store.record("VM", vm)
    rt = _runtime(ctx, vm)   # the host it was on, before resident_on is cleared
    ctx.store.update("VM", vm, power_state="Halted", domid=-1, resident_on="OpaqueRef:NULL",
                     current_operations={})
    ctx.store.update("VM_metrics", ensure_metrics(ctx.store, vm), state=["halted"],
                     memory_actual=0, VCPUs_number=0)
    rt.boot_records.pop(vm, None)
    update_allowed_operations(ctx.store, vm)
