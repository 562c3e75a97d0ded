"""Pool HA: the server follows Patroni's leader (README "Pool HA").

A task on every host whose `patroni_url` is set asks this host's Patroni who leads
(services/pool/ha.py decides what that means here) and carries the change out with
the steps of a planned change of coordinator (api/pool_coordinator.py):

- the leader runs here and this host is a member: `take_over` the replicated pool
  database (restart on it; `adopt_pool` then makes this host pool.master, and the
  generation ceiling stored with the writes keeps event tokens increasing);
- the leader runs elsewhere and this host coordinated: stop taking outside calls at
  once (HOST_IS_SLAVE with the leader host's address), keep a copy of the records as
  the working copy of a member, and restart as a member of the leader's host;
- a member whose coordinator is not the leader's host: `follow_coordinator` it.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from ..services.pool import ha, ha_etcd_leader
from ..services.pool import role as pool_role
from ..store.handover import probe_database, snapshot, write_copy
from ..store.pool_read import copy_ops, is_replicated_url, pool_host
from .pool_coordinator import follow_coordinator, take_over
from .pool_ha_enable import holds_this_host, move_at_start, point_members_copy

log = logging.getLogger(__name__)
ETCD_CHECK_INTERVAL = 5.0   # seconds between two looks at etcd's leader (coordinator)


def role_at_start(settings, role: pool_role.PoolRole) -> pool_role.PoolRole:
    """Before the store opens: a coordinator of the replicated pool database that comes
    back (restarted, or after a crash) while Patroni's leader runs on another host
    starts as a member of that host, never as a second coordinator. While neither
    holds (the database does not take this host's writes and no leader elsewhere is
    known: this host is cut off, or an election runs) it waits, instead of failing to
    open the store and exiting: once the link is back, one of the two holds. A pool
    not on the replicated database yet is first moved there (api/pool_ha_enable.py).
    Blocking."""
    role = move_at_start(settings, role)
    location = pool_role.database_location(settings, role)
    if not settings.patroni_url or role.is_member or not is_replicated_url(location):
        return role
    told = False
    while True:
        try:
            view = ha.read_view(settings.patroni_url, settings.patroni_ca_file)
            action, address = ha.decide(view, is_member=False, master_address="",
                                        on_pool_database=True, deposed=False)
            if action == ha.FOLLOW:
                return _member_of(settings, ha.leader_first(location, address), view,
                                  address)
        except (ha.PatroniUnreachable, LookupError, OSError) as exc:
            why = f"cannot tell whether this host still coordinates: {exc}"
        else:
            if view.leader and role.pool_database:   # (a host taking the pool over)
                location = ha.leader_first(location, view.leader_address)
                role = dataclasses.replace(role, pool_database=location)
            why = probe_database(location)
            if why is None:
                return role
        if not told:
            told = True
            log.error("waiting for the pool database or Patroni's leader elsewhere: %s", why)
        time.sleep(settings.ha_poll_interval)


def _member_of(settings, location: str, view: ha.PatroniView, address: str):
    ref, uuid, _ = pool_host(location, view.my_address)
    _, _, pin = pool_host(location, address)
    # A member works on its own copy of the records (a crash left it none).
    write_copy(settings.db_path, copy_ops(location, ref))
    member = pool_role.PoolRole(master_address=address, master_fingerprint=pin,
                                secret=pool_role.coordinator_secret(settings.data_dir),
                                host_uuid=uuid, pool_database=settings.ha_database_url)
    pool_role.save(settings.data_dir, member)
    log.warning("Patroni's leader runs on %s: this host starts as a member", address)
    return member


async def follow_patroni(server):
    """Until the role changes (the server then restarts and starts a new watcher)."""
    settings, unreachable, etcd_checked = server.settings, False, 0.0
    while True:
        try:
            view = await asyncio.to_thread(ha.read_view, settings.patroni_url,
                                           settings.patroni_ca_file)
        except ha.PatroniUnreachable as exc:
            if not unreachable:
                log.warning("Patroni does not answer: %s", exc)
            unreachable = True
            await asyncio.sleep(settings.ha_poll_interval)
            continue
        unreachable = False
        role, store = server.role, server.store
        action, address = ha.decide(view, is_member=role.is_member,
                                    master_address=role.master_address,
                                    on_pool_database=store.replicated,
                                    deposed=store.deposed is not None)
        try:
            if action == ha.TAKE_OVER and await _take_over(server, view):
                return
            if action == ha.FOLLOW and await _follow(server, address):
                return
            if action == ha.STAY and view.leader:
                await point_members_copy(server, view)
            if action == ha.STAY and view.leader_is_me and not role.is_member:
                etcd_checked = await _etcd_leader_elsewhere(server, view, etcd_checked)
        except (LookupError, OSError) as exc:
            log.error("cannot follow Patroni's leader %s yet: %s", address, exc)
        await asyncio.sleep(settings.ha_poll_interval)


async def _etcd_leader_elsewhere(server, view: ha.PatroniView, checked: float) -> float:
    """On the coordinator, every ETCD_CHECK_INTERVAL: etcd's leader handed to another
    host if it runs here (services/pool/ha_etcd_leader.py: a fault taking both leaders
    at once costs the failover etcd's election on top of Patroni's TTL). When it last
    looked."""
    now = time.monotonic()
    if now - checked < ETCD_CHECK_INTERVAL:
        return checked
    try:
        to = await asyncio.to_thread(ha_etcd_leader.move_leadership_away, view.my_address,
                                     server.settings.patroni_ca_file)
    except ha_etcd_leader.MembershipError as exc:   # tried again at the next check
        log.info("cannot ask etcd to move its leader: %s", exc)
    else:
        if to:
            log.warning("etcd's leader ran on the coordinator's host: handed to %s", to)
    return now


async def _take_over(server, view: ha.PatroniView) -> bool:
    if not server.role.is_member:   # deposed, yet the leader is still here: open again
        location = pool_role.database_location(server.settings, server.role)
        why = await asyncio.to_thread(probe_database, location)
        if why is not None:   # Patroni's view here may be stale (this host cut off)
            return False
        log.warning("the pool database refused this coordinator but Patroni's leader "
                    "is still here: restarting on it")
        server.restart_soon()
        return True
    if not server.settings.ha_database_url:
        log.error("Patroni's leader runs here but ha_database_url is not set")
        return False
    if not await asyncio.to_thread(holds_this_host, server.settings, server.role,
                                   view.leader_address):
        return False   # the coordinator has not moved the pool there yet
    log.warning("Patroni's leader runs here: taking the pool over")
    # The pool has no coordinator until this server serves again: the restart skips
    # the new process image (its imports are seconds of CPU on a loaded host).
    take_over(server, {"database": server.settings.ha_database_url}, in_process=True)
    return True


async def _follow(server, address: str) -> bool:
    if server.role.is_member:
        if not await asyncio.to_thread(holds_this_host, server.settings, server.role,
                                       address):
            return False   # not this pool's database (yet): the coordinator moves it
        _, _, pin = await asyncio.to_thread(
            pool_host, ha.leader_first(server.settings.ha_database_url, address), address)
        follow_coordinator(server, {"address": address, "fingerprint": pin,
                                    "database": server.settings.ha_database_url})
        return True
    store, settings = server.store, server.settings
    pin = _fingerprint_in(store, address)
    # From now on outside calls are sent to the leader's host, writes or not.
    server.take_role(pool_role.PoolRole(
        master_address=address, master_fingerprint=pin,
        secret=pool_role.coordinator_secret(settings.data_dir),
        host_uuid=store.get("host", server.host_ref, "uuid")))
    log.warning("Patroni's leader runs on %s (%s): this host is a member from now on",
                address, store.deposed or "the database has not refused a write yet")
    await asyncio.to_thread(write_copy, settings.db_path,
                            snapshot(store, {"host_ref": server.host_ref}))
    pool_role.save(settings.data_dir, server.role)
    server.restart_soon()
    return True


def _fingerprint_in(store, address: str) -> str:
    for host in store.find("host", address=address):
        for cert in store.find("Certificate", host=host, type="host"):
            return store.get("Certificate", cert, "fingerprint_sha256")
    raise LookupError(f"no host certificate of {address} in the records")
