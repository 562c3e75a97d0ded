"""Wire codecs: bytes in, (method, params) out; results and errors back to bytes.

`xmlrpc` and `jsonrpc` share the helpers here. Nothing in this package knows about
sessions or classes; the dispatcher does.

Every decoded value is checked here, once, before anything can store it: strings must be
valid Unicode (no bytes that were not UTF-8, no lone UTF-16 surrogates, map keys included)
and floats finite. The first offending value travels with the call as `InvalidValue`; the
dispatcher answers it with xapi's INVALID_VALUE after the method and parameter count are
known to be right (xapi's order).
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass
from operator import attrgetter, is_


class MalformedRequest(Exception):
    """The body is not a request at all (bad XML/JSON, missing fields): HTTP 500 as xapi."""


class UnsupportedEncoding(Exception):
    """An XML body declares an encoding xapi's parser does not read: a XenAPI fault."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


class Int32(int):
    """An int xapi sends as <i4> in XML-RPC (only event.from's valid_ref_counts)."""


class Event(dict):
    """One event of event.from, its keys in xapi's order; a live object's snapshot (a
    store Row) comes last. The events module hands out the same Event for as long as its
    object is unchanged, so each codec keeps the encoding of what precedes the snapshot
    per Event (EncodingCache) and splices the Row's own cached encoding after it: a full
    event.from of 10,000 VMs encodes nothing anew. Never changed in place."""

    __slots__ = ()


INVALID_STRING = "Invalid UTF-8 string in parameter"   # xapi's own text
NON_FINITE_FLOAT = "Non-finite float in parameter"     # NaN/Infinity: strict JSON has none


@dataclass(frozen=True)
class InvalidValue:
    """The first value of a request that must not reach the store, as it can be shown."""
    reason: str
    value: str


def decode_text(body: bytes, codec: str = "utf-8") -> tuple[str, bool]:
    """(text, had_invalid_bytes). Invalid sequences become U+FFFD so that the request
    can still be parsed and the offending parameter reported."""
    try:
        return body.decode(codec), False
    except UnicodeDecodeError:
        return body.decode(codec, "replace"), True


_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_OR_REPLACED = re.compile("[\ud800-\udfff\ufffd]")


def clean_text(text: str) -> str:
    """`text` with lone surrogates (which no UTF-8 reply can carry) shown as U+FFFD."""
    if text.isascii():      # most text, and no surrogate can be in it
        return text
    return _SURROGATE.sub("\ufffd", text)


def non_finite(value: float) -> InvalidValue | None:
    return None if math.isfinite(value) else InvalidValue(NON_FINITE_FLOAT, repr(value))


def first_invalid_string(value, had_invalid_bytes: bool) -> InvalidValue | None:
    """The first string inside `value` (map keys too) with a lone surrogate or, when the
    body had invalid bytes, a U+FFFD put there by `decode_text`."""
    pattern = _SURROGATE_OR_REPLACED if had_invalid_bytes else _SURROGATE
    stack = [value]
    while stack:                      # iterative: nesting depth is the decoders' business
        item = stack.pop()
        if isinstance(item, str):
            if pattern.search(item):
                return InvalidValue(INVALID_STRING, clean_text(item))
        elif isinstance(item, dict):
            for key, sub in reversed(item.items()):
                stack += (sub, key)
        elif isinstance(item, (list, tuple)):
            stack += reversed(item)
    return None


# Items of a big map or array encoded at a time: a reply is made in slices of this many,
# so that the caller can give other clients a turn between two slices. Small enough that
# a slice of records never encoded before (about 100 us each in XML) stays a few ms.
BATCH = 64


def is_big(value) -> bool:
    """A map or array worth encoding in slices."""
    return type(value) in (dict, list, tuple) and len(value) > BATCH


def batches(items: list):
    for start in range(0, len(items), BATCH):
        yield items[start:start + BATCH]


