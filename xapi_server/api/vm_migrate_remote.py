"""The destination pool's end of a cross-pool migration (the source pool's end is
api/vm_migrate_cross.py).

Before these calls the source pool has made the disks here (VDI.create in the SRs its
vdi_map named) and imported the VM's records (/import_metadata, restore: the same
uuid and MACs, each VBD on its new disk, each VIF on the network vif_map named). The
source then calls the coordinator here on `/pool_internal` with the session of the
map host.migrate_receive gave it (no pool secret: the pools share none):

- `cross_pool_receive` {vm, host}: xapi's checks of the destination host (live,
  enabled, its SRs and networks, memory) for the imported VM, which is reserved
  there and held by a `migrate_send` operation (nobody starts it meanwhile); the
  host gets the disks ready and the networks' bridges up and answers what the
  arriving domain uses there: {console_log, paths: {VDI uuid: file}, bridges:
  {MAC: bridge}}.
- `cross_pool_complete` {vm, host}: the domain has arrived; the record is read from
  the host's hypervisor (Running there) and released.
- `cross_pool_abort` {vm, vdis}: the migration failed; once no domain of the VM is
  left here, the imported VM and the disks made for it are removed, so the pool is
  as it was.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from types import SimpleNamespace

from ..datamodel import NULL_REF, role_allows
from ..errors import ApiError
from ..services.storage import service
from ..services.storage.attach import target_of
from ..services.vm import consoles
from ..services.vm.domxml import console_log_path
from . import pool_records, vm_migrate_host as at_host
from .pool_membership import call_member
from .vm_checks import update_allowed_operations
from .vm_config import destroy as destroy_vm
from .vm_migrate import _forget, assert_can_receive, disks, vm_objects

log = logging.getLogger(__name__)
OPERATION_KEY = "cross-pool migration"   # the imported VM's current_operations key
GONE_TIMEOUT = 60    # seconds a failed move's half-arrived domain may take to go


def _ref(store, args: dict, name: str, cls: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise ApiError("INVALID_VALUE", name, repr(value)[:80])
    store.record(cls, value)   # HANDLE_INVALID
    return value


async def _on(server, host: str, op: str, args: dict):
    """One of the host's own steps: here, or by the member's internal call."""
    if host == server.host_ref:
        return await HOST_OPS[op](server, args)
    return await call_member(server, host, op, args, timeout=120)


# -- on the destination host ----------------------------------------------------------

async def receive_here(server, args: dict) -> dict:
    """The imported VM's disks activated and its bridges up on this host."""
    store = server.store
    if server.role.is_member:   # the coordinator's records of the VM come along
        try:
            pool_records.add_to_pool(store, pool_records.decode(args.get("objects") or {}),
                                     replace=True)
        except (ValueError, TypeError) as exc:
            raise ApiError("INVALID_VALUE", "objects", str(exc)) from None
    vm = _ref(store, args, "vm", "VM")
    paths, bridges = {}, {}
    for vdi in disks(store, vm):
        paths[store.get("VDI", vdi, "uuid")] = await service.activate(server, vdi)
    net = server.runtime(server.host_ref).net
    for vif in store.get("VM", vm, "VIFs"):
        rec = store.record("VIF", vif)
        bridges[rec["MAC"]], _ = await net.ensure_bridge(rec["network"])
    log_path = console_log_path(server.settings.data_dir, store.get("VM", vm, "uuid"))
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    return {"console_log": log_path, "paths": paths, "bridges": bridges}


HOST_OPS = {"migrate_receive_remote": receive_here,
            "migrate_received": at_host.received,
            "migrate_forget_disks": at_host.forget_disks}
# What a member of the destination pool runs for its coordinator (api/pool_calls.py).
MEMBER_OPS = {"migrate_receive_remote": receive_here}


# -- on the destination pool's coordinator ---------------------------------------------

def _hold(store, vm: str, held: bool):
    current = dict(store.record("VM", vm)["current_operations"])
    if held:
        current[OPERATION_KEY] = "migrate_send"
    else:
        current.pop(OPERATION_KEY, None)
    store.update("VM", vm, current_operations=current)
    update_allowed_operations(store, vm)


async def receive(server, args: dict) -> dict:
    store = server.store
    vm, host = _ref(store, args, "vm", "VM"), _ref(store, args, "host", "host")
    assert_can_receive(store, vm, host, {})
    store.update("VM", vm, scheduled_to_be_resident_on=host)
    _hold(store, vm, True)
    await store.flush()
    objects = pool_records.encode(vm_objects(store, vm, {})) if host != server.host_ref \
        else {}
    return await _on(server, host, "migrate_receive_remote", {"vm": vm, "objects": objects})


