"""The object store: every record in memory, every acknowledged write on disk.

Reads come from memory and never touch the disk. Writes change memory at once and
queue the change for the SQLite writer; the dispatcher calls `await store.flush()`
before it answers, so a reply is only sent once its writes are durable. If the disk
refuses a batch (disk full, I/O error) it is undone in memory with everything made
after it and the callers get an error: memory never claims what the disk does not
hold (commits.py).

Each change bumps a global generation and stamps the object with it; deleted objects
leave a tombstone. `event.from` reads changes since a generation from these, up to
`durable_generation` only, so no client is told of a change the disk may still refuse.

Two backends behind one interface (writer.py): a SQLite file for a standalone host
(_sqlite.py), PostgreSQL for a pool (_postgres.py), chosen by the location given.
The database also holds a generation ceiling, reserved ahead in steps and committed
before any token above it is handed out, so a server that loads the database again
(after a restart, or a new coordinator) resumes above every token given before.
"""
from __future__ import annotations

import asyncio
import bisect
import gc
import uuid as uuidlib

from ..datamodel import CLASSES, Map, Set
from ..datamodel.types import Row
from ..errors import ApiError, handle_invalid
from ..gcpolicy import freeze_all
from ._postgres import PgDatabase, display_name, is_postgres_url
from ._sqlite import Database
from .codec import Unstorable, row_values, storable_text
from .commits import CommitQueue
from .relations import Relations
from .writer import DatabaseUnavailable

__all__ = ["Store", "DatabaseUnavailable", "display_name", "is_postgres_url", "new_ref"]

LOG_LIMIT = 200_000  # change-log entries kept for event.from before trimming
# Generations reserved in the database at a time; a new reservation is made when half
# of the last one is used, so the ceiling is committed well before tokens reach it.
GEN_RESERVE = 1 << 14


def new_ref() -> str:
    return f"OpaqueRef:{uuidlib.uuid4()}"


def open_database(location: str):
    """PostgreSQL for a postgresql:// URL, else a SQLite file at that path."""
    return PgDatabase(location) if is_postgres_url(location) else Database(location)


