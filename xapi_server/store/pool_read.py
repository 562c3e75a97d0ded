"""Read-only looks into the pool database by a host that does not write it: a host of
a replicated pool (README "Pool HA") finds there, from any node (its own standby
included), the host it must follow and itself."""
from __future__ import annotations

import json

from ._postgres import CONNECTION_DEFAULTS, describe, follows_primary, is_postgres_url
from .codec import quote, stored_classes, stored_fields
from .pg_driver import conninfo_to_dict, psycopg
from .writer import STATE_TABLE


def is_replicated_url(location: str) -> bool:
    """A PostgreSQL URL that accepts only the primary: a replicated pool database."""
    if not is_postgres_url(location):
        return False
    try:
        return follows_primary(conninfo_to_dict(location))
    except psycopg.ProgrammingError:
        return False


def reader(url: str) -> psycopg.Connection:
    params = {**CONNECTION_DEFAULTS, **conninfo_to_dict(url)}
    params.pop("target_session_attrs", None)   # any node answers reads
    return psycopg.connect(**params, autocommit=True)


def _host_rows(url: str) -> tuple[list, list]:
    try:
        with reader(url) as conn:
            hosts = conn.execute('SELECT ref, "address", "uuid" FROM "host"').fetchall()
            certs = conn.execute('SELECT "host", "type", "fingerprint_sha256" '
                                 'FROM "Certificate"').fetchall()
    except psycopg.errors.UndefinedTable:
        return [], []   # an empty database: no pool moved there yet (api/pool_ha_enable)
    except psycopg.Error as exc:
        raise OSError(describe(exc)) from None
    return ([(ref, json.loads(addr or '""'), json.loads(uuid or '""'))
             for ref, addr, uuid in hosts],
            [(json.loads(h or '""'), json.loads(k or '""'), json.loads(f or '""'))
             for h, k, f in certs])


def pool_host(url: str, address: str) -> tuple[str, str, str]:
    """(ref, uuid, SHA-256 fingerprint of its host certificate) of the pool's host at
    `address`. Blocking. Raises LookupError (no such host or certificate) or OSError
    (the database does not answer)."""
    hosts, certs = _host_rows(url)
    for ref, addr, uuid in hosts:
        if addr == address:
            for host, kind, fingerprint in certs:
                if host == ref and kind == "host" and fingerprint:
                    return ref, uuid, fingerprint
    raise LookupError(f"no host with a certificate at {address} in the pool database")


def holds_host(url: str, uuid: str) -> bool:
    """Whether the pool database holds the host with this uuid (False for an empty
    database). Blocking; raises OSError (the database does not answer)."""
    hosts, _ = _host_rows(url)
    return any(host_uuid == uuid for _, _, host_uuid in hosts)


def copy_ops(url: str, host_ref: str = "") -> list:
    """Every record of the pool database as writer ops (store/handover.py writes them
    to a member's working copy), with `host_ref` as this host's (unchanged if not
    given). One snapshot, read from any node. Blocking; raises OSError."""
    ops: list = []
    try:
        with reader(url) as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            for cdef in stored_classes():
                cols = ", ".join(quote(f.name) for f in stored_fields(cdef))
                ops += [("put", cdef.name, list(row)) for row in
                        conn.execute(f"SELECT ref, {cols} FROM {quote(cdef.name)}")]
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            gen = conn.execute(f"SELECT value FROM {STATE_TABLE} WHERE name = 'generation'"
                               ).fetchone()
    except psycopg.Error as exc:
        raise OSError(describe(exc)) from None
    if host_ref:
        meta["host_ref"] = host_ref
    ops += [("meta", key, value) for key, value in meta.items()]
    ops.append(("gen", gen[0] if gen else 0))
    return ops
