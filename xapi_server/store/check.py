"""Is a data dir's database consistent?  `python -m xapi_server.store.check DATA_DIR`
(or a pool database: `... check postgresql://...`, the same checks but SQLite's own)

For an administrator, with the server stopped (or on a copy of the data dir, e.g.
after a crash or a restore). The database is opened read-only; nothing is repaired.
Every rule comes from the datamodel:

- SQLite's own `PRAGMA integrity_check` is ok;
- every stored value decodes and fits the type its field declares (an enum value
  is one of the enum's, a ref is a ref ...);
- uuids are unique within a class;
- every stored reference is OpaqueRef:NULL or names an existing object
  (references to sessions and tasks are exempt: those live in memory only);
- every one-to-many relation (datamodel RELATIONS, e.g. VM.VBDs <- VBD.VM) is
  symmetric once the rows are loaded the way the server loads them;
- the pool and host the server bootstraps from (meta table) exist.

Exit status 0 when clean; 1 with one line per problem; 2 when the database cannot
be opened at all.
"""
from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
from collections import defaultdict

from ..datamodel import CLASSES, NULL_REF, RELATIONS
from ..datamodel.types import INT, Enum, Map, Prim, Record, Ref, Set, TypeMismatch, \
    parse_datetime
from . import Store
from ._postgres import PgDatabase, is_postgres_url
from .writer import DatabaseUnavailable
from .codec import decode, quote, stored_fields

DB_NAME = "xapi.db"   # as Settings.db_path
_INT64 = (-(2**63), 2**63 - 1)


class CheckError(Exception):
    """The database cannot be read at all."""


def _persistent(cname: str) -> bool:
    c = CLASSES.get(cname)
    return c is not None and c.persist and c.stored


# -- types ------------------------------------------------------------------------------

def type_problem(ftype, value) -> str | None:
    """Why a stored (JSON-decoded) value does not fit `ftype`, or None if it does."""
    if isinstance(ftype, Prim):
        return _prim_problem(ftype.name, value)
    if isinstance(ftype, Ref):
        if isinstance(value, str) and value.startswith("OpaqueRef:"):
            return None
        return f"expected a {ftype.cls} ref, found {value!r}"
    if isinstance(ftype, Enum):
        return None if value in ftype.values else f"{value!r} is not a valid {ftype.name}"
    if isinstance(ftype, Set):
        if not isinstance(value, list):
            return f"expected a set, found {value!r}"
        return next(filter(None, (type_problem(ftype.elem, v) for v in value)), None)
    if isinstance(ftype, Map):
        if not isinstance(value, dict):
            return f"expected a map, found {value!r}"
        for k, v in value.items():
            problem = _key_problem(ftype.key, k) or type_problem(ftype.value, v)
            if problem:
                return problem
        return None
    if isinstance(ftype, Record):
        return None if isinstance(value, dict) else f"expected a record, found {value!r}"
    return f"unknown type {ftype}"


def _prim_problem(name, value) -> str | None:
    if name == "string":
        ok = isinstance(value, str)
    elif name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool) and \
            _INT64[0] <= value <= _INT64[1]
    elif name == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif name == "bool":
        ok = isinstance(value, bool)
    elif name == "datetime":
        try:
            ok = isinstance(value, str) and parse_datetime(value) is not None
        except TypeMismatch:
            ok = False
    else:
        ok = True
    return None if ok else f"expected {name}, found {value!r}"


def _key_problem(key_type, key) -> str | None:
    """JSON object keys are strings: an int key is stored as its decimal text."""
    if key_type == INT:
        return None if key.lstrip("-").isdigit() else f"map key {key!r} is not an int"
    return type_problem(key_type, key)


def refs_in(ftype, value):
    """(class, ref) for every reference inside a value of `ftype`."""
    if isinstance(ftype, Ref):
        if isinstance(value, str):
            yield ftype.cls, value
    elif isinstance(ftype, Set) and isinstance(value, list):
        for v in value:
            yield from refs_in(ftype.elem, v)
    elif isinstance(ftype, Map) and isinstance(value, dict):
        for k, v in value.items():
            yield from refs_in(ftype.key, k)
            yield from refs_in(ftype.value, v)


# -- records (the database's rows once loaded, or a live server's records) --------------

def check_records(tables: dict[str, dict[str, dict]]) -> list[str]:
    """References, uuids and relations of {class: {ref: record}}. Records must carry
    the "many" sides of RELATIONS (as the loaded store and the API give them).
    References into a class of the datamodel that `tables` leaves out are not checked."""
    problems = []
    for cname, table in tables.items():
        if not _persistent(cname):
            continue
        cdef = CLASSES[cname]
        seen_uuids: dict[str, str] = {}
        for ref, rec in table.items():
            if not ref.startswith("OpaqueRef:") or ref == NULL_REF:
                problems.append(f"{cname} {ref!r}: not a valid object reference")
            uuid = rec.get("uuid")
            if "uuid" in cdef.field_map:
                if not uuid:
                    problems.append(f"{cname} {ref}: empty uuid")
                elif uuid in seen_uuids:
                    problems.append(f"{cname} {ref}: uuid {uuid} also belongs to "
                                    f"{seen_uuids[uuid]}")
                else:
                    seen_uuids[uuid] = ref
            for f in cdef.fields:
                if f.derived_from is not None:
                    continue   # checked as a relation below
                for target_cls, target in refs_in(f.type, rec.get(f.name)):
                    if target == NULL_REF or target_cls in ("session", "task"):
                        continue
                    if target_cls in CLASSES and target_cls not in tables:
                        continue   # a partial view (some classes' records only)
                    if target not in tables.get(target_cls, {}):
                        problems.append(f"{cname} {ref}: {f.name} points at {target_cls} "
                                        f"{target}, which does not exist")
    return problems + _relation_problems(tables)


