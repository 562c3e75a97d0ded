"""The durable half of the store: a SQLite file in WAL mode, written by one thread.

Tables follow the datamodel: one table per persistent class, one column per stored
field (JSON text), plus `meta` for server-internal values (password hashes, ids).
New fields in the datamodel become new columns at the next start.

Writes arrive as batches of operations whose values are already encoded and checked
(`row_values`, on the caller's side), so one caller's value can never make the batch
fail for everyone in it; the writer thread merges every batch waiting
in its queue into one transaction (group commit), so many concurrent callers share one
fsync. `synchronous=FULL` makes a commit durable before its callers are answered.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
from datetime import datetime

from ..datamodel import CLASSES, Map, Prim, Set
from ..datamodel.types import format_datetime, parse_datetime

log = logging.getLogger(__name__)


_STOP, _RESUME = object(), object()   # writer queue markers


def stored_fields(c):
    return [f for f in c.fields if f.derived_from is None]


def _json_default(value):
    if isinstance(value, datetime):
        return format_datetime(value)
    raise TypeError(type(value).__name__)


def encode(value) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False, separators=(",", ":"))


class Unstorable(ValueError):
    """A value the database cannot hold (a string that is no valid Unicode)."""
    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def storable_text(text: str, where: str) -> str:
    """`text` if SQLite can store it as UTF-8, else Unstorable. Checked before a change
    joins a commit batch: a value refused in the writer would fail the whole batch,
    that is every other caller's writes in it."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Unstorable(where, f"not valid Unicode at character {exc.start}") from None
    return text


def row_values(cname: str, ref: str, record: dict) -> list[str]:
    """The column values of a `put` (ref first), encoded and checked on the caller's
    side, so that the writer only runs SQL on text it can store."""
    values = [storable_text(ref, f"{cname} ref")]
    for f in stored_fields(CLASSES[cname]):
        try:
            text = encode(record.get(f.name))
        except (TypeError, ValueError) as exc:   # a programming error: a non-JSON value
            raise TypeError(f"{cname}.{f.name}: cannot store {exc}") from None
        values.append(storable_text(text, f"{cname}.{f.name}"))
    return values


def decode(ftype, text):
    """JSON column text back to the internal value of `ftype` (datetimes re-parsed)."""
    return _revive(ftype, json.loads(text))


def _revive(ftype, value):
    if isinstance(ftype, Prim) and ftype.name == "datetime" and isinstance(value, str):
        return parse_datetime(value)
    if isinstance(ftype, Set) and isinstance(value, list):
        return [_revive(ftype.elem, v) for v in value]
    if isinstance(ftype, Map) and isinstance(value, dict):
        return {k: _revive(ftype.value, v) for k, v in value.items()}
    return value


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Database:
    """Owns the SQLite connection (used by the writer thread only, after `load`)."""

    def __init__(self, path: str):
        self.path = path
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._put_statements: dict[str, str] = {}
        if not os.path.exists(path):  # the database holds password hashes: owner only
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._ensure_schema()

    def _ensure_schema(self):
        c = self._conn
        c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        for cdef in CLASSES.values():
            if not cdef.persist or not cdef.stored:
                continue
            table = _quote(cdef.name)
            c.execute(f"CREATE TABLE IF NOT EXISTS {table} (ref TEXT PRIMARY KEY)")
            have = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
            for f in stored_fields(cdef):
                if f.name not in have:
                    c.execute(f"ALTER TABLE {table} ADD COLUMN {_quote(f.name)} TEXT")

    def load(self):
        """Every stored row as {class: {ref: record}}, and the meta table."""
        rows = {}
        for cdef in CLASSES.values():
            if not cdef.persist or not cdef.stored:
                continue
            fields = stored_fields(cdef)
            cols = ", ".join(_quote(f.name) for f in fields)
            table = {}
            for row in self._conn.execute(f"SELECT ref, {cols} FROM {_quote(cdef.name)}"):
                record = {}
                for f, text in zip(fields, row[1:]):
                    record[f.name] = f.default_value() if text is None else decode(f.type, text)
                table[row[0]] = record
            rows[cdef.name] = table
        meta = dict(self._conn.execute("SELECT key, value FROM meta"))
        return rows, meta

    # -- writer thread -------------------------------------------------------------

    def start(self, on_done):
        """Start the writer; `on_done(batch_id, None or why it failed)` is called from
        its thread, in the order the batches were submitted."""
        self._on_done = on_done
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()

    def submit(self, batch_id: int, ops: list):
        self._queue.put((batch_id, ops))

    def resume(self):
        """After a refused write: the store has undone every batch submitted so far."""
        self._queue.put(_RESUME)

    def close(self):
        if self._thread:
            self._queue.put(_STOP)
            self._thread.join(timeout=10)
        self._conn.close()

    def _run(self):
        # After a failed write every later batch is refused unwritten until `resume`:
        # they were built on the refused changes, which the store is undoing.
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
                if item is not _STOP and item is not _RESUME:
                    group.append(item)
                    continue
                refused = self._commit(group, refused)
                group = []
                if item is _STOP:
                    return
                refused = None
            refused = self._commit(group, refused)

    def _commit(self, batches, refused: str | None) -> str | None:
        if not batches:
            return refused
        if refused is None:
            refused = self._write([op for _, ops in batches for op in ops])
        for batch_id, _ in batches:
            self._on_done(batch_id, refused)
        return refused

    def _put_sql(self, cname: str) -> str:
        sql = self._put_statements.get(cname)
        if sql is None:
            fields = stored_fields(CLASSES[cname])
            cols = ", ".join(["ref"] + [_quote(f.name) for f in fields])
            marks = ", ".join("?" * (len(fields) + 1))
            sql = f"INSERT OR REPLACE INTO {_quote(cname)} ({cols}) VALUES ({marks})"
            self._put_statements[cname] = sql
        return sql

    def _write(self, ops) -> str | None:
        """Write ops in one transaction; None, or why the disk refused them."""
        c = self._conn
        try:
            c.execute("BEGIN IMMEDIATE")
            for op in ops:
                kind = op[0]
                if kind == "put":   # values from row_values
                    _, cname, values = op
                    c.execute(self._put_sql(cname), values)
                elif kind == "del":
                    c.execute(f"DELETE FROM {_quote(op[1])} WHERE ref = ?", (op[2],))
                elif kind == "meta":
                    if op[2] is None:
                        c.execute("DELETE FROM meta WHERE key = ?", (op[1],))
                    else:
                        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                  (op[1], op[2]))
            c.execute("COMMIT")
            return None
        except Exception as exc:  # disk full, I/O error: the callers get told
            reason = describe(exc)
            log.error("database write failed: %s", reason)
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return reason


def describe(exc: Exception) -> str:
    """Why a write failed, in words an operator can act on."""
    primary = getattr(exc, "sqlite_errorcode", -1) & 0xFF   # extended codes carry it
    if primary == sqlite3.SQLITE_FULL:
        return "no space left on device"
    if primary == sqlite3.SQLITE_IOERR:
        return f"I/O error ({exc})"
    return f"{type(exc).__name__}: {exc}"
