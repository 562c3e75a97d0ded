"""A pool moved from its PostgreSQL database into the replicated one (README "Pool HA":
the admin followed the POOL_DATABASE_HA_AVAILABLE offer and gave the coordinator
`patroni_url` and `ha_database_url`).

Every record is copied as it is stored (store/pool_read.copy_ops: the column text, the
store's own values and the generation ceiling, so event tokens carry on above every
token handed out before), written by the store's own PostgreSQL writer (_postgres.py
makes the same tables as for any pool database) in one transaction: the copy lands
whole or not at all. Both databases' writer locks are held meanwhile, so no live
server writes either of them during the copy.

A database that already holds records is never written: the same pool (same pool
uuid, a generation at least the source's) means an earlier move landed and its host
stopped before it switched over, and it is taken as it is; anything else is refused.

Once the copy is committed, the source is marked (`meta` MOVED_INTO, naming the
replicated database without its password): its records are a stale copy from then on,
and no server starts on it as the pool's database again (moved_into).
"""
from __future__ import annotations

from ._postgres import PgDatabase, describe, display_name
from .pg_driver import psycopg
from .pool_read import copy_ops, reader
from .writer import DatabaseUnavailable

COPIED, ALREADY_THERE = "copied", "already there"
MOVED_INTO = "moved_into"


class MoveRefused(Exception):
    """The pool cannot be moved there (one line, for the log)."""


def _generation(ops: list) -> int:
    return next((int(op[1]) for op in ops if op[0] == "gen"), 0)


def move_pool(source_url: str, target_url: str) -> str:
    """Copy the pool database at `source_url` into the (empty) one at `target_url`.
    Returns COPIED or ALREADY_THERE; raises MoveRefused. Blocking."""
    source = _open(source_url)
    try:
        pools = source.pool_uuids()
        if len(pools) != 1:
            raise MoveRefused(f"the {source.name} holds {len(pools)} pools, not one")
        ops = copy_ops(source_url)
        target = _open(target_url)
        try:
            done = _write_into(target, ops, pools[0], target_url)
        finally:
            target.close()
        refused = source.write_all([("meta", MOVED_INTO, display_name(target_url))])
        if refused is not None:
            raise MoveRefused(f"marking the {source.name} as moved: {refused}")
        return done
    except psycopg.Error as exc:
        raise MoveRefused(describe(exc)) from None
    except OSError as exc:
        raise MoveRefused(str(exc)) from None
    finally:
        source.close()


def _open(url: str) -> PgDatabase:
    """The database with its writer lock held (no live server writes it meanwhile)."""
    try:
        return PgDatabase(url)
    except DatabaseUnavailable as exc:
        raise MoveRefused(str(exc)) from None


def _write_into(target: PgDatabase, ops: list, pool_uuid: str, url: str) -> str:
    held = target.tables_holding_rows()
    if held:
        there = target.pool_uuids()
        loaded = target.load().generation
        if there == [pool_uuid] and loaded >= _generation(ops):
            return ALREADY_THERE
        raise MoveRefused(f"the {display_name(url)} already holds records (tables "
                          f"{', '.join(held[:6])}; pools {there or 'none'}): not "
                          "overwritten")
    refused = target.write_all(ops)
    if refused is not None:
        raise MoveRefused(f"writing the records into the {display_name(url)}: {refused}")
    return COPIED


def moved_into(url: str) -> str:
    """Where the pool of the PostgreSQL database at `url` moved ("" if it did not).
    Blocking; OSError if the database does not answer."""
    try:
        with reader(url) as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = %s",
                               (MOVED_INTO,)).fetchone()
    except psycopg.errors.UndefinedTable:
        return ""   # an empty database
    except psycopg.Error as exc:
        raise OSError(describe(exc)) from None
    return row[0] if row else ""
