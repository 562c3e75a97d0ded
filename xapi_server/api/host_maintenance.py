"""host: maintenance mode (disable/enable), evacuation, reboot and shutdown, and what an
admin reads on a host (dmesg, the server's log, the management interface), with xapi's
rules (xapi_host.ml, xapi_host_helpers.ml):

- a disabled host takes no new VMs: VM.start/resume find no host (NO_HOSTS_AVAILABLE),
  start_on/resume_on it fail with HOST_DISABLED; its running VMs stay;
- reboot and shutdown need the host disabled (HOST_NOT_DISABLED) and no running guest
  (HOST_IN_USE [host, "vm", vm]); the command runs a few seconds after the call returns
  (settings host_reboot_command / host_shutdown_command);
- evacuation moves running VMs to the pool's other enabled hosts. With none, each
  running VM stays, as HOST_NOT_ENOUGH_FREE_MEMORY [vm] (what xapi's planner reports
  when no host has room); assert_can_evacuate says all of them in one
  CANNOT_EVACUATE_HOST.
allowed_operations of a host follow the same rules (update_allowed_operations).
"""
from __future__ import annotations

import asyncio
import logging
import shlex

from .._logging import RECENT
from ..dispatch.registry import implements
from ..errors import ApiError
from . import vm_checks, vm_migrate

log = logging.getLogger(__name__)

NULL = "OpaqueRef:NULL"
STAY_DISABLED = "host.stay_disabled"   # store meta: disabled with auto_enable=false
POWER_DELAY = 5.0     # seconds between a reboot/shutdown call's answer and the command
# What a host record lists: the operations this server has.
HOST_OPERATIONS = ("provision", "evacuate", "reboot", "shutdown", "vm_start", "vm_resume",
                   "vm_migrate")


