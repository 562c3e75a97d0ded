"""The object store: every record in memory, every acknowledged write on disk.

Reads come from memory and never touch the disk. Writes change memory at once and
queue the change for the SQLite writer; the dispatcher calls `await store.flush()`
before it answers, so a reply is only sent once its writes are durable. If the disk
refuses a batch (disk full, I/O error) the batch is undone in memory and the callers
get an error: memory never claims what the disk does not hold.

Each change bumps a global generation and stamps the object with it; deleted objects
leave a tombstone. `event.from` reads changes since a generation from these.
"""
from __future__ import annotations

import asyncio
import uuid as uuidlib

from ..datamodel import CLASSES, RELATIONS
from ..datamodel._types import Row
from ..errors import ApiError, handle_invalid
from ._sqlite import Database


LOG_LIMIT = 200_000  # change-log entries kept for event.from before trimming


def new_ref() -> str:
    return f"OpaqueRef:{uuidlib.uuid4()}"


class Store:
    def __init__(self, path: str | None = None):
        self._db = Database(path) if path else None
        self.tables: dict[str, dict[str, dict]] = {c: {} for c in CLASSES}
        self.gens: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
        self._by_uuid: dict[str, dict[str, str]] = {c: {} for c in CLASSES}
        self.meta: dict[str, str] = {}
        self.generation = 0
        # The change log event.from reads: (generation, class, ref), oldest first.
        # `created` remembers when each live object was made; `deleted` when each
        # deleted one was made, so a reader can tell add from mod and drop objects
        # that came and went between two of its calls.
        self.log: list[tuple[int, str, str]] = []
        self.log_floor = 0             # changes at or below this were trimmed away
        self.created: dict[str, dict[str, int]] = {c: {} for c in CLASSES}
        self.deleted: dict[tuple[str, str], int] = {}
        self._pending: list = []       # ops not yet handed to the writer: (op, undo)
        self._seq = 0                  # ops logged so far
        self._inflight: dict[int, tuple[int, asyncio.Future, list]] = {}
        self._next_batch = 0
        self._waiters: set[asyncio.Future] = set()
        # children[(child_class, ref_field)] -> [(owner_class, many_field)]
        self._relations: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for (owner, many), (child, ref_field) in RELATIONS.items():
            if owner in CLASSES and child in CLASSES:
                self._relations.setdefault((child, ref_field), []).append((owner, many))

    # -- life cycle ----------------------------------------------------------------

    def open(self):
        """Load what is on disk and start the writer (call from the event loop)."""
        self._loop = asyncio.get_running_loop()
        if not self._db:
            return
        rows, self.meta = self._db.load()
        for cname, table in rows.items():
            for ref, record in table.items():
                self._install(cname, ref, record)
        self._db.start(self._batch_done_threadsafe)

    def close(self):
        if self._db:
            self._db.close()
            self._db = None

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

    def find(self, cname: str, **match) -> list[str]:
        return [ref for ref, rec in self.tables[cname].items()
                if all(rec.get(k) == v for k, v in match.items())]

    # -- writes (memory now, disk at flush) ----------------------------------------

    def create(self, cname: str, fields: dict | None = None, ref: str | None = None) -> str:
        """Add an object: unnamed fields take their defaults; uuid is made if absent."""
        cdef = CLASSES[cname]
        ref = ref or new_ref()
        record = {}
        for f in cdef.fields:
            record[f.name] = f.default_value()
        record.update(fields or {})
        if "uuid" in cdef.field_map and not record.get("uuid"):
            record["uuid"] = str(uuidlib.uuid4())
        for many_field in (f.name for f in cdef.fields if f.derived_from):
            record[many_field] = []
        self._change(cname, ref, record)
        self._rebuild_derived_for(cname, ref)
        return ref

    def update(self, cname: str, ref: str, **changes):
        """Change some fields. Give new containers, never mutate the old ones in place."""
        old = self.record(cname, ref)
        new = Row(old)
        new.update(changes)
        self._change(cname, ref, new)

    def delete(self, cname: str, ref: str):
        self.record(cname, ref)
        self._change(cname, ref, None)

    def set_meta(self, key: str, value: str | None):
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
        """Wait until every change made so far is on disk; raise if the disk refused it."""
        if not self._db:
            return
        if self._pending:
            batch_id = self._next_batch
            self._next_batch += 1
            ops = self._pending
            self._pending = []
            future = self._loop.create_future()
            self._inflight[batch_id] = (self._seq, future, ops)
            self._db.submit(batch_id, [op for op, _ in ops])
        # Batches commit in order: ours is done once every batch up to the last is.
        last = self._next_batch - 1
        waits = [fut for bid, (_, fut, _) in self._inflight.items() if bid <= last]
        if waits:
            results = await asyncio.gather(*(asyncio.shield(w) for w in waits),
                                           return_exceptions=True)
            for result in results:
                if isinstance(result, Exception):
                    raise ApiError("INTERNAL_ERROR",
                                   f"the database could not be written: {result}")

    # -- change notification ---------------------------------------------------------

    async def wait_change(self, since: int, timeout: float) -> bool:
        """Wait until the generation passes `since` or `timeout` runs out."""
        if self.generation > since:
            return True
        future = self._loop.create_future()
        self._waiters.add(future)
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self._waiters.discard(future)
        return self.generation > since

    # -- internals -----------------------------------------------------------------

    def _change(self, cname: str, ref: str, new: dict | None):
        old = self.tables[cname].get(ref)
        self._apply(cname, ref, new)
        if CLASSES[cname].persist and self._db:
            op = ("put", cname, ref, new) if new is not None else ("del", cname, ref)
            self._log(op, (cname, ref, old))

    def _log(self, op, undo):
        self._seq += 1
        if self._db:
            self._pending.append((op, undo))

    def _apply(self, cname: str, ref: str, new: dict | None):
        """Put `new` (or remove, when None) and keep indexes and relations in step."""
        table = self.tables[cname]
        old = table.get(ref)
        uuids = self._by_uuid[cname]
        if old is not None and "uuid" in old:
            uuids.pop(old["uuid"], None)
        if new is None:
            table.pop(ref, None)
            self.gens[cname].pop(ref, None)
            self.generation += 1
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
        for (child_cls, ref_field), owners in self._relations.items():
            if child_cls != cname:
                continue
            before = old.get(ref_field) if old else None
            after = new.get(ref_field) if new else None
            if before == after:
                continue
            for owner_cls, many in owners:
                self._relink(owner_cls, before, many, ref, add=False)
                self._relink(owner_cls, after, many, ref, add=True)
        self._wake()

    def _relink(self, owner_cls, owner_ref, many, child_ref, add):
        owner = self.tables[owner_cls].get(owner_ref) if owner_ref else None
        if owner is None:
            return
        current = owner[many]
        if add and child_ref not in current:
            updated = current + [child_ref]
        elif not add and child_ref in current:
            updated = [r for r in current if r != child_ref]
        else:
            return
        # A new Record, never an in-place change: see Row.
        self.tables[owner_cls][owner_ref] = Row(owner, **{many: updated})
        self._bump(owner_cls, owner_ref)

    def _rebuild_derived_for(self, cname, ref):
        """A new owner: collect children that already point at it (e.g. on load).
        Changes the brand-new record in place: nobody can have encoded it yet."""
        record = self.tables[cname][ref]
        for f in CLASSES[cname].fields:
            if f.derived_from:
                child_cls, ref_field = f.derived_from
                record[f.name] = [r for r, rec in self.tables[child_cls].items()
                                  if rec.get(ref_field) == ref]

    def _install(self, cname, ref, record):
        """Add a loaded row: like create, without logging it back to disk."""
        cdef = CLASSES[cname]
        for f in cdef.fields:
            if f.derived_from:
                record[f.name] = []
        self._apply(cname, ref, record)
        self._rebuild_derived_for(cname, ref)

    def _bump(self, cname, ref):
        self.generation += 1
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

    def _batch_done_threadsafe(self, batch_id, error):
        self._loop.call_soon_threadsafe(self._batch_done, batch_id, error)

    def _batch_done(self, batch_id, error):
        _, future, ops = self._inflight.pop(batch_id)
        if error is not None:
            self._undo(ops)
            future.set_exception(error)
        else:
            future.set_result(None)

    def _undo(self, ops):
        for op, undo in reversed(ops):
            if op[0] == "meta":
                _, key, old = undo
                if old is None:
                    self.meta.pop(key, None)
                else:
                    self.meta[key] = old
            else:
                cname, ref, old = undo
                self._apply(cname, ref, old)
