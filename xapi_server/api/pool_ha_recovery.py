"""The VMs of a dead host, on the coordinator of a pool set up for HA (README "Pool
HA"; what is safe: services/pool/ha_recovery.py).

Once a member is not live (no heartbeat for host_assumed_dead_interval), the VMs the
pool database says run there are set Halted; each protected one whose host ran it
under a lock manager is started on a live host that has one (VM.start_on, the
coordinator first); the others, and any start that fails (libvirt's lock manager
refusing it because the old QEMU still holds its disks' leases, among others), are
left Halted for the administrator with the reason in other_config:ha_recovery and a
HA_PROTECTED_VM_RESTART_FAILED message. A VM is never started twice: the lock manager
refuses a second QEMU on the same disks, on any host.

The watch runs on a coordinator whose `vm_lock_manager` is set (a pool set up for
restarts; every host of it states its own); a new coordinator after a failover runs
it too, its hosts' lock managers being in the pool database. Not on a coordinator
without one: marking a member's VMs Halted the moment it misses heartbeats (a member
slow to follow a new coordinator) would be all such a pool got from it.
"""
from __future__ import annotations

import asyncio
import logging

from ..datamodel import METHODS, NULL_REF
from ..dispatch import Context
from ..errors import ApiError
from ..messages import raise_message
from ..services.pool import ha_recovery
from .pool_forward import assert_can_run_on
from .pool_membership import is_live
from .vm_checks import update_allowed_operations
from .vm_sync import ensure_metrics

log = logging.getLogger(__name__)


def enabled(settings) -> bool:
    return bool(settings.vm_lock_manager)


async def watch_dead_hosts(server):
    """The coordinator: every second, the VMs of members that are not live."""
    store = server.store
    ha_recovery.record_lock_manager(store, server.host_ref, server.settings.vm_lock_manager)
    await store.flush()
    while True:
        hosts = [] if store.deposed is not None else sorted(store.tables["host"])
        for host in hosts:   # (a deposed coordinator acts no more: it follows the new one)
            if host != server.host_ref and not is_live(store, host) \
                    and ha_recovery.guests_of(store, host):
                try:
                    await recover(server, host)
                except ApiError as exc:   # e.g. the database refused the writes
                    log.error("recovery of the VMs of host %s failed: %s", host, exc)
        await asyncio.sleep(min(1.0, server.settings.pool_heartbeat_interval))


async def recover(server, dead: str):
    store = server.store
    guests = ha_recovery.guests_of(store, dead)
    reasons = {vm: ha_recovery.why_not_restarted(store, vm, dead) for vm in guests}
    for vm in guests:
        _halt(store, vm)
    await store.flush()   # Halted in the pool database before any start elsewhere
    for vm in guests:
        reason = reasons[vm] or await _restart(server, vm)
        if reason:
            _leave_for_admin(server, vm, dead, reason)
        else:
            where = store.get("host", store.get("VM", vm, "resident_on"), "uuid")
            ha_recovery.mark(store, vm, f"restarted on host {where}")
            log.warning("VM %s of dead host %s restarted on %s",
                        store.get("VM", vm, "uuid"), store.get("host", dead, "uuid"), where)
    await store.flush()


def _halt(store, vm: str):
    """What the pool database says of a VM whose host died (as host.declare_dead)."""
    store.update("VM", vm, power_state="Halted", domid=-1, resident_on=NULL_REF,
                 current_operations={})
    store.update("VM_metrics", ensure_metrics(store, vm), state=["halted"],
                 memory_actual=0, VCPUs_number=0)
    update_allowed_operations(store, vm)


async def _restart(server, vm: str) -> str:
    """"" once started on a fenced host, else why it was not."""
    store = server.store
    candidates = [server.host_ref] + sorted(h for h in store.tables["host"]
                                            if h != server.host_ref)
    targets, refusals = [], []
    for host in ha_recovery.fenced_targets(store, candidates):
        try:
            assert_can_run_on(store, vm, host)
            targets.append(host)
        except ApiError as exc:
            refusals.append(f"{store.get('host', host, 'uuid')}: {exc.code}")
    if not targets:
        return "no live host with a lock manager can run it" + \
            (f" ({'; '.join(refusals)})" if refusals else "")
    start_on = METHODS["VM.start_on"]
    try:
        await server.dispatcher.run(Context(server, start_on), [vm, targets[0], False, False])
    except ApiError as exc:
        return f"the start on {store.get('host', targets[0], 'uuid')} failed: " + \
            " ".join(str(p) for p in [exc.code, *exc.params])[:500]
    return ""


def _leave_for_admin(server, vm: str, dead: str, reason: str):
    store = server.store
    ha_recovery.mark(store, vm, f"left halted: {reason}")
    log.warning("VM %s of dead host %s left halted: %s", store.get("VM", vm, "uuid"),
                store.get("host", dead, "uuid"), reason)
    raise_message(server, ha_recovery.RESTART_FAILED, ha_recovery.RESTART_FAILED_PRIORITY,
                  "VM", store.get("VM", vm, "uuid"),
                  f"host {store.get('host', dead, 'uuid')} is not live: {reason}")