async def run_command(argv: list[str]) -> str:
    """A host command's output; INTERNAL_ERROR with what it said if it fails."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise ApiError("INTERNAL_ERROR", f"{argv[0]}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def running_guests(store, host: str) -> list[str]:
    return [vm for vm in store.get("host", host, "resident_VMs")
            if store.exists("VM", vm) and not store.get("VM", vm, "is_control_domain")
            and store.get("VM", vm, "power_state") in ("Running", "Paused")]


def other_enabled_hosts(store, host: str) -> list[str]:
    return [h for h, rec in store.tables["host"].items() if h != host and rec["enabled"]]


def allowed_operations(store, host: str) -> list[str]:
    rec = store.record("host", host)
    allowed = set(HOST_OPERATIONS)
    if rec["enabled"]:
        allowed -= {"reboot", "shutdown"}
    else:
        allowed -= {"provision", "vm_start", "vm_resume", "vm_migrate"}
    current = set(rec["current_operations"].values())
    if current & {"evacuate", "reboot", "shutdown"}:
        allowed -= {"provision", "vm_start", "vm_resume", "vm_migrate", "reboot", "shutdown"}
    return [op for op in HOST_OPERATIONS if op in allowed]


def update_allowed_operations(store, host: str):
    allowed = allowed_operations(store, host)
    if allowed != store.get("host", host, "allowed_operations"):
        store.update("host", host, allowed_operations=allowed)


def assert_takes_new_vms(store, host: str, chosen_by_caller: bool):
    """Before a VM starts or resumes here: a disabled host is refused (xapi's words: the
    caller's host is HOST_DISABLED, an automatic choice finds NO_HOSTS_AVAILABLE)."""
    if not store.get("host", host, "enabled"):
        if chosen_by_caller:
            raise ApiError("HOST_DISABLED", host)
        raise ApiError("NO_HOSTS_AVAILABLE")


@implements("host.disable")
def disable(ctx, host, auto_enable):
    ctx.store.record("host", host)
    if ctx.store.get("host", host, "enabled"):
        log.info("host %s disabled at a user's request", host)
        ctx.store.update("host", host, enabled=False)
    ctx.store.set_meta(STAY_DISABLED, "false" if auto_enable else "true")
    update_allowed_operations(ctx.store, host)


@implements("host.enable")
def enable(ctx, host):
    ctx.store.record("host", host)
    if not ctx.store.get("host", host, "enabled"):
        log.info("host %s enabled at a user's request", host)
        ctx.store.update("host", host, enabled=True)
    ctx.store.set_meta(STAY_DISABLED, "false")
    update_allowed_operations(ctx.store, host)


def destination(store, vm: str, host: str) -> str | list:
    """Where a running guest of `host` can go (the first other enabled host that passes
    VM.pool_migrate's checks), else what stops it ([CODE, params...]: the first host's
    refusal, or HOST_NOT_ENOUGH_FREE_MEMORY [vm] when there is no other host)."""
    refusal = None
    for other in sorted(other_enabled_hosts(store, host)):
        try:
            vm_migrate.assert_can_receive(store, vm, other, {})
            return other
        except ApiError as exc:
            refusal = refusal or exc.description
    return refusal or ["HOST_NOT_ENOUGH_FREE_MEMORY", vm]


def evacuation_plan(store, host: str) -> dict[str, list[str]]:
    """VM -> [CODE, params...] for every running guest that cannot leave."""
    store.record("host", host)
    blocked = {}
    for vm in running_guests(store, host):
        where = destination(store, vm, host)
        if isinstance(where, list):
            blocked[vm] = where
    return blocked


@implements("host.get_vms_which_prevent_evacuation")
def get_vms_which_prevent_evacuation(ctx, self):
    return evacuation_plan(ctx.store, self)


@implements("host.assert_can_evacuate")
def assert_can_evacuate(ctx, host):
    blocked = evacuation_plan(ctx.store, host)
    if blocked:
        raise ApiError("CANNOT_EVACUATE_HOST", "|".join(",".join(e) for e in blocked.values()))


@implements("host.evacuate")
async def evacuate(ctx, host, network, evacuate_batch_size):
    """Every running guest moves live to another host (VM.pool_migrate's way), one at a
    time; nothing moves when one of them has nowhere to go (xapi's plan comes first)."""
    store = ctx.store
    if network != NULL:
        store.record("network", network)
    for vm in evacuation_plan(store, host):
        _refuse(store, vm, host)
    for vm in running_guests(store, host):
        async with vm_checks.vm_operation(ctx, vm, "pool_migrate"):
            where = destination(store, vm, host)
            if isinstance(where, list):   # the pool changed since the plan
                _refuse(store, vm, host)
            await vm_migrate.move(ctx, vm, where)


def _refuse(store, vm: str, host: str):
    """Raise what keeps the VM on the host (as `destination` reports it)."""
    others = sorted(other_enabled_hosts(store, host))
    if others:
        vm_migrate.assert_can_receive(store, vm, others[0], {})
    raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", vm)


def _assert_bacon_mode(store, host: str):
    """xapi's name for it: disabled, and no guest running here."""
    if store.get("host", host, "enabled"):
        raise ApiError("HOST_NOT_DISABLED")
    guests = running_guests(store, host)
    if guests:
        raise ApiError("HOST_IN_USE", host, "vm", guests[0])


async def _power(ctx, host, operation: str, command: str):
    store = ctx.store
    store.record("host", host)
    _assert_bacon_mode(store, host)
    argv = shlex.split(command)
    if not argv:
        raise ApiError("NOT_IMPLEMENTED", f"host.{operation}")
    key = ctx.task or f"host.{operation}"
    store.update("host", host, current_operations={
        **store.get("host", host, "current_operations"), key: operation})
    update_allowed_operations(store, host)
    log.warning("host %s: %s in %g s (%s)", host, operation, POWER_DELAY, command)

    async def later():
        await asyncio.sleep(POWER_DELAY)
        try:
            await run_command(argv)
        except Exception as exc:   # the call has answered: the log is all that is left
            log.error("host %s: %s failed: %s", host, operation, exc)
    jobs = ctx.server.runtime(host).jobs     # held, so the task is not collected
    job = asyncio.get_running_loop().create_task(later())
    jobs.add(job)
    job.add_done_callback(jobs.discard)


@implements("host.reboot")
async def reboot(ctx, host):
    await _power(ctx, host, "reboot", ctx.server.settings.host_reboot_command)


@implements("host.shutdown")
async def shutdown(ctx, host):
    await _power(ctx, host, "shutdown", ctx.server.settings.host_shutdown_command)


@implements("host.dmesg")
async def dmesg(ctx, host):
    ctx.store.record("host", host)
    return await run_command(["dmesg"])


@implements("host.dmesg_clear")
async def dmesg_clear(ctx, host):
    ctx.store.record("host", host)
    return await run_command(["dmesg", "--read-clear"])


@implements("host.get_log")
def get_log(ctx, host):
    ctx.store.record("host", host)
    return RECENT.text()


@implements("host.get_management_interface")
def get_management_interface(ctx, host):
    ctx.store.record("host", host)
    for pif in ctx.store.get("host", host, "PIFs"):
        if ctx.store.exists("PIF", pif) and ctx.store.get("PIF", pif, "management"):
            return pif
    raise ApiError("HOST_HAS_NO_MANAGEMENT_IP")
