"""Moving a running VM to another host of the pool: VM.pool_migrate (its disks stay on
shared SRs), VM.migrate_send with host.migrate_receive (its disks copied to the SRs
vdi_map names while it runs), VM.assert_can_migrate; the coordinator drives them.

The coordinator checks the destination as xapi does (live, enabled, reaching every SR
the disks will be on and every network the VIFs use, with memory left for the VM),
reserves it (scheduled_to_be_resident_on), asks the destination to get ready
(api/vm_migrate_host.receive), then the source to move the domain with libvirt's
peer-to-peer live migration between the two hosts' daemons. The task's progress is the
libvirt job's; cancelling the task aborts the job. A failed or cancelled migration
leaves the VM running where it was (libvirt resumes it there); a done one leaves its
records (resident_on, domid, the consoles' location) naming the destination. The
coordinator acts on its own machine for its own end and calls a member's
`/pool_internal` for the member's end, never a member's libvirt itself. A halted or
suspended VM given to VM.migrate_send moves the same way (api/vm_migrate_parked.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError
from ..messages import PRIORITY_INFO, raise_message
from ..services.storage import service
from ..services.vm import consoles
from . import pool_records, vm_migrate_host as at_host, vm_migrate_parked
from .pool_membership import call_member, is_live
from .vm_checks import assert_operation_valid, vm_operation

log = logging.getLogger(__name__)
PROGRESS_EVERY = 0.5   # seconds between two reads of the migration job's progress


# -- checks ----------------------------------------------------------------------------

def disks(store, vm: str) -> dict:
    """{VDI: SR} of the VM's disks (CD drives and empty drives left out)."""
    found = {}
    for vbd in store.get("VM", vm, "VBDs"):
        rec = store.record("VBD", vbd)
        if rec["empty"] or rec["type"] == "CD" or not store.exists("VDI", rec["VDI"]):
            continue
        found[rec["VDI"]] = store.get("VDI", rec["VDI"], "SR")
    return found


def _reaches(store, sr: str, host: str) -> bool:
    return any(store.get("PBD", p, "host") == host for p in store.get("SR", sr, "PBDs"))


def _memory_free(store, host: str, vm: str) -> int:
    """What the host has left: its memory less the VMs resident or about to be."""
    total = store.get("host_metrics", store.get("host", host, "metrics"), "memory_total")
    used = sum(rec["memory_static_max"] for ref, rec in store.tables["VM"].items()
               if ref != vm and not rec["is_control_domain"]
               and host in (rec["resident_on"], rec["scheduled_to_be_resident_on"]))
    return total - used


def assert_can_receive(store, vm: str, host: str, vdi_map: dict):
    """xapi's checks of the destination, in its order (disks go where vdi_map says,
    the others stay on their SR)."""
    if not is_live(store, host):
        raise ApiError("HOST_OFFLINE", host)
    if not store.get("host", host, "enabled"):
        raise ApiError("HOST_DISABLED", host)
    for vdi, sr in disks(store, vm).items():
        target = vdi_map.get(vdi, sr)
        if not _reaches(store, target, host):
            raise ApiError("VM_REQUIRES_SR", vm, target)
    for vif in store.get("VM", vm, "VIFs"):
        network = store.get("VIF", vif, "network")
        pifs = store.get("network", network, "PIFs") if store.exists("network", network) \
            else []
        if pifs and not any(store.get("PIF", p, "host") == host for p in pifs):
            raise ApiError("VM_REQUIRES_NETWORK", vm, network)
    needed, free = store.get("VM", vm, "memory_static_max"), _memory_free(store, host, vm)
    if needed > free:
        raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)


def assert_can_move(server, vm: str, host: str, vdi_map: dict):
    store = server.store
    store.record("host", host)   # HANDLE_INVALID
    source = store.get("VM", vm, "resident_on")
    if host == source:
        raise ApiError("OPERATION_NOT_ALLOWED", "the VM already runs on that host")
    if source != server.host_ref and not is_live(store, source):
        raise ApiError("HOST_OFFLINE", source)
    assert_can_receive(store, vm, host, vdi_map)


# -- the API -----------------------------------------------------------------------------

@implements("VM.pool_migrate")
async def pool_migrate(ctx, vm, host, options):
    async with vm_operation(ctx, vm, "pool_migrate"):
        assert_can_move(ctx.server, vm, host, {})
        await move(ctx, vm, host)


