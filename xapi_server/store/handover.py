"""What a change of pool coordinator needs from the store.

A whole copy of the store's records in a SQLite file: what a pool member keeps of
the pool database (xapi's backup copies), and what a coordinator that hands the pool
over keeps as its working copy once it is a member. And a probe of the pool
database, made by a host before it agrees to become the coordinator.

The copy is written beside its final path and renamed into place, so a crash leaves
the old copy or the new one. Its generation is the highest the store may have handed
out (the ceiling reserved in the database), so a server that later loads the copy
resumes above every event token given before.
"""
from __future__ import annotations

import os

from ._postgres import CONNECTION_DEFAULTS, WRITER_LOCK, describe, display_name
from ._sqlite import Database
from .codec import row_values, stored_classes
from .pg_driver import conninfo_to_dict, psycopg

WRITER_HELD = "a live server is its writer (the coordinator is still running)"


def snapshot(store, meta: dict | None = None) -> list:
    """Every persisted record of `store` (with `meta` over its own) as writer ops: taken
    on the event loop, between two changes, so the copy is of one moment."""
    ops = [("put", cdef.name, row_values(cdef.name, ref, rec))
           for cdef in stored_classes() for ref, rec in store.tables[cdef.name].items()]
    ops += [("meta", key, value) for key, value in {**store.meta, **(meta or {})}.items()
            if value is not None]
    ops.append(("gen", int(max(store.generation, store._asked))))
    return ops


def write_copy(path: str, ops: list):
    """Write a snapshot to a SQLite file at `path`, replacing what was there.
    Blocking: run it in a thread. Raises OSError if the disk refuses."""
    tmp = path + ".new"
    _remove(tmp)
    refused = Database(tmp).write_all(ops)
    if refused is not None:
        _remove(tmp)
        raise OSError(f"copy of the records to {path}: {refused}")
    for stale in (path + "-wal", path + "-shm"):   # they belong to the file replaced
        _unlink(stale)
    os.replace(tmp, path)


def _remove(path: str):
    for name in (path, path + "-wal", path + "-shm"):
        _unlink(name)


def _unlink(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def probe_database(url: str, writer_free: bool = False) -> str | None:
    """None if the PostgreSQL database at `url` answers, else why not, in one line.
    Blocking. The writer lock is not taken; with `writer_free`, a database whose
    writer lock a live server holds (a coordinator still writing) is refused too."""
    try:
        params = {**CONNECTION_DEFAULTS, **conninfo_to_dict(url)}
        with psycopg.connect(**params, autocommit=True) as conn:
            if writer_free:
                if not conn.execute("SELECT pg_try_advisory_lock(%s)",
                                    (WRITER_LOCK,)).fetchone()[0]:
                    return f"{display_name(url)}: {WRITER_HELD}"
                conn.execute("SELECT pg_advisory_unlock(%s)", (WRITER_LOCK,))
            else:
                conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"{display_name(url)}: {describe(exc)}"
    return None