def _relation_problems(tables) -> list[str]:
    problems = []
    for (owner, many), (child, ref_field) in RELATIONS.items():
        if not (_persistent(owner) and _persistent(child)) or child not in tables:
            continue
        pointing = defaultdict(set)
        for child_ref, rec in tables.get(child, {}).items():
            target = rec.get(ref_field)
            if target and target != NULL_REF:
                pointing[target].add(child_ref)
        for owner_ref, rec in tables.get(owner, {}).items():
            listed = list(rec.get(many) or [])
            if len(set(listed)) != len(listed):
                problems.append(f"{owner} {owner_ref}: {many} lists an object twice")
            expected = pointing.get(owner_ref, set())
            for extra in sorted(set(listed) - expected):
                problems.append(f"{owner} {owner_ref}: {many} lists {child} {extra}, whose "
                                f"{ref_field} is not {owner_ref}")
            for missing in sorted(expected - set(listed)):
                problems.append(f"{owner} {owner_ref}: {many} misses {child} {missing}, whose "
                                f"{ref_field} points at it")
    return problems


# -- the database file ------------------------------------------------------------------

def check_data_dir(data_dir: str) -> list[str]:
    """Every problem found in DATA_DIR's database (empty when it is consistent)."""
    path = os.path.join(data_dir, DB_NAME)
    if not os.path.isfile(path):
        raise CheckError(f"{path}: no database")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise CheckError(f"{path}: {exc}") from None
    try:
        problems = _integrity(conn)
        try:
            rows, meta, decode_problems = _read_rows(conn)
        except sqlite3.DatabaseError as exc:
            return problems + [f"the database cannot be read: {exc}"]
    finally:
        conn.close()
    return problems + decode_problems + check_rows(rows, meta)


def check_rows(rows, meta) -> list[str]:
    """Problems of decoded rows ({class: {ref: record}}) and the meta table."""
    problems = check_records(_loaded(rows))
    for key, cname in (("pool_ref", "pool"), ("host_ref", "host")):
        if key not in meta:
            problems.append(f"meta: no {key}")
        elif meta[key] not in rows.get(cname, {}):
            problems.append(f"meta: {key} {meta[key]} is not a {cname} in the database")
    return problems


def check_database_url(url: str) -> list[str]:
    """The same checks on a PostgreSQL pool database (its server stopped: the check
    takes the writer's lock). A value that does not decode stops the check."""
    try:
        db = PgDatabase(url)
    except DatabaseUnavailable as exc:
        raise CheckError(str(exc)) from None
    try:
        loaded = db.load()
    finally:
        db.close()
    return check_rows(loaded.rows, loaded.meta)


def _integrity(conn) -> list[str]:
    try:
        result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    except sqlite3.DatabaseError as exc:
        return [f"sqlite integrity_check: {exc}"]
    return [] if result == ["ok"] else [f"sqlite integrity_check: {r}" for r in result]


def _read_rows(conn):
    """The rows of every persistent class, decoded and type-checked."""
    problems = []
    have = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    rows: dict[str, dict[str, dict]] = {}
    for cdef in CLASSES.values():
        if not (cdef.persist and cdef.stored):
            continue
        rows[cdef.name] = table = {}
        if cdef.name not in have:   # a class newer than the database: made at next start
            continue
        columns = {row[1] for row in conn.execute(f"PRAGMA table_info({quote(cdef.name)})")}
        fields = [f for f in stored_fields(cdef) if f.name in columns]  # new fields: default
        cols = ", ".join(["ref"] + [quote(f.name) for f in fields])
        for row in conn.execute(f"SELECT {cols} FROM {quote(cdef.name)}"):
            ref, record = row[0], {}
            for f, text in zip(fields, row[1:]):
                record[f.name] = _field_value(cdef.name, ref, f, text, problems)
            table[ref] = record
    meta = dict(conn.execute("SELECT key, value FROM meta")) if "meta" in have else {}
    if "meta" not in have:
        problems.append("meta: table missing")
    return rows, meta, problems


def _field_value(cname, ref, f, text, problems):
    if text is None:            # a column added after the row was written
        return f.default_value()
    try:
        raw = json.loads(text)
    except (TypeError, ValueError):
        problems.append(f"{cname} {ref}: {f.name} is not valid JSON: {text!r:.80}")
        return f.default_value()
    problem = type_problem(f.type, raw)
    if problem:
        problems.append(f"{cname} {ref}: {f.name}: {problem:.200}")
        return f.default_value()
    return decode(f.type, text)


def _loaded(rows) -> dict[str, dict[str, dict]]:
    """The tables as the server holds them after loading these rows: the store's own
    load path fills in the many sides of the relations."""
    store = Store(None)
    store._load_rows({cname: {ref: dict(record) for ref, record in table.items()}
                      for cname, table in rows.items()})
    return store.tables


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xapi_server.store.check",
        description="Check the consistency of an xapi-py data dir's database "
                    "(read-only; run it while the server is stopped).")
    parser.add_argument("data_dir", help="the data dir, or the postgresql:// URL of a "
                                         "pool database")
    args = parser.parse_args(argv)
    try:
        problems = (check_database_url(args.data_dir) if is_postgres_url(args.data_dir)
                    else check_data_dir(args.data_dir))
    except CheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem)
    count = len(problems)
    print(f"{count} problem{'s' if count != 1 else ''} found" if count else "consistent",
          file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
