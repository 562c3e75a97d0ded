"""Changing the pool's coordinator (xapi_pool.ml, xapi_pool_transition.ml).

`pool.designate_new_master(host)`, a planned change, in xapi's two phases:

1. Propose: every member must answer, and the new coordinator must reach the pool
   database (PostgreSQL, which every host can reach). Nothing has changed yet, so a
   refusal here leaves the pool as it was.
2. Commit: the coordinator stops taking outside calls (it answers HOST_IS_SLAVE with
   the new coordinator's address from then on), flushes every acknowledged write,
   keeps a copy of the records as its working copy for its life as a member, and lets
   go of the pool database. The new coordinator then takes it over: it restarts on
   that database, where the pool-wide generation ceiling is stored with the writes, so
   its event.from tokens carry on above every token handed out before. Every other
   member then follows the new coordinator, and the old one restarts as a member.

`move_pool_database` is the one step that depends on how the pool database is kept:
one PostgreSQL server every host reaches, whose writer lock passes from the old
coordinator to the new; or a replicated database (Patroni, services/pool/ha*.py),
where it is a switchover of Patroni's leader to the new coordinator's host (checked
in phase 1: Patroni goes only to its synchronous standby), after which every host
follows Patroni as after a failover.
"""
from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.pool import ha_switchover, role as pool_role
from ..store import is_postgres_url
from ..store.handover import probe_database, snapshot, write_copy
from .pool_membership import call_member

log = logging.getLogger(__name__)


def pool_database(server) -> str:
    """The URL of the pool database this coordinator writes to; OPERATION_NOT_ALLOWED
    when its records are in a SQLite file only this host has."""
    location = pool_role.database_location(server.settings, server.role)
    if not is_postgres_url(location):
        raise ApiError("OPERATION_NOT_ALLOWED", "the pool database is a SQLite file on the "
                       "coordinator: no other host can take it over (keep a pool's records "
                       "in PostgreSQL: README \"Pool database\")")
    return location


def _fingerprint(store, host: str) -> str:
    pins = [store.get("Certificate", ref, "fingerprint_sha256")
            for ref in store.find("Certificate", host=host, type="host")]
    if not pins:
        raise ApiError("CANNOT_CONTACT_HOST", host)
    return pins[0]


@implements("pool.designate_new_master")
async def designate_new_master(ctx, host):
    server, store = ctx.server, ctx.store
    store.record("host", host)
    if host == server.host_ref:    # xapi: already the coordinator, nothing to do
        return
    if store.get("pool", server.pool_ref, "ha_enabled"):
        raise ApiError("HA_IS_ENABLED")
    database = pool_database(server)
    members = [h for h in store.tables["host"] if h not in (server.host_ref, host)]
    # Phase 1: proposed to every host; any refusal leaves the pool untouched.
    switch = await _patroni_switchover(server, store.get("host", host, "address"))
    await call_member(server, host, "propose_coordinator", {"database": database})
    for member in members:
        await call_member(server, member, "ping", {})
    await _commit_new_coordinator(server, host, members, database, switch)


async def _patroni_switchover(server, address: str):
    """In a pool whose database Patroni replicates: the switchover that moves its
    leader to the host at `address` (run in phase 2), once Patroni's view says it
    can go there; OPERATION_NOT_ALLOWED if not. None for a plain pool database."""
    settings = server.settings
    if not settings.patroni_url:
        return None
    secret = pool_role.coordinator_secret(settings.data_dir)
    try:
        leader, candidate = await asyncio.to_thread(
            ha_switchover.plan, settings.patroni_url, settings.patroni_ca_file, secret,
            address)
    except ha_switchover.SwitchoverRefused as exc:
        raise ApiError("OPERATION_NOT_ALLOWED", f"pool database switchover: {exc}") from None
    return functools.partial(ha_switchover.switchover, settings.patroni_url,
                             settings.patroni_ca_file, secret, leader, candidate)


