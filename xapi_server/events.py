"""Events from the store's change log: event.from, and the legacy register/next.

A token is "<generation>,<0>" (two 20-digit numbers, as xapi). A call returns every
object of the subscribed classes whose generation is newer than the token, once,
in its latest state: `add` if it was made since, `mod` otherwise, `del` (no
snapshot) if it existed at the token and is gone now. Waiting clients cost one
future each; nothing is queued per client, so memory does not grow with them.

Only changes up to the store's durable generation are told: an object changed since
is held back until the disk has its change, so a write the disk refuses is never
delivered. Its undo shows up as a `mod` carrying the values the client already had.
"""
from __future__ import annotations

import asyncio
import bisect
import time

from .datamodel import CLASSES
from .errors import ApiError
from .wire import Event, Int32

# Classes event.from can watch. As in xapi (gen_events:false), not session: a session's
# ref is its owner's credential, and "*" must not hand it to every other user.
_BY_LOWER = {name.lower(): name for name, c in CLASSES.items() if c.stored and c.events}
_EVENT_CLASSES = frozenset(_BY_LOWER.values())


def event_class(name: str) -> str | None:
    """The class a lower- or mixed-case event class name means, or None."""
    return _BY_LOWER.get(name.lower())


def make_token(generation: int) -> str:
    return "%020d,%020d" % (generation, 0)


def parse_token(token: str) -> int:
    if token == "":
        return 0
    try:
        generation, _, _messages = token.partition(",")
        return int(generation)
    except ValueError:
        raise ApiError("EVENT_FROM_TOKEN_PARSE_FAILURE", token) from None


class Subscription:
    """Parsed class list: whole classes, single objects, or everything."""

    def __init__(self, entries):
        self.everything = False
        self.classes: set[str] = set()
        self.objects: set[tuple[str, str]] = set()
        for entry in entries:
            name, _, ref = entry.partition("/")
            if name == "*":
                self.everything = True
                continue
            cname = event_class(name)
            if cname is None:
                raise ApiError("EVENT_SUBSCRIPTION_PARSE_FAILURE", entry)
            if ref:
                self.objects.add((cname, ref))
            else:
                self.classes.add(cname)

    def wants(self, cname: str, ref: str) -> bool:
        return ((self.everything and cname in _EVENT_CLASSES) or cname in self.classes
                or (cname, ref) in self.objects)

    def all_classes(self):
        if self.everything:
            return list(_BY_LOWER.values())
        return sorted(self.classes | {c for c, _ in self.objects})


class EventMemo:
    """The Event last told for each object, kept while its Record, generation and
    operation stay the same: a full event.from of 10,000 VMs then makes no event per
    call, and the codecs find each Event's encoding cached (they key it by the Event).
    Entries of deleted objects are dropped when a class's memo outgrows its table.

    Per class, two dicts by ref (the Event; the generation it told), not a tuple per
    object: a tuple holding a Record is an object the cyclic garbage collector tracks,
    and 20,000 of them left by a full event.from made every later full collection
    walk them too (the Event holds its operation and Record)."""

    def __init__(self):
        self._by_class: dict[str, tuple[dict[str, Event], dict[str, int]]] = {}
        # a whole class told from the start: (store generation then, its newest
        # object's generation, the Events), reused while the log shows no change to it
        self.whole: dict[str, tuple[int, int, list]] = {}

    def of(self, cname: str) -> tuple[dict, dict]:
        """({ref: Event}, {ref: its generation}) of the class."""
        memo = self._by_class.get(cname)
        if memo is None:
            memo = self._by_class[cname] = ({}, {})
        return memo

    def prune(self, cname: str, live: dict):
        memo = self._by_class.get(cname)
        if memo is not None and len(memo[0]) > 2 * len(live) + 256:
            events, gens = memo
            kept = {ref: e for ref, e in events.items() if ref in live}
            self._by_class[cname] = (kept, {ref: gens[ref] for ref in kept})