async def complete(server, args: dict) -> str:
    """The VM's record as its host's hypervisor has it now; its power state."""
    store = server.store
    vm, host = _ref(store, args, "vm", "VM"), _ref(store, args, "host", "host")
    if host == server.host_ref:
        await server.runtime(host).vms.refresh(vm)
    else:
        objects = pool_records.decode(await _on(server, host, "migrate_received", {"vm": vm}))
        pool_records.add_to_pool(store, {c: (objects[c] if c in ("VM", "VM_metrics") else {})
                                         for c in pool_records.MOVED}, replace=True)
    store.update("VM", vm, scheduled_to_be_resident_on=NULL_REF)
    _hold(store, vm, False)
    if store.get("VM", vm, "power_state") in ("Running", "Paused"):   # as VM.start leaves them
        for vbd in store.get("VM", vm, "VBDs"):
            store.update("VBD", vbd, currently_attached=True,
                         device=target_of(store.record("VBD", vbd))[0])
        for vif in store.get("VM", vm, "VIFs"):
            store.update("VIF", vif, currently_attached=True)
    for console in store.get("VM", vm, "consoles"):
        if store.exists("console", console):
            store.update("console", console, location=consoles.location(
                store, host, server.settings.port, store.get("console", console, "uuid")))
    return store.get("VM", vm, "power_state")


async def abort(server, args: dict) -> bool:
    """Only what a move could have made goes: a halted VM (waited for while a move
    holds it) and disks no VM uses any more."""
    store = server.store
    vm = args.get("vm")
    if isinstance(vm, str) and store.exists("VM", vm):
        if OPERATION_KEY in store.get("VM", vm, "current_operations"):
            await _gone(server, vm)
        state = store.get("VM", vm, "power_state")
        if state != "Halted":
            raise ApiError("VM_BAD_POWER_STATE", vm, "halted", state.lower())
        await _forget_vm(server, vm)
    vdis = [v for v in args.get("vdis") or [] if isinstance(v, str)
            and store.exists("VDI", v) and not store.get("VDI", v, "VBDs")]
    by_host: dict[str, list] = {}
    for vdi in vdis:   # each disk where its SR is plugged (this host first)
        hosts = [store.get("PBD", p, "host") for p in store.get("SR", store.get(
            "VDI", vdi, "SR"), "PBDs")]
        by_host.setdefault(server.host_ref if server.host_ref in hosts or not hosts
                           else hosts[0], []).append(vdi)
    shim = SimpleNamespace(server=server, store=store)
    for host, some in by_host.items():
        await _forget(shim, host, some)
    await store.flush()
    return True


async def _gone(server, vm: str):
    """Wait until the half-arrived domain of a failed move has left its host (libvirt
    removes it on its own)."""
    store = server.store
    host = store.get("VM", vm, "resident_on")
    deadline = time.monotonic() + GONE_TIMEOUT
    while host == server.host_ref and store.get("VM", vm, "power_state") != "Halted":
        if time.monotonic() > deadline:
            raise ApiError("VM_BAD_POWER_STATE", vm, "halted",
                           store.get("VM", vm, "power_state").lower())
        await server.runtime(host).vms.refresh(vm)
        await asyncio.sleep(0.2)


async def _forget_vm(server, vm: str):
    """The imported VM goes as VM.destroy removes a halted VM (its disks are the
    caller's)."""
    _hold(server.store, vm, False)
    await destroy_vm(SimpleNamespace(server=server, store=server.store, task=None), vm)


# -- who may call -----------------------------------------------------------------------

CROSS_POOL_OPS = {"cross_pool_receive": receive, "cross_pool_complete": complete,
                  "cross_pool_abort": abort}
NEEDED_ROLE = "vm-power-admin"   # VM.migrate_send's


async def cross_pool_call(server, op: str, args: dict, session: str | None):
    """A call from another pool's coordinator: allowed with a live session of ours
    whose subject may migrate VMs (the session in the map migrate_receive gave)."""
    if server.role.is_member:
        raise ApiError("HOST_IS_SLAVE", server.role.master_address)
    session = server.dispatcher.check_session(session)
    if not server.auth.is_superuser(session):
        role = server.auth.role_of(session)
        if role is None or not role_allows(role, NEEDED_ROLE):
            raise ApiError("RBAC_PERMISSION_DENIED", "VM.migrate_send",
                           "No permission in user session.")
    return await CROSS_POOL_OPS[op](server, args)
