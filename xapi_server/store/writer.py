"""The database writer thread every backend shares: one thread owns the connection,
takes the store's batches in the order they were submitted and group-commits them.

Batches arrive with values already encoded and checked (codec.row_values), so one
caller's value can never fail a batch for everyone in it. The thread merges every
batch waiting in its queue into one transaction, so many concurrent callers share
one durable commit. Ops are ("put", class, values) | ("del", class, ref) |
("meta", key, value or None) | ("gen", generation).

After a refused write every later batch is refused unwritten until `resume`: they
were built on the refused changes, which the store is undoing. `resume` brings the
store's current state of every object the refused ops touched; it is written first,
with the next batch. A commit whose answer was lost with the connection may have
landed after all (PostgreSQL), and then this puts back what memory holds.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import NamedTuple

log = logging.getLogger(__name__)

_STOP, _RESUME = object(), object()   # queue markers
SCHEMA_VERSION = 1                    # the layout of the tables below; stored beside them
# The store's own values beside the rows: the schema version and the generation
# ceiling (store/__init__.py: event tokens never go backwards across a restart).
STATE_TABLE = "store_state"


class Loaded(NamedTuple):
    rows: dict        # {class: {ref: record}}
    meta: dict        # server-internal values (password hashes, the pool and host refs)
    generation: int   # no event token was handed out above this


class DatabaseUnavailable(Exception):
    """The database cannot be opened: the server cannot start."""


def ensure_state_tables(execute, where: str):
    """The meta and state tables (`execute(sql)` returns a cursor); refuse a database
    a newer schema wrote."""
    execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    execute(f"CREATE TABLE IF NOT EXISTS {STATE_TABLE} "
            "(name TEXT PRIMARY KEY, value BIGINT NOT NULL)")
    row = execute(f"SELECT value FROM {STATE_TABLE} WHERE name = 'schema_version'").fetchone()
    if row and row[0] > SCHEMA_VERSION:
        raise DatabaseUnavailable(f"{where}: written by a newer xapi-py (schema {row[0]}, "
                                  f"this one knows {SCHEMA_VERSION})")


def op_key(op: tuple):
    """What an op writes: a later op with the same key replaces it."""
    if op[0] == "put":
        return (op[1], op[2][0])
    if op[0] == "del":
        return (op[1], op[2])
    return op[:2] if op[0] == "meta" else ("gen",)


class Writer:
    """Subclasses give `load`, `_write(ops) -> None or why it failed` and
    `_disconnect`."""

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._repairs: dict = {}   # op_key -> op, written before the next batch
        # Why this writer may never write again (a replicated database's primary was
        # lost: _postgres.py), else None.
        self.deposed: str | None = None

    def start(self, on_done):
        """Start the writer; `on_done(batch_id, None or why it failed)` is called from
        its thread, in the order the batches were submitted."""
        self._on_done = on_done
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, batch_id: int, ops: list):
        self._queue.put((batch_id, ops))

    def resume(self, repairs: list = ()):
        """After a refused write: the store has undone every batch submitted so far;
        `repairs` put back its current state of what they touched."""
        self._queue.put((_RESUME, list(repairs)))

    def close(self):
        if self._thread:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
        self._disconnect()

    def _run(self):
        refused = None
        while True:
            items = [self._queue.get()]
            while True:  # group commit: take everything already waiting
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            group = []
            for item in items:
                if item is not _STOP and item[0] is not _RESUME:
                    group.append(item)
                    continue
                refused = self._commit(group, refused)
                group = []
                if item is _STOP:
                    return
                for op in item[1]:
                    self._repairs[op_key(op)] = op
                refused = None
            refused = self._commit(group, refused)

    def _commit(self, batches, refused: str | None) -> str | None:
        if not batches:
            return refused
        if refused is None:
            ops = list(self._repairs.values())
            for _, batch in batches:
                ops.extend(batch)
            refused = self._write(ops)
            if refused is None:
                self._repairs.clear()
            else:
                log.error("database write failed: %s", refused)
        for batch_id, _ in batches:
            self._on_done(batch_id, refused)
        return refused

    def write_all(self, ops: list) -> str | None:
        """A copy made once (a member's working copy, a pool moved into the replicated
        database): every op in one batch, then closed. None, or why it was refused."""
        refused: list = []
        self.start(lambda _batch, why: refused.append(why))
        self.submit(1, ops)
        self.close()
        return refused[0] if refused else "not written"

    def depose(self, reason: str):
        if self.deposed is None:
            self.deposed = reason
            log.error("database writer deposed: %s", reason)

    # -- for the backends ----------------------------------------------------------

    def load(self) -> Loaded:
        raise NotImplementedError

    def _write(self, ops) -> str | None:
        raise NotImplementedError

    def _disconnect(self):
        raise NotImplementedError
