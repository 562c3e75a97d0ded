"""Pool HA: an existing pool moves into the replicated database (README "Pool HA").

The admin's path: the third host joins, the pool gets the POOL_DATABASE_HA_AVAILABLE
offer (api/pool_ha_offer.py), the admin runs scripts/pool-ha-setup.sh on the three
hosts, puts the lines it prints (`patroni_url`, `patroni_ca_file`, `ha_database_url`)
in every host's settings and restarts the servers. Nothing else: the move is made
automatically at start, on the coordinator, before its store opens (nothing is
written while the records are copied):

1. it waits for Patroni to name a leader (the replicated database takes writes only
   there), logging once while it waits;
2. it copies every record of its pool database into the replicated one
   (store/pool_move.py), which must hold nothing yet: a database holding records is
   never overwritten, the refusal is logged and the host starts on its old database;
3. it then coordinates on the replicated database: the role file says so. Where
   Patroni's leader runs on another host, api/pool_ha.role_at_start then makes this
   host a member of that host, whose own watch of Patroni takes the pool over (a
   member takes it over only once the replicated database holds it and names it), as
   after a failover; the third host follows that leader the same way.

Members learn where the pool database is now (their `pool_database`, the one they
would take over in an emergency) from their own settings once the replicated
database holds them: point_members_copy.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time

from ..services.pool import ha
from ..services.pool import role as pool_role
from ..store import DatabaseUnavailable, display_name, is_postgres_url
from ..store.pool_move import ALREADY_THERE, MoveRefused, move_pool, moved_into
from ..store.pool_read import holds_host, is_replicated_url

log = logging.getLogger(__name__)


def move_at_start(settings, role: pool_role.PoolRole) -> pool_role.PoolRole:
    """The role to start with: unchanged, or a coordinator on the replicated database
    once the pool has been copied there. Raises DatabaseUnavailable (the server does
    not start) on a database whose pool moved out and that cannot be followed there.
    Blocking."""
    target = settings.ha_database_url
    if role.is_member or not settings.patroni_url or not target:
        return role
    source = pool_role.database_location(settings, role)
    if is_replicated_url(source):
        return role
    if not is_postgres_url(source):
        # A standalone host (an ejected one keeps its settings): no pool to move.
        log.warning("patroni_url is set, but this host's records are in a SQLite file: "
                    "nothing to move into the replicated pool database (a pool's "
                    "database is PostgreSQL, README \"Pool database\")")
        return role
    try:
        moved = moved_into(source)
    except OSError as exc:
        raise DatabaseUnavailable(f"cannot open the {display_name(source)}: {exc}") \
            from None
    try:
        view = _wait_for_leader(settings)
        done = move_pool(source, ha.leader_first(target, view.leader_address))
    except (ha.PatroniUnreachable, MoveRefused) as exc:
        if moved:   # a stale copy: never the pool's database again
            raise DatabaseUnavailable(
                f"the pool of the {display_name(source)} moved into the {moved}, which "
                f"this host cannot follow ({exc}); to start this host standalone, point "
                "database_url at an empty database (or remove it)") from None
        log.error("the pool stays on its database: not moved into the replicated pool "
                  "database: %s", exc)
        return role
    role = dataclasses.replace(role, pool_database=target)
    pool_role.save(settings.data_dir, role)
    log.warning("the pool's records are in the replicated pool database (%s); Patroni's "
                "leader runs on %s", "found there from an earlier start"
                if done == ALREADY_THERE else "copied now", view.leader_address)
    return role


def _wait_for_leader(settings) -> ha.PatroniView:
    """Patroni's view once it names a leader (an election is waited for, logged once);
    PatroniUnreachable at once if it does not answer (its host left the replicated
    database, or it was never started)."""
    told = False
    while True:
        view = ha.read_view(settings.patroni_url, settings.patroni_ca_file)
        if view.leader:
            return view
        if not told:
            told = True
            log.error("moving the pool into the replicated database: waiting for "
                      "Patroni to elect a leader")
        time.sleep(settings.ha_poll_interval)


def holds_this_host(settings, role: pool_role.PoolRole, near: str) -> bool:
    """Whether the replicated pool database holds this pool member (its uuid): until
    the coordinator has moved the pool there, a member neither takes it over nor
    follows a host found there. Read from the node at `near` first (this host's, or
    Patroni's leader's): a dead or cut-off node ahead of it would cost a connect
    timeout. Blocking; OSError if it does not answer."""
    return bool(role.host_uuid) and holds_host(
        ha.leader_first(settings.ha_database_url, near), role.host_uuid)


async def point_members_copy(server, view: ha.PatroniView) -> bool:
    """A member whose `pool_database` still names the database the pool left: from now
    on the replicated one (in memory and in the role file; no restart)."""
    settings, role = server.settings, server.role
    if not role.is_member or role.pool_database == settings.ha_database_url \
            or not settings.ha_database_url:
        return False
    if not await asyncio.to_thread(holds_this_host, settings, role,
                                   view.my_address or view.leader_address):
        return False
    role = dataclasses.replace(server.role, pool_database=settings.ha_database_url)
    pool_role.save(settings.data_dir, role)
    server.take_role(role)
    log.warning("the pool database is now the replicated one")
    return True
