"""VM placement in a pool and the forwarding of a VM's power operations to the host
that runs it (or will), as xapi's message forwarding does.

On the coordinator, VM.start picks a host that can run the VM (its affinity first,
then the coordinator, then the members): live, enabled, reaching every SR the VM's
disks are on and every network with PIFs its VIFs use, with memory left for it
(xapi's checks and errors). VM.start_on checks the named host the same way. When
the host is a member, the coordinator sends the member the VM's records with the
call (`/pool_internal` op "vm"); the member brings its own copy of them up to date,
runs the message on its own hypervisor, disks and bridges, and answers with the
records as they now are, which the coordinator writes to the pool database. The
coordinator never touches a member's libvirt itself. A standalone host (a pool of
one) is not affected at all.
"""
from __future__ import annotations

from ..datamodel import METHODS, NULL_REF
from ..dispatch import Context
from ..errors import ApiError
from . import pool_records
from .pool_membership import call_member, is_live

# What a member runs for the coordinator (the VM's first argument, the rest as given).
FORWARDED = ("VM.start", "VM.hard_shutdown", "VM.clean_shutdown", "VM.shutdown",
             "VM.clean_reboot", "VM.hard_reboot", "VM.pause", "VM.unpause")
RESULT_CLASSES = ("VM", "VM_metrics", "VBD", "VDI")


def _in_pool(ctx) -> bool:
    return not ctx.server.role.is_member and len(ctx.store.tables["host"]) > 1


def _free_memory(store, host) -> int:
    total = store.get("host_metrics", store.get("host", host, "metrics"), "memory_total")
    used = sum(rec["memory_static_max"] for rec in store.tables["VM"].values()
               if rec["resident_on"] == host and not rec["is_control_domain"])
    return total - used


def assert_can_run_on(store, vm: str, host: str):
    """xapi's checks of a host for a VM, in its order; raises the first that fails."""
    if not is_live(store, host):
        raise ApiError("HOST_OFFLINE", host)
    if not store.get("host", host, "enabled"):
        raise ApiError("HOST_DISABLED", host)
    rec = store.record("VM", vm)
    for vbd in rec["VBDs"]:
        vdi = store.get("VBD", vbd, "VDI")
        if vbd_empty(store, vbd) or not store.exists("VDI", vdi):
            continue
        sr = store.get("VDI", vdi, "SR")
        if not any(store.get("PBD", p, "host") == host
                   for p in store.get("SR", sr, "PBDs")):
            raise ApiError("VM_REQUIRES_SR", vm, sr)
    for vif in rec["VIFs"]:
        network = store.get("VIF", vif, "network")
        pifs = store.get("network", network, "PIFs") if store.exists("network", network) \
            else []
        if pifs and not any(store.get("PIF", p, "host") == host for p in pifs):
            raise ApiError("VM_REQUIRES_NETWORK", vm, network)
    needed, available = rec["memory_static_max"], _free_memory(store, host)
    if needed > available:
        raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)


def vbd_empty(store, vbd) -> bool:
    return store.get("VBD", vbd, "empty")


def choose_host(store, vm: str, coordinator: str) -> str:
    affinity = store.get("VM", vm, "affinity")
    order = [h for h in [affinity, coordinator] if store.exists("host", h)]
    order += sorted(h for h in store.tables["host"] if h not in order)
    for host in order:
        try:
            assert_can_run_on(store, vm, host)
            return host
        except ApiError:
            continue
    raise ApiError("NO_HOSTS_AVAILABLE")


async def start_elsewhere(ctx, vm: str, host: str | None, paused: bool, force: bool) -> bool:
    """VM.start / start_on in a pool: True when a member ran it; False when this host
    is to start the VM itself (the caller goes on as on a standalone host)."""
    if not _in_pool(ctx):
        return False
    store = ctx.store
    if host is None:
        host = choose_host(store, vm, ctx.server.host_ref)
    else:
        if not store.exists("host", host):
            raise ApiError("HANDLE_INVALID", "host", host)
        assert_can_run_on(store, vm, host)
    if host == ctx.server.host_ref:
        return False
    await _run_on(ctx, host, "VM.start", [vm, paused, force])
    return True


async def on_owner(ctx, message: str, vm: str, *args) -> bool:
    """A power operation of a VM running on a member: run there (True). Only the
    FORWARDED ones: for any other, Server.runtime_of_vm refuses a VM of a member."""
    if not _in_pool(ctx) or message not in FORWARDED:
        return False
    host = ctx.store.get("VM", vm, "resident_on")
    if host in (NULL_REF, ctx.server.host_ref) or not ctx.store.exists("host", host):
        return False
    await _run_on(ctx, host, message, [vm, *args])
    return True


def vm_objects(store, vm: str) -> dict:
    """The VM with what a host needs to run it: metrics, VBDs with their VDIs, SRs and
    PBDs, VIFs with their networks."""
    picked = {cname: {} for cname in pool_records.MOVED}

    def take(cname, ref):
        if store.exists(cname, ref):
            picked[cname][ref] = store.record(cname, ref)

    rec = store.record("VM", vm)
    take("VM", vm)
    take("VM_metrics", rec["metrics"])
    for vbd in rec["VBDs"]:
        take("VBD", vbd)
        vdi = store.get("VBD", vbd, "VDI")
        if store.exists("VDI", vdi):
            take("VDI", vdi)
            sr = store.get("VDI", vdi, "SR")
            take("SR", sr)
            for pbd in store.get("SR", sr, "PBDs"):
                take("PBD", pbd)
    for vif in rec["VIFs"]:
        take("VIF", vif)
        take("network", store.get("VIF", vif, "network"))
    return picked


async def _run_on(ctx, host: str, message: str, args: list):
    store = ctx.store
    answer = await call_member(ctx.server, host, "vm", {
        "message": message, "args": args,
        "objects": pool_records.encode(vm_objects(store, args[0]))}, timeout=600)
    try:
        objects = pool_records.decode(answer)
    except (ValueError, TypeError) as exc:
        raise ApiError("INTERNAL_ERROR", f"the member's answer: {exc}") from None
    pool_records.add_to_pool(store, {c: (objects[c] if c in RESULT_CLASSES else {})
                                     for c in pool_records.MOVED}, replace=True)


async def run_for_coordinator(server, args: dict):
    """On a member: op "vm" (see the module doc)."""
    message, call_args = args.get("message"), args.get("args")
    if message not in FORWARDED or not isinstance(call_args, list) or not call_args:
        raise ApiError("MESSAGE_METHOD_UNKNOWN", str(message))
    try:
        objects = pool_records.decode(args.get("objects") or {})
    except (ValueError, TypeError) as exc:
        raise ApiError("INVALID_VALUE", "objects", str(exc)) from None
    # The coordinator's copy brings configuration made while the VM was halted; while it
    # runs here, this host's records of it are the truth (power state, devices).
    vm, store = call_args[0], server.store
    running_here = store.exists("VM", vm) and store.get("VM", vm, "power_state") != "Halted"
    pool_records.add_to_pool(store, objects, replace=not running_here)
    await server.dispatcher.run(Context(server, METHODS[message]), call_args)
    return pool_records.encode(vm_objects(store, vm))