def collect(store, sub: Subscription, since: int, upto: int,
            memo: EventMemo | None = None) -> list[dict]:
    """Events for changes after generation `since`, coalesced per object; objects
    changed after `upto` are left for a later call."""
    events: list[dict] = []
    for part in _event_parts(store, sub, since, upto, memo or EventMemo()):
        events += part
    return events


async def collect_sliced(store, sub: Subscription, since: int, upto: int,
                         memo: EventMemo | None = None) -> list[dict]:
    """collect(), giving the event loop back between parts: a full event.from over
    tens of thousands of objects must not hold up every other client. The objects and
    their Records are taken in one go before the first part (a Record is never changed
    in place), so the answer is the one collect() would have given at that moment."""
    events: list[dict] = []
    for part in _event_parts(store, sub, since, upto, memo or EventMemo()):
        events += part
        await asyncio.sleep(0)
    return events


PART = 2048   # objects turned into events between two turns of the event loop


def _event_parts(store, sub, since, upto, memo):
    if since < store.log_floor or since == 0:
        yield from _scan_parts(store, sub, since, upto, memo)
        return
    start = bisect.bisect_right(store.log, since, key=lambda e: e[0])
    touched = {}
    for gen, cname, ref in store.log[start:]:
        if sub.wants(cname, ref):
            touched[(cname, ref)] = gen
    tables = store.tables
    items = [(key, gen, tables[key[0]].get(key[1])) for key, gen in touched.items()
             if gen <= upto]
    for first in range(0, len(items), PART):
        yield _events(store, items[first:first + PART], since, memo)


def _made(store, cname, ref) -> int:
    made = store.created[cname].get(ref)
    return store.deleted.get((cname, ref), 0) if made is None else made


_LOWER = {name: name.lower() for name in CLASSES}


def _event(memo: tuple[dict, dict], cname, ref, gen, record, op) -> Event:
    """The Event of a live object, the one told before while nothing changed."""
    events, gens = memo
    known = events.get(ref)
    if known is not None and gens[ref] == gen and known["snapshot"] is record \
            and known["operation"] == op:
        return known
    event = Event({"id": str(gen), "timestamp": "0.0", "class": _LOWER[cname],
                   "operation": op, "ref": ref, "snapshot": record})
    events[ref], gens[ref] = event, gen
    return event


def _events(store, items, since, memo: EventMemo) -> list[dict]:
    events = []
    for (cname, ref), gen, record in items:
        if record is None:
            made = store.deleted.get((cname, ref))
            if made is None or made > since:
                continue  # made and gone between two calls: nothing to tell
            events.append({"id": str(gen), "timestamp": "0.0", "class": _LOWER[cname],
                           "operation": "del", "ref": ref})
            continue
        # From the start (since 0) every live object was made since: no look-up.
        op = "add" if since == 0 or _made(store, cname, ref) > since else "mod"
        events.append(_event(memo.of(cname), cname, ref, gen, record, op))
    return events


def _scan_parts(store, sub, since, upto, memo: EventMemo):
    """Every subscribed object changed after `since` (the whole store from the start,
    or when the log no longer reaches back that far), class by class, in parts. Each
    class's generations and Records are copied at once before the first part (C-speed
    dict copies), so the parts tell one moment; deleted objects come last."""
    classes = []
    unchanged = _unchanged_classes(store, memo) if since == 0 else set()
    for cname in sub.all_classes():
        whole = sub.everything or cname in sub.classes
        if whole and cname in unchanged and memo.whole[cname][1] <= upto:
            classes.append((cname, None, memo.whole[cname][2]))     # told as before
            continue
        gens = store.gens[cname]
        if not whole:                                        # single objects of it
            gens = {ref: gen for ref, gen in gens.items() if sub.wants(cname, ref)}
        classes.append((cname, list(gens.items()), dict(store.tables[cname])))
    now = store.generation
    gone = [(key, now, None) for key in store.deleted if sub.wants(*key)]
    for cname, gens, table in classes:
        if gens is None:
            yield table
            continue
        known, told, newest = memo.of(cname), [], 0
        for first in range(0, len(gens), PART):
            events = []
            for ref, gen in gens[first:first + PART]:
                record = table.get(ref)
                if gen <= since or gen > upto or record is None:
                    continue
                op = "add" if since == 0 or _made(store, cname, ref) > since else "mod"
                events.append(_event(known, cname, ref, gen, record, op))
                newest = max(newest, gen)
            told += events
            yield events
        memo.prune(cname, table)
        if since == 0 and len(told) == len(gens) and len(gens) == len(table) \
                and (sub.everything or cname in sub.classes):
            memo.whole[cname] = (now, newest, told)
    gone = [item for item in gone if item[1] <= upto]
    if gone:
        yield _events(store, gone, since, memo)


