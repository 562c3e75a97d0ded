"""The standalone host's database: a SQLite file in WAL mode, nothing to install or run.

Tables follow the datamodel (codec.py); new fields become new columns at the next
start. `synchronous=FULL` makes a commit durable before its callers are answered.
"""
from __future__ import annotations

import os
import sqlite3

from ..datamodel import CLASSES
from .codec import decode_rows, quote, stored_classes, stored_fields
from .writer import SCHEMA_VERSION, STATE_TABLE, Loaded, Writer, ensure_state_tables


class Database(Writer):
    """Owns the SQLite connection (used by the writer thread only, after `load`)."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self._put_statements: dict[str, str] = {}
        if not os.path.exists(path):  # the database holds password hashes: owner only
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._ensure_schema()

    def _ensure_schema(self):
        """Tables and columns the datamodel has and the file lacks, in one transaction:
        one durable commit instead of one per statement (a first start made hundreds,
        each an fsync). Unchanged, nothing is written."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            ensure_state_tables(c.execute, self.path)
            for cdef in stored_classes():
                table = quote(cdef.name)
                have = {row[1] for row in c.execute(f"PRAGMA table_info({table})")}
                if not have:
                    cols = "".join(f", {quote(f.name)} TEXT" for f in stored_fields(cdef))
                    c.execute(f"CREATE TABLE {table} (ref TEXT PRIMARY KEY{cols})")
                    continue
                for f in stored_fields(cdef):
                    if f.name not in have:
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {quote(f.name)} TEXT")
            version = c.execute(f"SELECT value FROM {STATE_TABLE} "
                                "WHERE name = 'schema_version'").fetchone()
            if version is None or version[0] != SCHEMA_VERSION:
                c.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} "
                          "VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        except BaseException:
            c.execute("ROLLBACK")
            raise
        c.execute("COMMIT")

    def load(self) -> Loaded:
        rows = {}
        for cdef in stored_classes():
            fields = stored_fields(cdef)
            cols = ", ".join(quote(f.name) for f in fields)
            rows[cdef.name] = decode_rows(
                fields, self._conn.execute(f"SELECT ref, {cols} FROM {quote(cdef.name)}"))
        meta = dict(self._conn.execute("SELECT key, value FROM meta"))
        gen = self._conn.execute(f"SELECT value FROM {STATE_TABLE} WHERE name = 'generation'"
                                 ).fetchone()
        return Loaded(rows, meta, gen[0] if gen else 0)

    def _disconnect(self):
        self._conn.close()

    def _put_sql(self, cname: str) -> str:
        sql = self._put_statements.get(cname)
        if sql is None:
            fields = stored_fields(CLASSES[cname])
            cols = ", ".join(["ref"] + [quote(f.name) for f in fields])
            marks = ", ".join("?" * (len(fields) + 1))
            sql = f"INSERT OR REPLACE INTO {quote(cname)} ({cols}) VALUES ({marks})"
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
                    c.execute(f"DELETE FROM {quote(op[1])} WHERE ref = ?", (op[2],))
                elif kind == "meta":
                    if op[2] is None:
                        c.execute("DELETE FROM meta WHERE key = ?", (op[1],))
                    else:
                        c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                                  (op[1], op[2]))
                elif kind == "gen":
                    c.execute(f"INSERT OR REPLACE INTO {STATE_TABLE} VALUES ('generation', ?)",
                              (op[1],))
            c.execute("COMMIT")
            return None
        except Exception as exc:  # disk full, I/O error: the callers get told
            try:
                c.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return describe(exc)


def describe(exc: Exception) -> str:
    """Why a write failed, in words an operator can act on."""
    primary = getattr(exc, "sqlite_errorcode", -1) & 0xFF   # extended codes carry it
    if primary == sqlite3.SQLITE_FULL:
        return "no space left on device"
    if primary == sqlite3.SQLITE_IOERR:
        return f"I/O error ({exc})"
    return f"{type(exc).__name__}: {exc}"
