"""The pool's database: PostgreSQL through psycopg 3.

The same tables as SQLite (codec.py), plus what a shared server needs:

- one writer: the writer's session holds an advisory lock for as long as it is
  connected, so a second server pointed at the same database refuses to start, and a
  deposed one that reconnects cannot write behind the new one's back;
- `synchronous_commit = on` for the session, whatever the cluster's default: a commit
  returns once the WAL is flushed (and, with a synchronous standby, flushed there too);
- a lost connection fails the batch in hand (the store undoes it in memory) and the
  next batch connects again; keepalives and a TCP user timeout make a dead peer an
  error rather than a hang on TCP connections.

A replicated pool database (README "Pool HA": Patroni's primary and standbys, named
in a libpq multi-host URL with `target_session_attrs=read-write`) is fenced by the
database itself: once a write is refused because the server went read-only (demoted)
or the connection to the primary is lost, this writer is *deposed* and never writes
again, not even through a reconnect that would find the new primary, since its
memory may be behind what the new coordinator committed. Every later write is refused
with the reason; the server stops serving as coordinator (services/pool/ha.py).
"""
from __future__ import annotations

import json

from ..datamodel import CLASSES
from .codec import decode_row, quote, stored_classes, stored_fields
from .pg_driver import conninfo_to_dict, psycopg
from .writer import SCHEMA_VERSION, STATE_TABLE, DatabaseUnavailable, Loaded, Writer, \
    ensure_state_tables

WRITER_LOCK = 0x7861_7069_7079   # pg advisory lock key: "xapipy", one writer per database
# libpq settings a URL may override: give up connecting after 10 s, notice a silent
# peer within ~30 s (TCP only: a UNIX socket fails at once when the server dies).
CONNECTION_DEFAULTS = {"connect_timeout": "10", "keepalives": "1", "keepalives_idle": "10",
                       "keepalives_interval": "5", "keepalives_count": "3",
                       "tcp_user_timeout": "30000", "application_name": "xapi-py"}


def follows_primary(params: dict) -> bool:
    """A URL that only accepts the primary names a replicated pool database."""
    return params.get("target_session_attrs") in ("read-write", "primary")


def is_postgres_url(location: str) -> bool:
    return location.startswith(("postgresql://", "postgres://"))


