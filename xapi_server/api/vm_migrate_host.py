"""The two ends of a live migration, as each host runs them (api/vm_migrate.py drives
them from the coordinator: in its own process for its own end, by `/pool_internal`
calls for a member's).

- The destination first gets the VM's records (a member brings its working copy up to
  date), makes the VM's disks ready on its own machine and says which file its copy
  of the domain writes its console to instead of the source's. While the domain
  arrives, the coordinator's own sync leaves the record alone (`held`).
- The source asks its libvirtd to move the domain peer to peer to the destination's
  daemon (settings: migration_peer_uri, migration_data_uri, migration_tls), reports
  the job's progress and aborts it on request. A failure leaves the domain running
  here, as libvirt does, and is answered VM_MIGRATE_FAILED (TASK_CANCELLED when it
  was aborted).
"""
from __future__ import annotations

import logging
import os

from ..backends.hypervisor import HypervisorError, MigrationAborted, MigrationPlan
from ..datamodel import NULL_REF
from ..errors import ApiError
from ..services.storage import service, vdiops
from ..services.vm.domxml import console_log_path
from . import pool_records

log = logging.getLogger(__name__)


def _text(args: dict, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError("INVALID_VALUE", name, repr(value)[:80])
    return value


def plan_for(server, uuid: str, address: str, args: dict) -> MigrationPlan:
    """How this host moves a domain to the host at `address` (its settings); the
    domain's console log there is args["console_log"], the copies of its disks
    args["copies"] ({VDI: path there})."""
    settings, store = server.settings, server.store
    copies = args.get("copies") or {}
    copy = args.get("copy_disks") or []
    if not isinstance(copies, dict) or not isinstance(copy, list):
        raise ApiError("INVALID_VALUE", "copies", "a map and a list expected")
    paths = {service.driver_for(server, store.get("VDI", vdi, "SR")).path(
        store.get("VDI", vdi, "location")): there for vdi, there in copies.items()}
    return MigrationPlan(peer_uri=settings.migration_peer_uri.format(address=address),
                         data_uri=settings.migration_data_uri.format(address=address),
                         tls=settings.migration_tls, shared_files=bool(args.get("shared")),
                         copy_disks=[str(t) for t in copy],
                         bridges={str(mac).lower(): str(bridge) for mac, bridge
                                  in (args.get("bridges") or {}).items()},
                         paths={**{str(k): str(v) for k, v in paths.items()},
                                console_log_path(settings.data_dir, uuid):
                                    _text(args, "console_log")})


# -- the destination ----------------------------------------------------------------

async def receive(server, args: dict) -> dict:
    """Ready to take the VM in: {"console_log": the file the domain's console writes to
    here}. On a member the
    records come along (`objects`); the VM is resident nowhere here until its domain
    arrives (this host's sync then says it runs here)."""
    vm = _text(args, "vm")
    store = server.store
    if server.role.is_member:
        try:
            objects = pool_records.decode(args.get("objects") or {})
        except (ValueError, TypeError) as exc:
            raise ApiError("INVALID_VALUE", "objects", str(exc)) from None
        pool_records.add_to_pool(store, objects, replace=True)
        # The coordinator's operation is its own, not one running here. The record
        # still says the VM runs on the source: this host's sync leaves it so until
        # the domain is here (vm_sync: a VM resident elsewhere is not halted here).
        store.update("VM", vm, current_operations={})
    copies = args.get("copies") or {}
    if not isinstance(copies, dict):
        raise ApiError("INVALID_VALUE", "copies", repr(copies)[:80])
    new, paths = {}, {}
    try:
        for vdi, sr in sorted(copies.items()):   # the volumes the disks are copied into
            rec = store.record("VDI", vdi)
            new[vdi] = await vdiops.create(server, sr, rec["virtual_size"], {
                "name_label": rec["name_label"], "name_description": rec["name_description"],
                "type": rec["type"], "sharable": rec["sharable"],
                "read_only": rec["read_only"], "other_config": dict(rec["other_config"])})
            paths[vdi] = service.driver_for(server, sr).path(
                store.get("VDI", new[vdi], "location"))
        for vbd in store.get("VM", vm, "VBDs"):
            old = store.get("VBD", vbd, "VDI")
            if server.role.is_member and old in new:   # this host's copy runs on the new
                store.update("VBD", vbd, VDI=new[old])
            if not store.get("VBD", vbd, "empty") and store.exists("VDI", new.get(old, old)):
                await service.activate(server, new.get(old, old))
    except BaseException:
        await forget_disks(server, {"vdis": list(new.values())})
        raise
    await store.flush()
    log_path = console_log_path(server.settings.data_dir, store.get("VM", vm, "uuid"))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    made = {cname: {} for cname in pool_records.MOVED}
    made["VDI"] = {ref: store.record("VDI", ref) for ref in new.values()}
    return {"console_log": log_path, "paths": paths, "new": new,
            "records": pool_records.encode(made) if server.role.is_member else {}}


async def forget_disks(server, args: dict) -> bool:
    """Destroy these VDIs' volumes on this host and forget them (the originals of disks
    a migration copied, or the copies of a migration that failed)."""
    store = server.store
    vdis = args.get("vdis")
    if not isinstance(vdis, list):
        raise ApiError("INVALID_VALUE", "vdis", repr(vdis)[:80])
    for vdi in vdis:
        if not store.exists("VDI", vdi):
            continue
        sr = store.get("VDI", vdi, "SR")
        server.runtime_of_sr(sr).storage.active.pop(vdi, None)   # no guest uses it now
        drv = service.driver_for(server, sr)
        try:
            with service.errors(sr, vdi):
                await drv.destroy_volume(store.get("VDI", vdi, "location"))
        except ApiError as exc:
            log.warning("volume of VDI %s not removed: %s", vdi, exc.args)
        service.forget_vdi(store, vdi)
        await service.refresh(server, sr, drv)
    await store.flush()
    return True


async def received(server, args: dict) -> dict:
    """After the move (or its failure): this host's records of the VM now, re-read
    from its hypervisor (encoded as pool_records does)."""
    vm = _text(args, "vm")
    runtime = server.runtime(server.host_ref)
    await runtime.vms.refresh(vm)
    picked = {cname: {} for cname in pool_records.MOVED}
    store = server.store
    picked["VM"][vm] = store.record("VM", vm)
    metrics = store.get("VM", vm, "metrics")
    if store.exists("VM_metrics", metrics):
        picked["VM_metrics"][metrics] = store.record("VM_metrics", metrics)
    return pool_records.encode(picked)


# -- the source ---------------------------------------------------------------------

async def send(server, args: dict) -> bool:
    """Move the VM's domain from this host to the host at args["address"]."""
    vm, uuid = _text(args, "vm"), _text(args, "uuid")
    address = _text(args, "address")
    plan = plan_for(server, uuid, address, args)
    hv = server.runtime(server.host_ref).vms.hv
    try:
        await hv.migrate(uuid, plan)
    except MigrationAborted:
        raise ApiError("TASK_CANCELLED", args.get("task") or NULL_REF) from None
    except HypervisorError as exc:
        log.warning("migration of %s to %s failed: %s", uuid, address, exc)
        raise ApiError("VM_MIGRATE_FAILED", vm, args.get("source") or server.host_ref,
                       args.get("destination") or NULL_REF, str(exc)) from None
    return True


async def progress(server, args: dict):
    """The running migration's fraction done, or None."""
    hv = server.runtime(server.host_ref).vms.hv
    return await hv.migration_progress(_text(args, "uuid"))


async def abort(server, args: dict) -> bool:
    hv = server.runtime(server.host_ref).vms.hv
    await hv.abort_migration(_text(args, "uuid"))
    return True



# The member's side of each (`/pool_internal` ops, api/pool_calls.py).
MIGRATION_OPS = {"migrate_receive": receive, "migrate_received": received,
                 "migrate_send": send, "migrate_progress": progress,
                 "migrate_abort": abort, "migrate_forget_disks": forget_disks}