class Store:
    def __init__(self, location: str | None = None):
        """`location`: a SQLite file's path, a postgresql:// URL, or None (memory only).
        An unreachable database raises DatabaseUnavailable."""
        self._db = open_database(location) if location else None
        self._commits = CommitQueue(self._db, self._undo, self._wake,
                                    self._committed) if location else None
        self.tables: dict[str, dict[str, dict]] = {c: {} for c in CLASSES}
        self.gens: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
        self._by_uuid: dict[str, dict[str, str]] = {c: {} for c in CLASSES}
        self.meta: dict[str, str] = {}
        self.generation = 0
        self._ceiling = float("inf")      # tokens up to here are safe across a restart
        self._asked = 0                   # the ceiling last asked of the database
        self._reserve_at = float("inf")   # generation that asks for the next one
        self._undoing = False
        # The change log event.from reads: (generation, class, ref), oldest first.
        # `created` remembers when each live object was made; `deleted` when each
        # deleted one was made, so a reader can tell add from mod and drop objects
        # that came and went between two of its calls.
        self.log: list[tuple[int, str, str]] = []
        self.log_floor = 0             # changes at or below this were trimmed away
        self.created: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
        self.deleted: dict[tuple[str, str], int] = {}
        self._waiters: set[asyncio.Future] = set()
        # Indexes of plain fields that find() was asked about: (class, field) -> value ->
        # {ref: None}; None for a field that cannot have one.
        self._indexes: dict[tuple[str, str], dict | None] = {}
        self._indexed: dict[str, list[str]] = {}
        self._field_names = {c: frozenset(CLASSES[c].field_map) for c in CLASSES}
        self._relations = Relations(self.tables, self._bump)

    # -- life cycle ----------------------------------------------------------------

    def open(self):
        """Load what is on disk and start the writer (call from the event loop)."""
        self._loop = asyncio.get_running_loop()
        if not self._db:
            return
        # Loading makes hundreds of thousands of containers, none of them garbage: the
        # cyclic collector, run again and again over them, doubled the time it takes.
        # Once loaded they are frozen out of its sweeps (gc.freeze): they live until
        # replaced, and reference counting frees a replaced record. Garbage made before
        # is collected first, so that none is frozen with them; close() unfreezes (a
        # process that opens stores one after another, as the tests do, frees them).
        gc.collect()
        collecting = gc.isenabled()
        gc.disable()
        try:
            loaded = self._db.load()
            self.meta = loaded.meta
            # Above every token a previous writer handed out; older tokens read everything.
            self.generation = self.log_floor = self._ceiling = self._asked = loaded.generation
            self._load_rows(loaded.rows)
        finally:
            if collecting:
                gc.enable()
        freeze_all()
        self._commits.start(self._loop)
        self._reserve()

    def close(self):
        if self._db:
            self._db.close()
            self._db = self._commits = None
            gc.unfreeze()   # see open()

    # -- reads ---------------------------------------------------------------------

    def exists(self, cname: str, ref: str) -> bool:
        return ref in self.tables[cname]

    def record(self, cname: str, ref: str) -> dict:
        """The live record: read it, never change it (use update)."""
        try:
            return self.tables[cname][ref]
        except KeyError:
            raise handle_invalid(cname, ref) from None

    def get(self, cname: str, ref: str, field: str):
        return self.record(cname, ref)[field]

    def refs(self, cname: str) -> list[str]:
        return list(self.tables[cname])

    def by_uuid(self, cname: str, uuid: str) -> str:
        ref = self._by_uuid[cname].get(uuid)
        if ref is None:
            raise ApiError("UUID_INVALID", cname, uuid)
        return ref

    def changed_since(self, generation: int, *cnames: str) -> dict[str, list[str]]:
        """For each class, the live objects changed (made, updated, touched) after
        `generation`: from the change log, so a watcher woken by one change reads that
        change, not every object's generation."""
        found: dict[str, dict[str, None]] = {cname: {} for cname in cnames}
        if generation < self.log_floor:                  # the log no longer reaches back
            for cname in cnames:
                found[cname] = {r: None for r, g in self.gens[cname].items() if g > generation}
        else:
            start = bisect.bisect_right(self.log, generation, key=lambda e: e[0])
            for _gen, cname, ref in self.log[start:]:
                refs = found.get(cname)
                if refs is not None and self.gens[cname].get(ref, 0) > generation:
                    refs[ref] = None
        return {cname: list(refs) for cname, refs in found.items()}

    def find(self, cname: str, **match) -> list[str]:
        """Refs whose fields equal `match`. The first field's index (made at the first
        find on it, then kept by every change) gives the candidates: get_by_name_label,
        a VM's metrics owner, a host's PBDs ... never scan the table."""
        if not match:
            return list(self.tables[cname])
        field, value = next(iter(match.items()))
        index = self._index(cname, field)
        try:
            candidates = self.tables[cname] if index is None else index.get(value, ())
        except TypeError:                        # an unhashable value: scan
            candidates = self.tables[cname]
        table = self.tables[cname]
        return [ref for ref in candidates
                if all(table[ref].get(k) == v for k, v in match.items())]

    def _index(self, cname: str, field: str) -> dict | None:
        """value -> {ref: None} of a plain (not set or map) field, or None."""
        key = (cname, field)
        index = self._indexes.get(key)
        if index is None and key not in self._indexes:
            f = CLASSES[cname].field_map.get(field)
            if f is not None and not isinstance(f.type, (Set, Map)):
                index = {}
                for ref, rec in self.tables[cname].items():
                    index.setdefault(rec.get(field), {})[ref] = None
            self._indexes[key] = index
            if index is not None:
                self._indexed.setdefault(cname, []).append(field)
        return index

    def _reindex(self, cname: str, ref: str, old: dict | None, new: dict | None):
        for field in self._indexed.get(cname, ()):
            before = old.get(field) if old is not None else None
            after = new.get(field) if new is not None else None
            if old is not None and new is not None and before == after:
                continue
            index = self._indexes[(cname, field)]
            if old is not None:
                refs = index.get(before)
                if refs is not None:
                    refs.pop(ref, None)
                    if not refs:
                        del index[before]
            if new is not None:
                index.setdefault(after, {})[ref] = None

    # -- writes (memory now, disk at flush) ----------------------------------------

    def create(self, cname: str, fields: dict | None = None, ref: str | None = None) -> str:
        """Add an object: unnamed fields take their defaults; uuid is made if absent."""
        cdef = CLASSES[cname]
        self._check_fields(cname, fields or {})
        given_ref, ref = ref is not None, ref or new_ref()
        record = {}
        for f in cdef.fields:
            record[f.name] = f.default_value()
        record.update(fields or {})
        if "uuid" in cdef.field_map and not record.get("uuid"):
            record["uuid"] = str(uuidlib.uuid4())
        for many_field in (f.name for f in cdef.fields if f.derived_from):
            record[many_field] = []
        self._change(cname, ref, record)
        if given_ref:   # a fresh ref: no child can point at it yet, nothing to scan for
            self._relations.fill_owner(cname, ref)
        return ref

    def update(self, cname: str, ref: str, **changes):
        """Change some fields. Give new containers, never mutate the old ones in place."""
        old = self.record(cname, ref)
        self._check_fields(cname, changes)
        new = Row(old)
        new.update(changes)
        self._change(cname, ref, new)

    def delete(self, cname: str, ref: str):
        self.record(cname, ref)
        self._change(cname, ref, None)

    def set_meta(self, key: str, value: str | None):
        storable_text(key, "meta key")
        if value is not None:
            storable_text(value, f"meta {key}")
        old = self.meta.get(key)
        if value is None:
            self.meta.pop(key, None)
        else:
            self.meta[key] = value
        self._log(("meta", key, value), ("meta", key, old))

    def touch(self, cname: str, ref: str):
        """Mark an object changed (event.inject) without changing its fields."""
        self.record(cname, ref)
        self._bump(cname, ref)
        self._wake()

    async def flush(self):
        """Wait until every change made so far is on disk; raise INTERNAL_ERROR if the
        disk refused any of them or an earlier change of this task."""
        if self._commits:
            await self._commits.flush()

    def settled(self) -> bool:
        """Whether flush() has nothing to wait for and nothing to raise."""
        return not self._commits or self._commits.settled()

    @property
    def deposed(self) -> str | None:
        """Why this server may no longer write its replicated pool database, else None
        (_postgres.py: the database refused it as read-only, or its primary was lost)."""
        return self._db.deposed if self._db else None

    @property
    def replicated(self) -> bool:
        """On a replicated pool database (a URL that accepts only its primary)."""
        return bool(getattr(self._db, "replicated", False))

    # -- change notification ---------------------------------------------------------

    @property
    def durable_generation(self) -> int:
        """Every change up to this generation is on disk (or needs not be)."""
        first = self._commits.first_unresolved_gen() if self._commits else None
        return min(self.generation if first is None else first - 1, self._ceiling)

    async def wait_change(self, since: int, timeout: float, durable: bool = False) -> bool:
        """Wait until the generation (or the durable one) passes `since` or `timeout`
        runs out."""
        def passed():
            return (self.durable_generation if durable else self.generation) > since
        deadline = self._loop.time() + timeout
        while not passed():
            remaining = deadline - self._loop.time()
            if remaining <= 0:
                return False
            future = self._loop.create_future()
            self._waiters.add(future)
            try:
                await asyncio.wait_for(future, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                self._waiters.discard(future)
        return True

    # -- internals -----------------------------------------------------------------

    def _check_fields(self, cname: str, names):
        # A name the datamodel does not have is a programming error (a typo would be
        # stored and served as if it were a field): the dispatcher makes it INTERNAL_ERROR.
        known = self._field_names[cname]
        unknown = [name for name in names if name not in known]
        if unknown:
            raise ValueError(f"{cname} has no field {', '.join(sorted(unknown))}")

    def _change(self, cname: str, ref: str, new: dict | None):
        old = self.tables[cname].get(ref)
        gen = self.generation + 1
        op = None
        if self._commits and CLASSES[cname].persist:
            # Encoded before memory changes: a value the database cannot hold is refused
            # to this caller now, instead of failing a commit batch other callers share.
            op = ("del", cname, ref) if new is None else ("put", cname, self._row(cname, ref, new))
        self._apply(cname, ref, new)
        if op is not None:
            self._log(op, (cname, ref, self._relations.for_undo(cname, old, new)), gen)

    @staticmethod
    def _row(cname: str, ref: str, record: dict) -> list[str]:
        try:
            return row_values(cname, ref, record)
        except Unstorable as exc:
            raise ApiError("INVALID_VALUE", exc.where, exc.reason) from None

    def _log(self, op, undo, gen=None):
        if self._commits:
            self._commits.add(gen or self.generation + 1, op, undo)

    def _apply(self, cname: str, ref: str, new: dict | None):
        """Put `new` (or remove, when None) and keep indexes and relations in step."""
        table = self.tables[cname]
        old = table.get(ref)
        if cname in self._indexed:
            self._reindex(cname, ref, old, new)
        uuids = self._by_uuid[cname]
        if old is not None and "uuid" in old:
            uuids.pop(old["uuid"], None)
        if new is None:
            table.pop(ref, None)
            self.gens[cname].pop(ref, None)
            self._next_generation()
            self.log.append((self.generation, cname, ref))
            self.deleted[(cname, ref)] = self.created[cname].pop(ref, 0)
        else:
            if type(new) is not Row:
                new = Row(new)
            table[ref] = new
            if "uuid" in new:
                uuids[new["uuid"]] = ref
            self._bump(cname, ref)
            if old is None:
                self.created[cname][ref] = self.generation
                self.deleted.pop((cname, ref), None)
        self._relations.follow(cname, ref, old, new)
        self._wake()

    def _install(self, cname, ref, record):
        """Add a loaded row: like create, without logging it back to disk."""
        cdef = CLASSES[cname]
        for f in cdef.fields:
            if f.derived_from:
                record[f.name] = []
        self._apply(cname, ref, record)
        self._relations.fill_owner(cname, ref)

    def _load_rows(self, rows: dict[str, dict[str, dict]]):
        """Put loaded rows in place, as _install would one by one, but with the many
        sides of the relations filled in one pass over the children at the end: per
        row, relinking and scanning every child table made a restart with 10,000 VMs
        quadratic. Changes the brand-new records in place: nobody can have encoded them."""
        for cname, table in rows.items():
            derived = [f.name for f in CLASSES[cname].fields if f.derived_from]
            live, uuids, made = self.tables[cname], self._by_uuid[cname], self.created[cname]
            for ref, record in table.items():
                row = record if type(record) is Row else Row(record)   # not copied twice
                for name in derived:
                    row[name] = []
                live[ref] = row
                if "uuid" in row:
                    uuids[row["uuid"]] = ref
                self._bump(cname, ref)
                made[ref] = self.generation
        self._relations.fill_all()
        self._indexes.clear()     # made again from the loaded tables when next asked
        self._indexed.clear()

    def _next_generation(self):
        self.generation += 1
        if self.generation >= self._reserve_at and not self._undoing:
            self._reserve()

    def _reserve(self):
        """Ask the database for generations up to GEN_RESERVE ahead (its own ticket:
        no caller is failed if this alone is refused)."""
        old, self._asked = self._asked, self.generation + GEN_RESERVE
        self._reserve_at = self.generation + GEN_RESERVE // 2
        self._commits.add(self.generation + 1, ("gen", self._asked), ("gen", old),
                          detached=True)

    def _committed(self, ops):
        for entry in ops:
            if entry.op[0] == "gen":
                self._ceiling = max(self._ceiling, entry.op[1])

    def _bump(self, cname, ref):
        self._next_generation()
        self.gens[cname][ref] = self.generation
        self.log.append((self.generation, cname, ref))
        if len(self.log) > LOG_LIMIT:
            self._trim_log()

    def _trim_log(self):
        keep = self.log[len(self.log) // 2:]
        self.log_floor = keep[0][0] - 1
        self.log = keep
        recent = {(c, r) for _, c, r in keep}
        self.deleted = {key: gen for key, gen in self.deleted.items() if key in recent}

    def _wake(self):
        for future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()

    def _undo(self, ops) -> list[tuple]:
        """Take refused ops back, newest first. An object brought back keeps its
        creation generation, so event clients see it as modified, not new. Returns
        the ops that write what memory now holds for everything they touched."""
        self._undoing = True
        try:
            self._take_back(ops)
        finally:
            self._undoing = False
        repairs = {}
        for entry in ops:
            kind = entry.op[0]
            if kind == "meta":
                key = entry.op[1]
                repairs[key] = ("meta", key, self.meta.get(key))
            elif kind in ("put", "del"):
                cname, ref = entry.undo[:2]
                record = self.tables[cname].get(ref)
                repairs[(cname, ref)] = (("del", cname, ref) if record is None
                                         else ("put", cname, self._row(cname, ref, record)))
        return list(repairs.values())

    def _take_back(self, ops):
        for entry in reversed(ops):
            if entry.op[0] == "gen":
                self._asked = entry.undo[1]   # asked again at the next generation
                self._reserve_at = self.generation
                continue
            if entry.op[0] == "meta":
                _, key, old = entry.undo
                if old is None:
                    self.meta.pop(key, None)
                else:
                    self.meta[key] = old
                continue
            cname, ref, old = entry.undo
            current = self.tables[cname].get(ref)
            # An update's undo entry has no lists (Relations.for_undo): they follow the
            # children, undone on their own.
            old, refill = self._relations.undone(cname, old, current)
            made = self.deleted.get((cname, ref)) if current is None else None
            self._apply(cname, ref, old)
            if refill:
                self._relations.fill_owner(cname, ref)
            if made is not None and old is not None:
                self.created[cname][ref] = made