def display_name(url: str) -> str:
    """The database named for an operator, without the password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "the PostgreSQL database (unparsable URL)"
    where = params.get("host") or "the default socket"
    port = f":{params['port']}" if params.get("port") else ""
    return f"PostgreSQL database {params.get('dbname', '(default)')!r} on {where}{port}"


class Fenced(Exception):
    """Another server holds the writer lock."""


class PgDatabase(Writer):
    def __init__(self, url: str):
        super().__init__()
        self._params = {**CONNECTION_DEFAULTS, **conninfo_to_dict(url)}
        self.name = display_name(url)
        self._put_statements: dict[str, str] = {}
        self._conn: psycopg.Connection | None = None
        self.replicated = follows_primary(self._params)
        try:
            self._conn = self._connect()
            self._ensure_schema()
        except DatabaseUnavailable:
            self._disconnect()
            raise
        except (psycopg.Error, Fenced) as exc:
            self._disconnect()
            raise DatabaseUnavailable(f"cannot open the {self.name}: {describe(exc)}") from None

    def _connect(self) -> psycopg.Connection:
        conn = psycopg.connect(**self._params, autocommit=True)
        try:
            conn.execute("SET synchronous_commit = on")
            if not conn.execute("SELECT pg_try_advisory_lock(%s)", (WRITER_LOCK,)).fetchone()[0]:
                raise Fenced("another xapi-py server is the writer of this database")
        except BaseException:
            conn.close()
            raise
        return conn

    def _ensure_schema(self):
        c = self._conn
        with c.transaction():
            ensure_state_tables(c.execute, f"the {self.name}")
            have: dict[str, set] = {}
            for table, column in c.execute(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema()"):
                have.setdefault(table, set()).add(column)
            for cdef in stored_classes():
                table = quote(cdef.name)
                if cdef.name not in have:
                    c.execute(f"CREATE TABLE {table} (ref TEXT PRIMARY KEY)")
                for f in stored_fields(cdef):
                    if f.name not in have.get(cdef.name, ()):
                        c.execute(f"ALTER TABLE {table} ADD COLUMN {quote(f.name)} TEXT")
            c.execute(f"INSERT INTO {STATE_TABLE} VALUES ('schema_version', %s) "
                      "ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
                      (SCHEMA_VERSION,))

    def load(self) -> Loaded:
        """Every row, one SELECT per table, in one snapshot."""
        c = self._conn
        rows = {}
        with c.transaction():
            c.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for cdef in stored_classes():
                fields = stored_fields(cdef)
                cols = ", ".join(quote(f.name) for f in fields)
                rows[cdef.name] = {
                    row[0]: decode_row(fields, row[1:])
                    for row in c.execute(f"SELECT ref, {cols} FROM {quote(cdef.name)}")}
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            gen = c.execute(f"SELECT value FROM {STATE_TABLE} WHERE name = 'generation'"
                            ).fetchone()
        return Loaded(rows, meta, gen[0] if gen else 0)

    def tables_holding_rows(self) -> list[str]:
        """The tables (the store's own `meta` included) that are not empty: a database
        a pool is moved into must have none (store/pool_move.py)."""
        c = self._conn
        names = [cdef.name for cdef in stored_classes()] + ["meta"]
        return [name for name in names
                if c.execute(f"SELECT EXISTS (SELECT 1 FROM {quote(name)})").fetchone()[0]]

    def pool_uuids(self) -> list[str]:
        return [json.loads(text or '""') for text, in
                self._conn.execute('SELECT "uuid" FROM "pool"').fetchall()]

    def _disconnect(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _put_sql(self, cname: str) -> str:
        sql = self._put_statements.get(cname)
        if sql is None:
            names = [quote(f.name) for f in stored_fields(CLASSES[cname])]
            marks = ", ".join(["%s"] * (len(names) + 1))
            update = ", ".join(f"{n} = EXCLUDED.{n}" for n in names)
            sql = (f"INSERT INTO {quote(cname)} (ref, {', '.join(names)}) VALUES ({marks}) "
                   f"ON CONFLICT (ref) DO UPDATE SET {update}")
            self._put_statements[cname] = sql
        return sql

    def _statement(self, op) -> tuple[str, tuple]:
        kind = op[0]
        if kind == "put":
            return self._put_sql(op[1]), op[2]
        if kind == "del":
            return f"DELETE FROM {quote(op[1])} WHERE ref = %s", (op[2],)
        if kind == "meta":
            if op[2] is None:
                return "DELETE FROM meta WHERE key = %s", (op[1],)
            return ("INSERT INTO meta VALUES (%s, %s) ON CONFLICT (key) "
                    "DO UPDATE SET value = EXCLUDED.value", op[1:])
        return (f"INSERT INTO {STATE_TABLE} VALUES ('generation', %s) ON CONFLICT (name) "
                "DO UPDATE SET value = EXCLUDED.value", (op[1],))

    def _write(self, ops) -> str | None:
        """Write ops in one transaction, pipelined (one round trip); None, or why
        they were refused."""
        if self.deposed:
            return self.deposed
        try:
            if self._conn is None:
                self._conn = self._connect()
            c = self._conn
            with c.pipeline(), c.transaction():
                cur = c.cursor()
                for op in ops:
                    cur.execute(*self._statement(op))
            return None
        except (psycopg.Error, Fenced) as exc:
            lost = self._conn is None or self._conn.broken or self._conn.closed \
                or isinstance(exc, psycopg.OperationalError)
            if lost:
                self._disconnect()   # the next batch connects again (unless deposed)
            read_only = isinstance(exc, psycopg.errors.ReadOnlySqlTransaction)
            if self.replicated and (lost or read_only):
                self._disconnect()
                self.depose("this host is no longer the writer of the replicated pool "
                            f"database ({describe(exc)})")
                return self.deposed
            return describe(exc)


def describe(exc: Exception) -> str:
    """Why PostgreSQL refused, in words an operator can act on (one line)."""
    if isinstance(exc, Fenced):
        return str(exc)
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, psycopg.OperationalError):
        return f"PostgreSQL unreachable or connection lost ({text})"
    return f"PostgreSQL: {text}"
