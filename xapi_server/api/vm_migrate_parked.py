"""VM.migrate_send of a VM that is not running: Halted (its disks move to the SRs
vdi_map names) or Suspended (its disks and its memory move; it resumes on the
destination), as xapi allows both within a pool.

Both go through the live migration the pool already has (api/vm_migrate.move), so
disks are copied by the hosts' libvirt daemons over TLS, never by the coordinator
reaching into a member: a halted VM is started paused (its guest never runs) on a
host that reaches its disks, moved with its disks, then stopped on the destination;
a suspended VM is resumed where its memory is, moved live, then suspended on the
destination, which keeps its memory from then on (scheduled_to_be_resident_on). A
halted VM's affinity names the destination afterwards, so that the next VM.start
places it there first, next to its disks. A move that fails leaves the VM as it was
(halted, or suspended again on its old host), with its disks where they were.
"""
from __future__ import annotations

import logging

from ..datamodel import NULL_REF, METHODS
from ..dispatch import Context
from ..errors import ApiError
from .pool_membership import is_live

log = logging.getLogger(__name__)
PARKED = ("Halted", "Suspended")


async def _call(ctx, name: str, *args):
    """Another VM message, as a client's call would run it (forwarded to the member
    that owns the VM, its own checks and claims)."""
    return await ctx.server.dispatcher.run(
        Context(ctx.server, METHODS[name], session=ctx.session), list(args))


def _reaches_all(store, host: str, srs: set) -> bool:
    return all(any(store.get("PBD", p, "host") == host for p in store.get("SR", sr, "PBDs"))
               for sr in srs)


def source_for(ctx, vm: str, host: str, srs: set) -> str:
    """Where the VM runs for its move to `host`: a suspended VM where its memory is;
    a halted one on a live host reaching every SR of its disks (`srs`), another
    than the destination (the coordinator first)."""
    store, here = ctx.store, ctx.server.host_ref
    if store.get("VM", vm, "power_state") == "Suspended":
        held = store.get("VM", vm, "scheduled_to_be_resident_on")
        source = held if held != NULL_REF and store.exists("host", held) else here
        if source != host and not is_live(store, source):
            raise ApiError("HOST_OFFLINE", source)
        return source
    order = [here] + sorted(h for h in store.tables["host"] if h != here)
    for candidate in [h for h in order if h != host] + [host]:
        if is_live(store, candidate) and _reaches_all(store, candidate, srs):
            return candidate
    raise ApiError("VM_REQUIRES_SR", vm, sorted(srs)[0] if srs else NULL_REF)


async def move_parked(ctx, vm: str, host: str, copies: dict, srs: set, move):
    """The move itself (see the module doc): `copies`, {VDI: SR} of the disks copied
    on the way; `srs`, the SRs its disks are on now; `move`, the live migration
    (api/vm_migrate.move)."""
    store = ctx.store
    suspended = store.get("VM", vm, "power_state") == "Suspended"
    source = source_for(ctx, vm, host, srs)
    if source == host and copies:
        raise ApiError("OPERATION_NOT_ALLOWED", "the VM's disks are reached only from the "
                       "destination: copy them there with VDI.copy or VDI.pool_migrate")
    if suspended:
        await _call(ctx, "VM.resume", vm, False, False)   # where its memory is
    else:
        await _call(ctx, "VM.start_on", vm, source, True, False)   # paused: no guest runs
    try:
        if source != host:
            await move(ctx, vm, host, copies)
    except BaseException:
        await _park(ctx, vm, suspended)
        raise
    await _park(ctx, vm, suspended)
    if not suspended:
        store.update("VM", vm, affinity=host)


async def _park(ctx, vm: str, suspended: bool):
    """Back to the state it had, where it now runs."""
    try:
        if suspended:
            await _call(ctx, "VM.suspend", vm)
        else:
            await _call(ctx, "VM.hard_shutdown", vm)
    except ApiError as exc:
        log.warning("VM %s left %s after its move: %s", ctx.store.get("VM", vm, "uuid"),
                    ctx.store.get("VM", vm, "power_state"), exc.description)
        raise