def _copies(ctx, vm: str, dest: dict, live: bool, vdi_map: dict, vif_map: dict,
            vgpu_map: dict) -> tuple[str, dict]:
    """migrate_send's own checks: (destination host, {VDI: SR it is copied to})."""
    store = ctx.store
    host = dest.get("host", "")
    store.record("host", host)   # another pool's host: api/vm_migrate_cross.py
    state = store.get("VM", vm, "power_state")
    parked = state in vm_migrate_parked.PARKED   # moved as it is, not live
    if not parked and (state != "Running" or not live):
        raise ApiError("VM_BAD_POWER_STATE", vm, "running", state.lower())
    if vif_map:
        raise ApiError("OPERATION_NOT_ALLOWED",
                       "VIF mapping is not allowed for intra-pool migration")
    if vgpu_map:
        raise ApiError("OPERATION_NOT_ALLOWED", "this host has no vGPUs")
    copies = {}
    for vdi, sr in disks(store, vm).items():
        target = vdi_map.get(vdi, sr)
        if not store.exists("SR", target):
            raise ApiError("HANDLE_INVALID", "SR", target)
        if vdi not in vdi_map and not _reaches(store, sr, host):
            raise ApiError("VDI_NOT_IN_MAP", vdi)
        if target != sr:
            copies[vdi] = target
    if parked:
        assert_operation_valid(store, vm, "migrate_send")
        assert_can_receive(store, vm, host, vdi_map)
    else:
        assert_can_move(ctx.server, vm, host, vdi_map)
    return host, copies


# VM.assert_can_migrate and VM.migrate_send within the pool (api/vm_migrate_cross.py
# registers both and sends a map of another pool's host to its cross-pool end).
def assert_can_migrate(ctx, vm, dest, live, vdi_map, vif_map, options, vgpu_map):
    _copies(ctx, vm, dest, live, vdi_map, vif_map, vgpu_map)


async def migrate_send(ctx, vm, dest, live, vdi_map, vif_map, options, vgpu_map,
                       vdi_format_map):
    """Within the pool: the disks vdi_map sends to another SR are copied while the VM
    runs (libvirt copies them into volumes the destination made first), then the VM
    uses the copies and the originals are destroyed; the others stay where they are.
    A halted or suspended VM moves as it is (api/vm_migrate_parked.py)."""
    if ctx.store.get("VM", vm, "power_state") in vm_migrate_parked.PARKED:
        host, copies = _copies(ctx, vm, dest, live, vdi_map, vif_map, vgpu_map)
        await vm_migrate_parked.move_parked(ctx, vm, host, copies,
                                            set(disks(ctx.store, vm).values()), move)
        return vm
    async with vm_operation(ctx, vm, "migrate_send"):
        host, copies = _copies(ctx, vm, dest, live, vdi_map, vif_map, vgpu_map)
        await move(ctx, vm, host, copies)
    return vm


@implements("host.migrate_receive")
def migrate_receive(ctx, host, network, options):
    store = ctx.store
    store.record("host", host)
    if not is_live(store, host):
        raise ApiError("HOST_OFFLINE", host)
    pifs = [p for p in store.get("network", network, "PIFs")
            if store.get("PIF", p, "host") == host]
    if not pifs:
        raise ApiError("HOST_CANNOT_ATTACH_NETWORK", host, network)
    address = store.get("PIF", pifs[0], "IP") or store.get("host", host, "address")
    coordinator = store.get("host", ctx.server.host_ref, "address")
    if ctx.server.settings.port != 443:   # another pool reaches our API there
        coordinator = f"[{coordinator}]" if ":" in coordinator else coordinator
        coordinator = f"{coordinator}:{ctx.server.settings.port}"
    session = ctx.session or ""
    return {"host": host, "session_id": session, "master": f"http://{coordinator}",
            "SM": f"http://{address}/services/SM?session_id={session}",
            "xenops": f"http://{address}/services/xenops?session_id={session}"}