async def _commit_new_coordinator(server, host: str, members: list[str], database: str,
                                  switch=None):
    """Phase 2 (see the module doc)."""
    store, settings = server.store, server.settings
    address, pin = store.get("host", host, "address"), _fingerprint(store, host)
    pool = server.pool_ref
    if switch is not None and server.pool_ha is not None:
        # Its watch of Patroni would see a member with the leader here and take the
        # pool back mid-switchover; it starts again with the restart below.
        server.pool_ha.cancel()
    server.take_role(pool_role.PoolRole(   # from now on outside calls get HOST_IS_SLAVE
        master_address=address, master_fingerprint=pin,
        secret=pool_role.coordinator_secret(settings.data_dir),
        host_uuid=store.get("host", server.host_ref, "uuid"), pool_database=database))
    store.update("pool", pool, master=host)
    try:
        await store.flush()
        await asyncio.to_thread(write_copy, settings.db_path,
                                snapshot(store, {"host_ref": server.host_ref}))
        await move_pool_database(server, host, database, switch)
    except (ApiError, OSError) as exc:
        log.error("the coordinator stays: the hand-over to %s failed: %s", address, exc)
        # Outside calls stay refused until the restart (the role file is unchanged, so
        # it starts as the coordinator again): the database may be closed already, and
        # a write now would be acknowledged without being kept.
        server.restart_soon()
        if isinstance(exc, ApiError):
            raise
        raise ApiError("INTERNAL_ERROR", f"hand-over: {exc}") from None
    for member in members if switch is None else ():
        # (not live any more here: their heartbeats are refused; in a Patroni pool
        # every host follows Patroni's new leader by itself, api/pool_ha.py)
        try:
            await call_member(server, member, "follow_coordinator",
                              {"address": address, "fingerprint": pin, "database": database},
                              check_live=False)
        except ApiError as exc:   # it keeps calling this host: pool.recover_slaves
            log.error("member %s did not follow the new coordinator: %s", member, exc)
    pool_role.save(settings.data_dir, server.role)
    log.warning("the pool's coordinator is now %s: restarting as a member", address)
    server.restart_soon()


async def move_pool_database(server, host: str, database: str, switch=None):
    """Let go of the pool database and have `host` take it over; for a replicated
    one, `switch` (Patroni's switchover) moves its leader there instead, and that
    host's watch of Patroni takes the pool over (api/pool_ha.py)."""
    # On the event loop, between two changes: a change made after would be queued for
    # a writer that is gone. The writer lock goes with the session.
    server.store.close()
    if switch is not None:
        try:
            log.warning("pool database switchover: %s",
                        await asyncio.to_thread(switch))
        except ha_switchover.SwitchoverRefused as exc:
            raise ApiError("OPERATION_NOT_ALLOWED",
                           f"pool database switchover: {exc}") from None
        return
    await call_member(server, host, "take_over", {"database": database}, check_live=False)


def adopt_pool(server):
    """At start, on a coordinator: pool.master is this host. A coordinator that took the
    pool over finds the pool database naming its previous coordinator as this host and
    pool.master; one whose hand-over failed finds pool.master naming the host it
    proposed."""
    role, store = server.role, server.store
    if role.is_member:
        return
    host = store.meta.get("host_ref")
    found = store.find("host", uuid=role.host_uuid) if role.host_uuid else []
    if role.pool_database and found and host != found[0]:
        host = found[0]
        store.set_meta("host_ref", host)
    pool = store.meta.get("pool_ref")
    if (host and pool and store.exists("host", host) and store.exists("pool", pool)
            and store.get("pool", pool, "master") != host):
        store.update("pool", pool, master=host)


# -- on the member asked (calls from the coordinator, /pool_internal) ------------------

def _text(args: dict, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value:
        raise ApiError("INVALID_VALUE", name, repr(value)[:80])
    return value


async def propose_coordinator(server, args: dict):
    """Phase 1 on the proposed host: can it reach the pool database?"""
    database = _text(args, "database")
    if not is_postgres_url(database):
        raise ApiError("INVALID_VALUE", "database", "not a postgresql:// URL")
    why = await asyncio.to_thread(probe_database, database)
    if why is not None:
        raise ApiError("OPERATION_NOT_ALLOWED",
                       f"the proposed coordinator cannot reach the pool database: {why}")
    return True


def take_over(server, args: dict, in_process: bool = False):
    """Become the coordinator on the pool database: this host's copy of the pool secret
    becomes the coordinator's, the role says so, and the server restarts on it
    (`in_process`: at once and without a new process image, Server.restart_soon)."""
    database, role = _text(args, "database"), server.role
    pool_role.set_coordinator_secret(server.settings.data_dir, role.secret)
    pool_role.save(server.settings.data_dir,
                   pool_role.PoolRole(host_uuid=role.host_uuid, pool_database=database))
    log.warning("taking the pool over as its coordinator: restarting")
    if in_process:
        server.restart_soon(0.05, in_process=True)
    else:
        server.restart_soon()
    return True


def follow_coordinator(server, args: dict):
    """Another host coordinates the pool now: call it from the next start on (and
    remember where the pool database is, for an emergency)."""
    database = args.get("database")
    role = dataclasses.replace(
        server.role, master_address=_text(args, "address"),
        master_fingerprint=_text(args, "fingerprint"),
        pool_database=database if isinstance(database, str) else server.role.pool_database)
    pool_role.save(server.settings.data_dir, role)
    log.warning("the pool's coordinator is now %s: restarting", role.master_address)
    server.restart_soon()
    return True
