"""When the coordinator is gone, and keeping the pool's secrets and copies current
(xapi_pool.ml, xapi_host.ml).

- `pool.emergency_transition_to_master`, on a member (through
  session.slave_local_login_with_password, the one login a member takes): the member
  becomes the coordinator. It takes the pool database over if it can reach it and no
  live coordinator is writing to it (the writer lock is free); if the database is out
  of reach it starts from its newest copy (pool.sync_database), as xapi's members do
  from their backups. A coordinator still writing is never taken over behind its back.
  In a pool whose database Patroni replicates (README "Pool HA") Patroni decides:
  only the host of its leader may take over (xapi's HA_IS_ENABLED otherwise, as
  while xapi's own HA is armed), and never from a copy; emergency_reset_master only
  to the host of Patroni's leader.
- `pool.recover_slaves`, on the new coordinator: every other host that answers
  follows it; the ones that did are returned.
- `pool.emergency_reset_master(master_address)`, on a member: follow that coordinator
  (it must know this host and share the pool secret).
- `host.declare_dead`: a member that is gone for good but keeps its records; the VMs
  it ran are Halted, it is disabled.
- `pool.rotate_secret`: a new pool secret on every host; the old one stops working.
- `pool.sync_database`: every acknowledged write is committed, and every member gets a
  fresh copy of the records (its emergency copy).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.pool import ha, peer, role as pool_role
from ..store import is_postgres_url
from ..store.handover import WRITER_HELD, probe_database, snapshot, write_copy
from .pool_coordinator import take_over
from .pool_membership import call_member, is_live, running_here
from .vm_checks import update_allowed_operations
from .vm_sync import ensure_metrics

log = logging.getLogger(__name__)
BACKUP_FILE = "pool-backup.db"   # a member's copy of the pool's records


def _backup_path(server) -> str:
    return os.path.join(server.settings.data_dir, BACKUP_FILE)


def _ha_enabled(store, pool) -> bool:
    return store.exists("pool", pool) and store.get("pool", pool, "ha_enabled")


async def _patroni_view(server) -> ha.PatroniView:
    """Who leads the replicated pool database; HA_IS_ENABLED when Patroni cannot say
    (xapi's answer to the emergency calls while its HA manages the coordinator)."""
    settings = server.settings
    try:
        return await asyncio.to_thread(ha.read_view, settings.patroni_url,
                                       settings.patroni_ca_file)
    except ha.PatroniUnreachable as exc:
        log.warning("emergency call refused: %s", exc)
        raise ApiError("HA_IS_ENABLED") from None


# -- on a member whose coordinator is gone ------------------------------------------

@implements("pool.emergency_transition_to_master")
async def emergency_transition_to_master(ctx):
    server = ctx.server
    role = server.role
    if not role.is_member:   # xapi: already the coordinator
        return
    if _ha_enabled(ctx.store, server.pool_ref):
        raise ApiError("HA_IS_ENABLED")
    if server.settings.patroni_url:   # Patroni decides who coordinates
        view = await _patroni_view(server)
        if not view.leader_is_me or not server.settings.ha_database_url:
            log.warning("emergency_transition_to_master refused: Patroni's leader is %s",
                        view.leader_address or "being elected")
            raise ApiError("HA_IS_ENABLED")
        take_over(server, {"database": server.settings.ha_database_url})
        return
    database = role.pool_database if is_postgres_url(role.pool_database) else ""
    if database:
        why = await asyncio.to_thread(probe_database, database, True)
        if why is not None and WRITER_HELD in why:
            raise ApiError("OPERATION_NOT_ALLOWED", f"the pool database is in use: {why}")
        if why is not None:
            log.error("emergency: the pool database is out of reach (%s): starting from "
                      "this host's copy", why)
            database = ""
    if not database:
        if not os.path.exists(_backup_path(server)):
            raise ApiError("OPERATION_NOT_ALLOWED", "neither the pool database nor a copy "
                           "of it (pool.sync_database) is within this host's reach")
        database = _backup_path(server)
    take_over(server, {"database": database})


@implements("pool.emergency_reset_master")
async def emergency_reset_master(ctx, master_address):
    server = ctx.server
    role = server.role
    if not role.is_member:
        raise ApiError("OPERATION_NOT_ALLOWED", "this host is the pool's coordinator "
                       "(pool.designate_new_master hands the pool over)")
    if _ha_enabled(ctx.store, server.pool_ref):
        raise ApiError("HA_IS_ENABLED")
    try:
        host, port = peer.split_address(master_address, server.settings.port)
    except ValueError:
        raise ApiError("INVALID_VALUE", "master_address", master_address) from None
    if server.settings.patroni_url:   # only the host of Patroni's leader coordinates
        view = await _patroni_view(server)
        if view.leader_address != host:
            log.warning("emergency_reset_master(%s) refused: Patroni's leader is %s",
                        master_address, view.leader_address or "being elected")
            raise ApiError("HA_IS_ENABLED")
    try:   # trust on first use, as at join; then it must know this host and the secret
        pin = await asyncio.to_thread(peer.served_fingerprint, host, port)
        await asyncio.to_thread(peer.call, host, port, "heartbeat",
                                {"host_uuid": role.host_uuid, "running": running_here(server)},
                                pinned=pin, secret=role.secret, timeout=30)
    except peer.Unreachable as exc:
        log.warning("emergency_reset_master: %s: %s", master_address, exc)
        raise ApiError("CANNOT_CONTACT_HOST", master_address) from None
    except peer.Refused as exc:
        raise ApiError(*exc.description) from None
    pool_role.save(server.settings.data_dir, dataclasses.replace(
        role, master_address=master_address, master_fingerprint=pin))
    log.warning("the pool's coordinator is now %s: restarting", master_address)
    server.restart_soon()


# -- on the coordinator --------------------------------------------------------------

def _my_fingerprint(store, host) -> str:
    pins = [store.get("Certificate", ref, "fingerprint_sha256")
            for ref in store.find("Certificate", host=host, type="host")]
    return pins[0] if pins else ""


@implements("pool.recover_slaves")
async def recover_slaves(ctx):
    server, store = ctx.server, ctx.store
    me = server.host_ref
    location = pool_role.database_location(server.settings, server.role)
    order = {"address": store.get("host", me, "address"),
             "fingerprint": _my_fingerprint(store, me),
             "database": location if is_postgres_url(location) else ""}
    recovered = []
    for host in [h for h in store.tables["host"] if h != me]:
        try:   # not only live ones: they stopped heartbeating here when it was not us
            await call_member(server, host, "follow_coordinator", order, check_live=False)
            recovered.append(host)
        except ApiError as exc:
            log.warning("recover_slaves: host %s did not follow: %s", host, exc)
    return recovered


@implements("host.declare_dead")
def declare_dead(ctx, host):
    """xapi's checks: not this host, not a live one; its VMs reset, it is disabled."""
    server, store = ctx.server, ctx.store
    store.record("host", host)
    if host == server.host_ref or is_live(store, host):
        raise ApiError("HOST_IS_LIVE", host)
    for vm in store.find("VM", resident_on=host):
        if store.get("VM", vm, "is_control_domain"):
            continue
        store.update("VM", vm, power_state="Halted", domid=-1, resident_on=NULL_REF,
                     current_operations={})
        store.update("VM_metrics", ensure_metrics(store, vm), state=["halted"],
                     memory_actual=0, VCPUs_number=0)
        update_allowed_operations(store, vm)
    store.update("host", host, enabled=False)
    server.vms_missing.pop(host, None)


def _members(server) -> list[str]:
    return [h for h in server.store.tables["host"] if h != server.host_ref]


@implements("pool.rotate_secret")
async def rotate_secret(ctx):
    """Every member is reached first (CANNOT_CONTACT_HOST: nothing changed); then each
    takes the new secret and the coordinator last, so that it can still call them."""
    server = ctx.server
    if _ha_enabled(ctx.store, server.pool_ref):
        raise ApiError("HA_IS_ENABLED")
    members = _members(server)
    for host in members:
        await call_member(server, host, "ping", {})
    secret = pool_role.new_secret()
    for host in members:
        await call_member(server, host, "pool_secret", {"secret": secret})
    pool_role.set_coordinator_secret(server.settings.data_dir, secret)
    log.warning("the pool secret was rotated")


@implements("pool.sync_database")
async def sync_database(ctx):
    failed = await _push_copies(ctx.server, _members(ctx.server))
    if failed is not None:
        raise failed


async def _push_copies(server, hosts: list) -> ApiError | None:
    """A copy of the records, as they are now, to each of these members; the first
    refusal (the others still get theirs)."""
    store = server.store
    await store.flush()
    location = pool_role.database_location(server.settings, server.role)
    ops = snapshot(store)
    failed = None
    for host in hosts:
        try:
            await call_member(server, host, "database_copy", {
                "ops": ops, "database": location if is_postgres_url(location) else ""},
                timeout=300)
        except ApiError as exc:
            failed = failed or exc
    return failed


async def push_copies_periodically(server):
    """The coordinator: every pool_db_sync_interval seconds each live member gets a
    fresh copy (xapi's pool database backup thread), so that one taking over in an
    emergency starts from a recent one even if nobody called pool.sync_database."""
    while True:
        await asyncio.sleep(server.settings.pool_db_sync_interval)
        members = [h for h in _members(server) if is_live(server.store, h)]
        if not members:
            continue
        failed = await _push_copies(server, members)
        if failed is not None:
            log.warning("a member did not take its copy of the pool database: %s",
                        failed.description)


# -- on a member (calls from the coordinator, /pool_internal) --------------------------

def new_pool_secret(server, args: dict):
    """The pool's secret from now on: in memory (the next heartbeat carries it) and in
    the role file."""
    secret = args.get("secret")
    if not isinstance(secret, str) or not pool_role.valid_secret(secret):
        raise ApiError("INVALID_VALUE", "secret", "not a pool secret")
    role = dataclasses.replace(server.role, secret=secret)
    pool_role.save(server.settings.data_dir, role)
    server.take_role(role)
    return True


async def keep_database_copy(server, args: dict):
    """The coordinator's records, kept as this host's emergency copy."""
    ops, database = args.get("ops"), args.get("database")
    if not isinstance(ops, list) or not all(isinstance(op, list) and op for op in ops):
        raise ApiError("INVALID_VALUE", "ops", "not a list of records")
    path = _backup_path(server)
    try:
        await asyncio.to_thread(write_copy, path, [tuple(op) for op in ops])
    except (OSError, ValueError, TypeError) as exc:
        raise ApiError("INTERNAL_ERROR", f"copy of the pool database: {exc}") from None
    if isinstance(database, str) and database != server.role.pool_database:
        role = dataclasses.replace(server.role, pool_database=database)
        pool_role.save(server.settings.data_dir, role)
        server.take_role(role)
    return True