async def move(ctx, vm: str, host: str, copies: dict | None = None):
    """The migration itself, once checked (see the module doc). `copies`: {VDI: SR}
    of the disks copied to another SR on the way."""
    server, store = ctx.server, ctx.store
    copies = copies or {}
    source, uuid = store.get("VM", vm, "resident_on"), store.get("VM", vm, "uuid")
    shared = all(store.get("SR", sr, "shared") for vdi, sr in disks(store, vm).items()
                 if vdi not in copies)
    store.update("VM", vm, scheduled_to_be_resident_on=host)
    await store.flush()
    here = server.runtime(server.host_ref).vms
    try:
        # Our own sync must not take the domain leaving (or arriving) for a power change.
        held = here.held(uuid) if server.host_ref in (source, host) \
            else contextlib.nullcontext()
        async with held:
            ready = await _at(ctx, host, "migrate_receive", at_host.receive, {
                "vm": vm, "objects": pool_records.encode(vm_objects(store, vm, copies)),
                "copies": copies})
            made = _new_disks(store, ready, copies)
            args = {"vm": vm, "uuid": uuid, "address": store.get("host", host, "address"),
                    "console_log": ready["console_log"], "shared": shared,
                    "copies": {vdi: ready["paths"][vdi] for vdi in copies},
                    "copy_disks": [store.get("VBD", vbd, "device")
                                   for vbd in store.get("VM", vm, "VBDs")
                                   if store.get("VBD", vbd, "VDI") in copies],
                    "source": source, "destination": host, "task": ctx.task or NULL_REF}
            try:
                await _follow(ctx, source, uuid, _at(ctx, source, "migrate_send",
                                                     at_host.send, args, timeout=24 * 3600))
            except BaseException:   # the VM runs on its old disks: the copies go
                await _forget(ctx, host, list(made.values()))
                raise
            store.update("VM", vm, resident_on=host)   # before `held` re-reads the domain
            for vbd in store.get("VM", vm, "VBDs"):
                if store.get("VBD", vbd, "VDI") in made:
                    store.update("VBD", vbd, VDI=made[store.get("VBD", vbd, "VDI")])
    finally:
        if store.exists("VM", vm):
            store.update("VM", vm, scheduled_to_be_resident_on=NULL_REF)
    if copies:   # the originals, on the SRs the source reached them on
        await _forget(ctx, source, list(copies))
    if host != server.host_ref:   # the destination's records of the VM, as it runs there
        objects = pool_records.decode(await _at(ctx, host, "migrate_received",
                                                at_host.received, {"vm": vm}))
        pool_records.add_to_pool(store, {c: (objects[c] if c in ("VM", "VM_metrics") else {})
                                         for c in pool_records.MOVED}, replace=True)
    for console in store.get("VM", vm, "consoles"):
        if store.exists("console", console):
            store.update("console", console, location=consoles.location(
                store, host, server.settings.port, store.get("console", console, "uuid")))
    raise_message(server, "VM_MIGRATED", PRIORITY_INFO, "VM", uuid,
                  f"VM {store.get('VM', vm, 'name_label')!r} migrated from host "
                  f"{store.get('host', source, 'name_label')!r} to host "
                  f"{store.get('host', host, 'name_label')!r}")


def _new_disks(store, ready: dict, copies: dict) -> dict:
    """{original VDI: its copy} the destination made (a member's records come along)."""
    made = {vdi: ready["new"][vdi] for vdi in copies}
    if ready.get("records"):
        objects = pool_records.decode(ready["records"])
        pool_records.add_to_pool(store, {c: (objects[c] if c == "VDI" else {})
                                         for c in pool_records.MOVED}, replace=True)
    return made


async def _forget(ctx, host: str, vdis: list):
    """Destroy these disks on `host` (and in the pool database)."""
    if not vdis:
        return
    try:
        await _at(ctx, host, "migrate_forget_disks", at_host.forget_disks, {"vdis": vdis})
    except ApiError as exc:
        log.warning("disks %s not removed on host %s: %s", vdis, host, exc.args)
    for vdi in vdis:
        if ctx.store.exists("VDI", vdi):
            service.forget_vdi(ctx.store, vdi)
    await ctx.store.flush()


async def _at(ctx, host: str, op: str, local, args: dict, timeout: float = 600):
    """Run one end of the migration on `host`: here, or by the member's internal call."""
    if host == ctx.server.host_ref:
        return await local(ctx.server, args)
    return await call_member(ctx.server, host, op, args, timeout=timeout)


async def _follow(ctx, source: str, uuid: str, moving):
    """Await the move, copying the job's progress into the task; a cancelled task
    aborts the job and waits until the source has given up (the VM runs there)."""
    job = asyncio.ensure_future(moving)
    try:
        while not job.done():
            await asyncio.wait({job}, timeout=PROGRESS_EVERY)
            if ctx.task and not job.done():
                with contextlib.suppress(ApiError):
                    done = await _at(ctx, source, "migrate_progress", at_host.progress,
                                     {"uuid": uuid}, timeout=10)
                    if done is not None:
                        ctx.server.tasks.set_progress(ctx.task, 0.99 * done)
        return job.result()
    except asyncio.CancelledError:
        log.warning("migration of %s cancelled: aborting it", uuid)
        with contextlib.suppress(ApiError):
            await _at(ctx, source, "migrate_abort", at_host.abort, {"uuid": uuid})
        with contextlib.suppress(ApiError, asyncio.CancelledError):
            await job
        raise


def vm_objects(store, vm: str, copies: dict) -> dict:
    """The VM with what a host needs to run it: metrics, VBDs with their VDIs, SRs and
    PBDs (also of the SRs disks are copied to), VIFs with their networks."""
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
    for sr in set(copies.values()):
        take("SR", sr)
        for pbd in store.get("SR", sr, "PBDs"):
            take("PBD", pbd)
    return picked
