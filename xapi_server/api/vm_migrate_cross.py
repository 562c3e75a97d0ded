"""VM.migrate_send and VM.assert_can_migrate: within the pool (api/vm_migrate.py) or,
when the map host.migrate_receive gave names a host this pool does not know, to
another pool, live, with its disks (xapi's cross-pool storage motion, what
`xe vm-migrate remote-master=...` does).

The client logs in to the destination pool, asks it for the map (host.migrate_receive
there) and gives it to VM.migrate_send here. This pool's coordinator then, as xapi's
migrate_send' does:
1. checks (assert_can_migrate, same checks, same order): the VM runs, every disk has
   an SR in vdi_map and every VIF a network in vif_map (an unmapped VIF sharing a
   mapped one's MAC goes where that one goes), the destination host is enabled and
   no older than this one, each SR and network is the destination pool's and the
   host reaches the SRs, it has the memory, and a dry run of the metadata import
   there passes (a VM with the same uuid there is refused);
2. makes an empty disk of each size in its SR there (VDI.create);
3. imports the VM's records there (its /import_metadata with restore: the same uuid
   and MACs, each disk the new one, each VIF on its mapped network);
4. has the destination host ready (api/vm_migrate_remote.py: disks active, bridges
   up, the imported VM reserved and held) and moves the domain with libvirt's peer
   to peer live migration to that host's daemon, every disk copied while the guest
   runs (as within the pool; the trust between the daemons is in
   services/pool/migrate_remote.py);
5. once the domain runs there: the destination reads its state; here the VM's
   records go and its disks are destroyed (their copies run there).
A failure or a cancel before the domain has moved leaves the VM running here and
removes what was made there (the imported VM, its disks). VM.migrate_send answers
the VM's reference in the destination pool.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging

from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError
from ..formats import ova_xml
from ..formats.xva_chunks import one_file_archive
from ..services.pool.migrate_remote import RemotePool, is_remote_map
from ..services.storage.attach import target_of
from .. import __version__
from . import vm_migrate, vm_migrate_host as at_host, vm_xva
from .vm_checks import update_allowed_operations, vm_operation
from .vm_config import destroy as destroy_vm
from .vm_migrate import _at, _follow, _forget, disks

log = logging.getLogger(__name__)


def _cross_pool(ctx, dest: dict) -> bool:
    return is_remote_map(dest) and not ctx.store.exists("host", dest["host"])


def _version(text) -> tuple:
    return tuple(int(p) if p.isdigit() else 0 for p in str(text or "0").split("."))


class Plan:
    """What a cross-pool move does, once checked."""

    def __init__(self, remote: RemotePool, disks: dict, vifs: dict):
        self.remote = remote
        self.disks = disks   # {VDI here: SR there}
        self.vifs = vifs     # {VIF here: network there}


async def _remote(remote: RemotePool, method: str, *args):
    return await asyncio.to_thread(remote.call, method, *args)


def _maps(ctx, vm: str, vdi_map: dict, vif_map: dict) -> tuple[dict, dict]:
    """Every disk's SR and every VIF's network there (xapi check_vdi_map,
    infer_vif_map)."""
    store = ctx.store
    vdis = {}
    for vdi in disks(store, vm):
        if vdi not in vdi_map:
            raise ApiError("VDI_NOT_IN_MAP", vdi)
        vdis[vdi] = vdi_map[vdi]
    by_mac = {store.get("VIF", v, "MAC"): n for v, n in vif_map.items()
              if store.exists("VIF", v)}
    vifs = {}
    for vif in store.get("VM", vm, "VIFs"):
        network = vif_map.get(vif) or by_mac.get(store.get("VIF", vif, "MAC"))
        if not network:
            raise ApiError("VIF_NOT_IN_MAP", vif)
        vifs[vif] = network
    return vdis, vifs


async def check(ctx, vm: str, dest: dict, live: bool, vdi_map: dict, vif_map: dict,
                options: dict, vgpu_map: dict) -> Plan:
    store = ctx.store
    state = store.get("VM", vm, "power_state")
    if options.get("copy") == "true" and state != "Halted" and options.get("force") != "true":
        raise ApiError("VM_BAD_POWER_STATE", vm, "halted", state.lower())
    if state != "Running" or not live:
        raise ApiError("VM_BAD_POWER_STATE", vm, "running", state.lower())
    if vgpu_map:
        raise ApiError("OPERATION_NOT_ALLOWED", "this host has no vGPUs")
    if store.get("VM", vm, "snapshots"):
        raise ApiError("OPERATION_NOT_ALLOWED",
                       "the VM has snapshots: they do not move to another pool here")
    vdis, vifs = _maps(ctx, vm, vdi_map, vif_map)
    remote = RemotePool.of_dest(dest)
    host = await _remote(remote, "host.get_record", remote.host)
    if _version(host.get("software_version", {}).get("product_version")) < \
            _version(__version__):
        raise ApiError("VM_HOST_INCOMPATIBLE_VERSION_MIGRATE", vm, remote.host)
    if not host.get("enabled"):
        raise ApiError("HOST_DISABLED", remote.host)
    for sr in dict.fromkeys(vdis.values()):
        pbds = await _remote(remote, "SR.get_PBDs", sr)   # HANDLE_INVALID: not theirs
        hosts = [await _remote(remote, "PBD.get_host", p) for p in pbds]
        if remote.host not in hosts:
            raise ApiError("VM_REQUIRES_SR", vm, sr)
    for network in dict.fromkeys(vifs.values()):
        await _remote(remote, "network.get_uuid", network)
    needed = store.get("VM", vm, "memory_static_max")
    free = int(await _remote(remote, "host.compute_free_memory", remote.host))
    if needed > free:
        raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, free)
    plan = Plan(remote, vdis, vifs)
    await _import(ctx, vm, plan, {}, dry_run=True)
    return plan


async def _import(ctx, vm: str, plan: Plan, copies: dict, dry_run: bool) -> list:
    """The VM's records into the other pool (xapi's inter_pool_metadata_transfer);
    `copies`: {VDI uuid here: uuid of its disk there}."""
    objects, _ = vm_xva.export_objects(ctx.store, vm)
    archive = one_file_archive("ova.xml", ova_xml.dumps(vm_xva.header(objects)))
    query = [("restore", "true"), ("live", "true"), ("dry_run", str(dry_run).lower())]
    query += [(f"vdi:{here}", there) for here, there in copies.items()]
    query += [(f"vif:{ctx.store.get('VIF', vif, 'uuid')}", network)
              for vif, network in plan.vifs.items()]
    return await asyncio.to_thread(plan.remote.import_metadata, archive, query)


@implements("VM.assert_can_migrate")
async def assert_can_migrate(ctx, vm, dest, live, vdi_map, vif_map, options, vgpu_map):
    if not _cross_pool(ctx, dest):
        return vm_migrate.assert_can_migrate(ctx, vm, dest, live, vdi_map, vif_map,
                                             options, vgpu_map)
    await check(ctx, vm, dest, live, vdi_map, vif_map, options, vgpu_map)


@implements("VM.migrate_send")
async def migrate_send(ctx, vm, dest, live, vdi_map, vif_map, options, vgpu_map,
                       vdi_format_map):
    if not _cross_pool(ctx, dest):
        return await vm_migrate.migrate_send(ctx, vm, dest, live, vdi_map, vif_map, options,
                                             vgpu_map, vdi_format_map)
    async with vm_operation(ctx, vm, "migrate_send"):
        plan = await check(ctx, vm, dest, live, vdi_map, vif_map, options, vgpu_map)
        source = ctx.store.get("VM", vm, "resident_on")
        new_vm = await _move(ctx, vm, plan)
    # The domain runs there: the VM leaves this pool (xapi: force_state_reset, destroy).
    ctx.store.update("VM", vm, power_state="Halted", resident_on=NULL_REF, domid=-1)
    update_allowed_operations(ctx.store, vm)
    try:
        await destroy_vm(ctx, vm)
    except ApiError as exc:
        log.warning("VM %s moved to another pool but not removed here: %s", vm, exc.args)
    await _forget(ctx, source, list(plan.disks))
    return new_vm


async def _move(ctx, vm: str, plan: Plan) -> str:
    store, remote = ctx.store, plan.remote
    uuid, source = store.get("VM", vm, "uuid"), store.get("VM", vm, "resident_on")
    made, new_vm = {}, None   # {VDI here: its disk there}, the VM there
    try:
        for vdi, sr in plan.disks.items():
            rec = store.record("VDI", vdi)
            made[vdi] = await _remote(remote, "VDI.create", {
                "SR": sr, "virtual_size": str(rec["virtual_size"]), "type": rec["type"],
                "name_label": rec["name_label"], "name_description": rec["name_description"],
                "sharable": rec["sharable"], "read_only": rec["read_only"],
                "other_config": dict(rec["other_config"])})
        there = {store.get("VDI", vdi, "uuid"): await _remote(remote, "VDI.get_uuid", ref)
                 for vdi, ref in made.items()}
        (new_vm, *_) = await _import(ctx, vm, plan, there, dry_run=False) or [None]
        if new_vm is None:
            raise ApiError("VM_MIGRATE_FAILED", vm, source, remote.host,
                           "the destination imported no VM")
        ready = await asyncio.to_thread(remote.internal, "cross_pool_receive",
                                        {"vm": new_vm, "host": remote.host})
        args = {"vm": vm, "uuid": uuid, "address": remote.address,
                "console_log": ready["console_log"], "shared": False,
                "copies": {vdi: ready["paths"][there[store.get("VDI", vdi, "uuid")]]
                           for vdi in made},
                "copy_disks": [target_of(store.record("VBD", vbd))[0]
                               for vbd in store.get("VM", vm, "VBDs")
                               if store.get("VBD", vbd, "VDI") in made],
                "bridges": ready["bridges"], "source": source,
                "destination": remote.host, "task": ctx.task or NULL_REF}
        here = ctx.server.runtime(ctx.server.host_ref).vms
        held = here.held(uuid) if source == ctx.server.host_ref else contextlib.nullcontext()
        async with held:
            await _follow(ctx, source, uuid, _at(ctx, source, "migrate_send", at_host.send,
                                                 args, timeout=24 * 3600))
    except BaseException:
        await asyncio.shield(_undo(remote, new_vm, list(made.values())))
        raise
    try:
        await asyncio.to_thread(remote.internal, "cross_pool_complete",
                                {"vm": new_vm, "host": remote.host})
    except ApiError as exc:   # it runs there all the same: that pool's sync sees it
        log.warning("cross-pool migration of %s: completion there failed: %s", uuid, exc.args)
    return new_vm


async def _undo(remote: RemotePool, new_vm, vdis: list):
    """The move failed: what it made in the other pool goes."""
    try:
        await asyncio.to_thread(remote.internal, "cross_pool_abort",
                                {"vm": new_vm, "vdis": vdis})
    except ApiError as exc:
        log.warning("cross-pool migration: not undone there (VM %s, disks %s): %s",
                    new_vm, vdis, exc.args)