def _unchanged_classes(store, memo: EventMemo) -> set[str]:
    """The classes whose Events memo.whole holds that the log shows no change to since
    (none when the log no longer reaches back to the oldest of them)."""
    if not memo.whole:
        return set()
    oldest = min(made for made, _newest, _events in memo.whole.values())
    if oldest < store.log_floor:
        memo.whole.clear()
        return set()
    start = bisect.bisect_right(store.log, oldest, key=lambda e: e[0])
    changed: dict[str, int] = {}
    for gen, cname, _ref in store.log[start:]:
        changed[cname] = gen                     # the class's latest change
    for cname in [c for c, (made, _n, _e) in memo.whole.items() if changed.get(c, 0) > made]:
        del memo.whole[cname]                    # stale: let its Events go
    return set(memo.whole)


def valid_ref_counts(store) -> dict:
    return {name.lower(): Int32(len(store.tables[name])) for name in _BY_LOWER.values()}


async def event_from(store, classes, token: str, timeout: float,
                     memo: EventMemo | None = None) -> dict:
    sub = Subscription(classes)
    since = parse_token(token)
    deadline = time.monotonic() + max(0.0, min(timeout, 86400.0))
    while True:
        seen = store.durable_generation
        events = await collect_sliced(store, sub, since, seen, memo)
        remaining = deadline - time.monotonic()
        if events or remaining <= 0:
            return {"events": events, "valid_ref_counts": valid_ref_counts(store),
                    "token": make_token(seen)}
        since = seen
        await store.wait_change(seen, remaining, durable=True)


class Registrations:
    """Legacy event.register/next: a class set and a position per session; and the
    EventMemo event.from shares between its callers (`memo`)."""

    QUEUE_LIMIT = 10000  # a client this far behind has lost events (EVENTS_LOST)

    def __init__(self, store):
        self.store = store
        self.by_session: dict[str, tuple[set, int]] = {}
        self.memo = EventMemo()

    def register(self, session, classes):
        Subscription(classes)  # validate
        current, position = self.by_session.get(session,
                                                (set(), self.store.durable_generation))
        self.by_session[session] = (current | set(classes), position)

    def unregister(self, session, classes):
        if session in self.by_session:
            current, position = self.by_session[session]
            self.by_session[session] = (current - set(classes), position)

    async def next(self, session) -> list:
        if session not in self.by_session:
            raise ApiError("SESSION_NOT_REGISTERED", session)
        while True:
            classes, position = self.by_session[session]
            store = self.store
            if position < store.log_floor or store.generation - position > self.QUEUE_LIMIT:
                self.by_session[session] = (classes, store.generation)
                raise ApiError("EVENTS_LOST")
            seen = store.durable_generation
            events = collect(store, Subscription(classes), position, seen)
            if events:
                self.by_session[session] = (classes, seen)
                stamp = "%d." % time.time()
                # copies: the Events themselves are shared (EventMemo), never changed
                return [{**e, "timestamp": stamp} for e in events]
            await store.wait_change(seen, 30.0, durable=True)
            if session not in self.by_session:
                raise ApiError("SESSION_NOT_REGISTERED", session)

    def forget(self, session):
        self.by_session.pop(session, None)
