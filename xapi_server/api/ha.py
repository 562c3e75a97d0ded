"""High availability, as xapi's xapi_ha.ml and xha_statefile.ml decide it.

HA needs a statefile on an SR every host reaches, whose driver can attach a volume
without a VM (SM feature VDI_GENERATE_CONFIG or VDI_ATTACH_OFFLINE), with room for
the statefile and the redo log. No driver here has that feature, so enable_ha ends in
CANNOT_CREATE_STATE_FILE (or the named SR's own refusal) and HA stays off, exactly as
xapi on a host with only local storage. The planner is real: which protected VMs
(ha_always_run with priority "restart") could restart, by memory, if hosts failed.
"""
from __future__ import annotations

import itertools
import time

from ..dispatch.registry import implements
from ..errors import ApiError

NULL = "OpaqueRef:NULL"
_ALIGN = 4 << 20
STATEFILE_SIZE = 4096 + 64 * 4096           # xapi: a global section + 64 host sections
REDO_LOG_SIZE = 256 << 20                   # xapi's Redo_log.minimum_vdi_size
MIN_SR_SPACE = sum(-(-size // _ALIGN) * _ALIGN for size in (STATEFILE_SIZE, REDO_LOG_SIZE))
RESTARTS_BLOCKED_UNTIL = "ha.restarts_blocked_until"   # store meta (epoch seconds)
HA_VOLUME_FEATURES = ("VDI_GENERATE_CONFIG", "VDI_ATTACH_OFFLINE")


# -- where a statefile could go ---------------------------------------------------------

def assert_reached_by_every_host(store, sr: str):
    """xapi: every host has a PBD for the SR, and every PBD is plugged (SR_NO_PBDS)."""
    pbds = store.get("SR", sr, "PBDs")
    if len({store.get("PBD", p, "host") for p in pbds}) < len(store.refs("host")) or \
            not all(store.get("PBD", p, "currently_attached") for p in pbds):
        raise ApiError("SR_NO_PBDS", sr)


def assert_volumes_attach_offline(store, sr: str):
    sr_type = store.get("SR", sr, "type")
    sms = store.find("SM", type=sr_type)
    if not sms:
        raise ApiError("INTERNAL_ERROR", f"SR {sr} of type {sr_type} has no SM record")
    features = store.get("SM", sms[0], "features")
    if not any(f in features for f in HA_VOLUME_FEATURES):
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", sr)


def _fits(store, sr: str, vdi_type: str, size: int):
    """An existing volume of that type and size will do; else the SR needs room."""
    if any(store.get("VDI", v, "type") == vdi_type and
           store.get("VDI", v, "virtual_size") >= size for v in store.get("SR", sr, "VDIs")):
        return
    rec = store.record("SR", sr)
    if rec["physical_size"] - rec["physical_utilisation"] < MIN_SR_SPACE:
        raise ApiError("SR_SOURCE_SPACE_INSUFFICIENT", sr)


def assert_can_host_statefile(store, sr: str):
    store.record("SR", sr)
    assert_reached_by_every_host(store, sr)
    assert_volumes_attach_offline(store, sr)
    _fits(store, sr, "ha_statefile", STATEFILE_SIZE)
    _fits(store, sr, "redo_log", REDO_LOG_SIZE)


@implements("SR.assert_can_host_ha_statefile")
def assert_can_host_ha_statefile(ctx, sr):
    assert_can_host_statefile(ctx.store, sr)


# -- turning HA on and off ----------------------------------------------------------------

@implements("pool.enable_ha")
def enable_ha(ctx, heartbeat_srs, configuration):
    store = ctx.store
    for sr in heartbeat_srs:
        store.record("SR", sr)
    if store.get("pool", ctx.server.pool_ref, "ha_enabled"):
        raise ApiError("HA_IS_ENABLED")
    for pif, rec in store.tables["PIF"].items():
        if rec["disallow_unplug"] and not rec["currently_attached"]:
            raise ApiError("REQUIRED_PIF_IS_UNPLUGGED", pif)
    for host in store.refs("host"):
        metrics = store.get("host", host, "metrics")
        if not (store.exists("host_metrics", metrics) and
                store.get("host_metrics", metrics, "live")):
            raise ApiError("HOST_OFFLINE", host)
    if heartbeat_srs:
        assert_can_host_statefile(store, heartbeat_srs[0])   # its own refusal, as xapi
    elif not any(_can_host_statefile(store, sr) for sr in store.refs("SR")):
        raise ApiError("CANNOT_CREATE_STATE_FILE")
    # A statefile could go there, but the heartbeat daemon (xhad) does not exist here.
    raise ApiError("HA_HEARTBEAT_DAEMON_STARTUP_FAILED")


def _can_host_statefile(store, sr) -> bool:
    try:
        assert_can_host_statefile(store, sr)
        return True
    except ApiError:
        return False


@implements("pool.disable_ha")
def disable_ha(ctx):
    if not ctx.store.get("pool", ctx.server.pool_ref, "ha_enabled"):
        raise ApiError("HA_NOT_ENABLED")


@implements("host.emergency_ha_disable")
def emergency_ha_disable(ctx, soft):
    if not ctx.store.get("pool", ctx.server.pool_ref, "ha_enabled"):
        raise ApiError("HA_NOT_ENABLED")


@implements("pool.ha_prevent_restarts_for")
def ha_prevent_restarts_for(ctx, seconds):
    """xapi goes ahead even with HA off (HA may be about to be enabled); 0 unblocks."""
    until = time.time() + seconds if seconds > 0 else 0
    ctx.store.set_meta(RESTARTS_BLOCKED_UNTIL, str(int(until)) if until else None)


# -- the failover planner ---------------------------------------------------------------

def _protected(store, configuration=None) -> list[str]:
    """Running VMs HA would restart: ha_always_run with priority restart (or, for a
    hypothetical configuration, those given priority restart there)."""
    if configuration is not None:
        chosen = [vm for vm, priority in configuration.items() if priority == "restart"]
    else:
        chosen = [vm for vm, rec in store.tables["VM"].items()
                  if rec["ha_always_run"] and rec["ha_restart_priority"] == "restart"]
    return [vm for vm in chosen if store.exists("VM", vm)
            and not store.get("VM", vm, "is_control_domain")
            and store.get("VM", vm, "power_state") in ("Running", "Paused")
            and store.get("VM", vm, "resident_on") != NULL]


def _free_memory(store, host: str) -> int:
    metrics = store.get("host", host, "metrics")
    return store.get("host_metrics", metrics, "memory_free") \
        if store.exists("host_metrics", metrics) else 0


def _need(store, vm: str) -> int:
    return store.get("VM", vm, "memory_static_max") + store.get("VM", vm, "memory_overhead")


def place(store, vms: list[str], hosts: list[str]) -> dict[str, str]:
    """VM -> host for the VMs that fit (largest first, each on the first host with room)."""
    free = {h: _free_memory(store, h) for h in hosts}
    plan = {}
    for vm in sorted(vms, key=lambda v: -_need(store, v)):
        for host in hosts:
            if free[host] >= _need(store, vm):
                free[host] -= _need(store, vm)
                plan[vm] = host
                break
    return plan


def plan_exists(store, n: int, protected: list[str]) -> bool:
    hosts = store.refs("host")
    for failed in itertools.combinations(hosts, min(max(n, 0), len(hosts))):
        lost = [vm for vm in protected if store.get("VM", vm, "resident_on") in failed]
        alive = [h for h in hosts if h not in failed]
        if len(place(store, lost, alive)) < len(lost):
            return False
    return True


def max_failures(store, protected: list[str]) -> int:
    n = 0
    while n < len(store.refs("host")) - 1 and plan_exists(store, n + 1, protected):
        n += 1
    return n


@implements("pool.ha_failover_plan_exists")
def ha_failover_plan_exists(ctx, n):
    return plan_exists(ctx.store, n, _protected(ctx.store))


@implements("pool.ha_compute_max_host_failures_to_tolerate")
def ha_compute_max_host_failures_to_tolerate(ctx):
    return max_failures(ctx.store, _protected(ctx.store))


@implements("pool.ha_compute_hypothetical_max_host_failures_to_tolerate")
def ha_compute_hypothetical_max_host_failures_to_tolerate(ctx, configuration):
    for vm in configuration:
        ctx.store.record("VM", vm)
    return max_failures(ctx.store, _protected(ctx.store, configuration))


@implements("pool.ha_compute_vm_failover_plan")
def ha_compute_vm_failover_plan(ctx, failed_hosts, failed_vms):
    store = ctx.store
    for host in failed_hosts:
        store.record("host", host)
    for vm in failed_vms:
        store.record("VM", vm)
    alive = [h for h in store.refs("host") if h not in failed_hosts]
    plan = place(store, failed_vms, alive)
    return {vm: ({"host": plan[vm]} if vm in plan
                 else {"error_code": "HOST_NOT_ENOUGH_FREE_MEMORY"}) for vm in failed_vms}


# -- the redo log and database replication ---------------------------------------------

@implements("pool.enable_redo_log")
def enable_redo_log(ctx, sr):
    """xapi wraps any failure to find or make the redo-log volume in this code. The
    volume must be attached to the host itself, not to a VM: the SR checks of a
    statefile, which no SR here passes."""
    ctx.store.record("SR", sr)
    raise ApiError("CANNOT_CREATE_STATE_FILE")


@implements("pool.disable_redo_log")
def disable_redo_log(ctx):
    ctx.store.update("pool", ctx.server.pool_ref, redo_log_enabled=False, redo_log_vdi=NULL)


def assert_supports_replication(store, sr: str):
    store.record("SR", sr)
    if not store.get("SR", sr, "shared"):
        raise ApiError("SR_NOT_SHARED", sr)
    assert_reached_by_every_host(store, sr)
    assert_volumes_attach_offline(store, sr)


@implements("SR.assert_supports_database_replication")
def assert_supports_database_replication(ctx, sr):
    assert_supports_replication(ctx.store, sr)


@implements("SR.enable_database_replication")
def enable_database_replication(ctx, sr):
    assert_supports_replication(ctx.store, sr)
    # Unreachable while no driver attaches volumes offline: the copy needs that.
    raise ApiError("SR_OPERATION_NOT_SUPPORTED", sr)


@implements("SR.disable_database_replication")
def disable_database_replication(ctx, sr):
    store = ctx.store
    store.record("SR", sr)
    pool = ctx.server.pool_ref
    kept = [v for v in store.get("pool", pool, "metadata_VDIs")
            if not (store.exists("VDI", v) and store.get("VDI", v, "SR") == sr)]
    if kept != store.get("pool", pool, "metadata_VDIs"):
        store.update("pool", pool, metadata_VDIs=kept)