class EncodingCache:
    """The encoding of store Records, keyed by object identity. An entry keeps its
    Record alive, so an id is never reused while its entry exists.

    The store replaces a Record on every change, so entries of replaced (or deleted)
    Records go stale; when the cache has doubled since the last sweep, entries whose
    Record nothing but the cache holds any more are dropped. The cache so stays within
    about twice the live Records it has seen, whatever their number.

    Records and encodings are kept in two dicts by the same id, not as a (record,
    encoding) pair per entry: a pair holding a Record is an object the cyclic garbage
    collector tracks, so a full read of 10,000 VMs left some 45,000 more for every
    later full collection to walk (one landed on a later call: ~0.3 s). Dict entries
    and tuples of bytes are not tracked."""

    # sys.getrefcount of a Record only the cache holds: its entry, and the argument.
    _ONLY_CACHED = 2

    def __init__(self, encode, floor: int = 4096):
        self._encode, self._kept, self._encoded = encode, {}, {}
        self._floor = self._sweep_at = floor
        # id -> piece, for every bytes piece of a kept encoding: lets a writer tell a
        # cached piece (worth compressing once, wire/deflate.py) from one made per reply.
        # Made at the first holds() (a server that never sends gzip never pays for it).
        self._pieces: dict[int, bytes] | None = None

    def get(self, record):
        key = id(record)
        if self._kept.get(key) is record:
            return self._encoded[key]
        encoded = self._encode(record)
        if len(self._kept) >= self._sweep_at:
            self.sweep()
        self._kept[key], self._encoded[key] = record, encoded
        if self._pieces is not None:
            self._remember(encoded)
        return encoded

    def _remember(self, encoded):
        for piece in encoded if type(encoded) is tuple else (encoded,):
            if type(piece) is bytes:
                self._pieces[id(piece)] = piece

    def holds(self, piece) -> bool:
        """Whether `piece` (that very object) is part of a kept encoding."""
        if self._pieces is None:
            self._index_pieces()
        return self._pieces.get(id(piece)) is piece

    def _index_pieces(self):
        self._pieces = {}
        for encoded in self._encoded.values():
            self._remember(encoded)

    def get_each(self, records) -> list:
        """[get(r) for r in records], without a method call per hit: a reply of 40,000
        cached events spends most of its time in look-ups. When every one is a hit (a
        reply read again), the look-ups and checks are loops in C."""
        keys = list(map(id, records))
        if all(map(is_, map(self._kept.get, keys), records)):
            return list(map(self._encoded.__getitem__, keys))
        return [self.get(record) for record in records]

    def sweep(self):
        kept, encoded = self._kept, self._encoded
        alive = [key for key in kept if sys.getrefcount(kept[key]) > self._ONLY_CACHED]
        self._kept = {key: kept[key] for key in alive}
        self._encoded = {key: encoded[key] for key in alive}
        self._sweep_at = max(self._floor, 2 * len(alive))
        if self._pieces is not None:
            self._index_pieces()

    def __len__(self):
        return len(self._kept)


class RowSlotCache:
    """The encoding of store Rows, as EncodingCache, kept in a slot of each Row (named
    `slot`) instead: a hit is an attribute read, where EncodingCache looks the Row up
    twice by identity. At 10,000 Rows those look-ups miss the CPU's caches: 3.7-5.3 ms
    per get_all_records against 0.4-0.6 for the attribute reads.

    holds() asks `_owners` (id of an encoding -> its Row), which keeps the Rows alive
    as EncodingCache does, and is swept as it is. The encodings stay plain bytes: with
    a bytes subclass (told by its type) the writer's joins of 10,000 of them took 10-13
    ms instead of 7-8 (join takes a subclass through the buffer protocol)."""

    _ONLY_CACHED = EncodingCache._ONLY_CACHED

    def __init__(self, encode, slot: str, floor: int = 4096):
        self._encode, self._slot = encode, slot
        self._read = attrgetter(slot)
        self._owners: dict = {}
        self._floor = self._sweep_at = floor

    def get(self, record):
        try:
            return self._read(record)
        except AttributeError:          # not encoded yet
            encoded = self._encode(record)
            setattr(record, self._slot, encoded)
            if len(self._owners) >= self._sweep_at:
                self.sweep()
            self._owners[id(encoded)] = record
            return encoded

    def get_each(self, records) -> list:
        try:
            return list(map(self._read, records))
        except AttributeError:
            return [self.get(record) for record in records]

    def holds(self, piece) -> bool:
        """Whether `piece` (that very object) is the encoding of a kept Row."""
        owner = self._owners.get(id(piece))
        return owner is not None and self._read(owner) is piece

    def sweep(self):
        owners = self._owners
        self._owners = {key: owners[key] for key in owners
                        if sys.getrefcount(owners[key]) > self._ONLY_CACHED}
        self._sweep_at = max(self._floor, 2 * len(self._owners))

    def __len__(self):
        return len(self._owners)
