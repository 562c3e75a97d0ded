"""XML-RPC as xapi speaks it.

Decoding (xmlrpc_decode.py) uses defusedxml: no DTDs, no entity expansion, so
billion-laughs and external entities are refused before anything is built. Encoding is
xapi's compact form: strings and ints as bare `<value>text</value>`, no whitespace
between tags.
"""
from __future__ import annotations

import functools
import re
from datetime import datetime

from ..datamodel.types import Row, format_datetime
from . import (BATCH, EncodingCache, Event, Int32, RowSlotCache, batches, clean_text,
               is_big)
# Decoding lives in xmlrpc_decode.py; its names are this codec's too (xmlrpc.decode_call).
from .xmlrpc_decode import MAX_DEPTH, XmlCall, body_codec, decode_call

__all__ = ["CACHES", "MAX_DEPTH", "XmlCall", "body_codec", "decode_call", "encode_bare",
           "encode_failure", "encode_success", "encode_value", "success_chunks",
           "success_runs"]

# -- encoding ---------------------------------------------------------------------

# XML 1.0 cannot carry most control characters; xapi drops them too.
_DROP = {c: None for c in range(32) if c not in (9, 10, 13)}
_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", **_DROP})


def _escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _encode(value, out: list):
    t = type(value)
    if t is str:
        out.append(f"<value>{value.translate(_ESCAPES)}</value>")
    elif t is bool:
        out.append("<value><boolean>1</boolean></value>" if value
                   else "<value><boolean>0</boolean></value>")
    elif t is int:
        out.append(f"<value>{value}</value>")
    elif t is Row:
        out.append(_records.get(value).decode())
    elif t is dict or t is Event:
        _encode_struct(value, out)
    elif t is list or t is tuple:
        out.append("<value><array><data>")
        for item in value:
            _encode(item, out)
        out.append("</data></array></value>")
    elif t is float:
        out.append("<value><double>%.16g</double></value>" % value)
    elif t is Int32:
        out.append(f"<value><i4>{int(value)}</i4></value>")
    elif isinstance(value, datetime):
        out.append(f"<value><dateTime.iso8601>{format_datetime(value)}</dateTime.iso8601></value>")
    elif value is None:
        out.append("<value></value>")
    else:
        _encode(str(value), out)


@functools.lru_cache(maxsize=8192, typed=True)   # typed: True and 1 are two keys
def _member_head(key) -> str:
    """"<member><name>key</name>" as one piece: field names repeat in every record and
    event, so they are escaped once (free-text map keys fall out of the bounded memo)."""
    return f"<member><name>{_escape(str(key))}</name>"


def _encode_struct(value, out: list):
    out.append("<value><struct>")
    for key, item in value.items():
        out.append(_member_head(key))
        _encode(item, out)
        out.append("</member>")
    out.append("</struct></value>")


def _encode_record(record) -> bytes:
    out: list = []
    _encode_struct(record, out)
    return "".join(out).encode()


# Each Record's encoding is kept as bytes: a reply of many records is then a join of
# ready pieces, with no second pass turning text into bytes (VM.get_all_records of
# 10,000 VMs is 81 MB). Kept in the Row itself (Row.xml_encoding).
_records = RowSlotCache(_encode_record, "xml_encoding")


def _encode_event(event) -> tuple | None:
    """An Event whose last key is a Row snapshot as three pieces of bytes: its XML up
    to the snapshot's value, the same after the _EVENT_TAIL of the event before it, and
    its snapshot's cached encoding (shared with the Row's entry, not a copy); the event
    is head, snapshot, _EVENT_TAIL. None for anything else (a deleted object's event
    has no snapshot), which is then encoded as any map."""
    if type(event) is not Event or not event or next(reversed(event)) != "snapshot" \
            or type(event["snapshot"]) is not Row:
        return None
    out = ["<value><struct>"]
    for key, item in event.items():
        out.append(_member_head(key))
        if key != "snapshot":
            _encode(item, out)
            out.append("</member>")
    head = "".join(out).encode()
    return head, _EVENT_TAIL + head, _records.get(event["snapshot"])


_EVENT_TAIL = b"</member></struct></value>"
_events = EncodingCache(_encode_event)
# What holds this codec's kept pieces (a gzip reply compresses those once: deflate.py).
CACHES = (_records, _events)


def _event_pieces(batch: list) -> list[bytes]:
    """The XML of array items holding Events: each cached Event is two pieces (its
    head, with the tail of the Event before, and its snapshot), nothing made per call
    for an unchanged object; other items as _encode_bytes makes them."""
    out: list = []
    text: list = []
    open_event = False           # the Event before still needs its tail
    for item, known in zip(batch, _events.get_each(batch)):
        if known is None:
            if open_event:
                out.append(_EVENT_TAIL)
                open_event = False
            _encode_bytes(item, out, text)
            continue
        if text:
            out.append("".join(text).encode())
            text.clear()
        out += (known[1] if open_event else known[0], known[2])
        open_event = True
    if open_event:
        out.append(_EVENT_TAIL)
    if text:
        out.append("".join(text).encode())
    return out


_HEAD = '<?xml version="1.0"?><methodResponse><params><param>'
_TAIL = "</param></params></methodResponse>"


def encode_value(value) -> str:
    out: list = []
    _encode(value, out)
    return "".join(out)


_NEEDS_ESCAPE = re.compile('[&<>"\x00-\x08\x0b\x0c\x0e-\x1f]')


# The bytes _NEEDS_ESCAPE finds: & < > " and the control characters XML cannot carry.
_UNSAFE_BYTES = b'&<>"' + bytes(c for c in range(32) if c not in (9, 10, 13))


def _plain(text: str) -> bool:
    """Whether `text` needs no escaping: one pass in C over its UTF-8 bytes, on a batch
    of refs several times faster than the regular expression, and 4-6x faster than
    str.isprintable with four `in` scans (2 ms of a 10,000-VM get_all_records)."""
    data = text.encode("utf-8", "surrogatepass")   # a lone surrogate fails later, as before
    return len(data.translate(None, _UNSAFE_BYTES)) == len(data)


def _key_head(key) -> str:
    """"<member><name>key</name>" for a key of a big map: refs, each seen once per
    reply, which a memo of field names would only churn (10,000 refs cycling through
    an 8,192-entry memo missed every time). Escaped only when there is something to
    escape."""
    text = key if type(key) is str else str(key)
    if _NEEDS_ESCAPE.search(text):
        text = _escape(text)
    return f"<member><name>{text}</name>"


def _encode_bytes(value, out: list, text: list):
    """`value` as pieces of bytes in `out`: each Record's cached encoding as it is; what
    lies between two Records (containers' tags, an event's id, class, ref ...) is
    gathered as text in `text` and turned into bytes once, when the next Record comes
    (or at the end: see _pieces)."""
    t = type(value)
    if t is Row:
        if text:
            out.append("".join(text).encode())
            text.clear()
        out.append(_records.get(value))
    elif t is Event and (known := _events.get(value)) is not None:
        if text:
            out.append("".join(text).encode())
            text.clear()
        out += (known[0], known[2], _EVENT_TAIL)
    elif t is dict or t is Event:
        text.append("<value><struct>")
        for key, item in value.items():
            text.append(_member_head(key))
            _encode_bytes(item, out, text)
            text.append("</member>")
        text.append("</struct></value>")
    elif t is list or t is tuple:
        text.append("<value><array><data>")
        for item in value:
            _encode_bytes(item, out, text)
        text.append("</data></array></value>")
    else:
        _encode(value, text)


def _pieces(items, pairs: bool) -> list[bytes]:
    """The XML of a map's (key, value) pairs or of an array's items, as pieces of bytes
    that are not joined here: the writer joins what it sends (one copy of the reply)."""
    if not pairs and type(items[0]) is Event:                # event.from
        return _event_pieces(items)
    out: list = []
    text: list = []
    for entry in items:
        if pairs:
            text.append(_key_head(entry[0]))
            _encode_bytes(entry[1], out, text)
            text.append("</member>")
        else:
            _encode_bytes(entry, out, text)
    if text:
        out.append("".join(text).encode())
    return out


def _map_pieces(keys: list, values: list) -> list[bytes]:
    """A batch of a big map's keys and their values (no (key, value) tuples made: a
    10,000-entry map's tuples set off the garbage collector)."""
    if set(map(type, values)) == {Row}:              # get_all_records
        return _record_pieces(keys, values)
    return _pieces(list(zip(keys, values)), True)


def _record_pieces(keys: list, records: list) -> list[bytes]:
    """A batch of refs and their Records as two pieces a record: the </member> of the
    one before with this one's name, then its cached encoding. The names are made and
    encoded as one string and split (refs need no escaping, which one search of the
    batch tells), the encodings looked up in one call: per record, this was half the
    CPU of assembling VM.get_all_records of 10,000 VMs."""
    keys = [key if type(key) is str else str(key) for key in keys]
    if not _plain("".join(keys)):
        keys = [_escape(key) for key in keys]       # the NUL split on below is dropped
    heads = ("<member><name>" + "</name>\0</member><member><name>".join(keys)
             + "</name>").encode().split(b"\0")
    out: list = [None] * (2 * len(heads))
    out[0::2] = heads
    out[1::2] = _records.get_each(records)
    out.append(b"</member>")
    return out


_SUCCESS_HEAD = (_HEAD + "<value><struct><member><name>Status</name><value>Success</value>"
                 "</member><member><name>Value</name>").encode()
_SUCCESS_TAIL = ("</member></struct></value>" + _TAIL).encode()


def _value_runs(value, top: bool = True):
    """XML of `value` as runs (lists) of pieces: a big map or array a BATCH of items
    at a time; at the top, a small map's big values (event.from's events) the same way.
    Runs, not single pieces: the writer takes a whole batch in one step (20,000 pieces
    one at a time through two generators cost a third of assembling a 10,000-VM reply)."""
    t = type(value)
    if is_big(value) and t is dict:
        yield [b"<value><struct>"]
        keys, values = list(value), list(value.values())
        for start in range(0, len(keys), BATCH):
            yield _map_pieces(keys[start:start + BATCH], values[start:start + BATCH])
        yield [b"</struct></value>"]
    elif is_big(value):
        yield [b"<value><array><data>"]
        for batch in batches(value):
            yield _pieces(batch, False)
        yield [b"</data></array></value>"]
    elif top and t is dict and any(is_big(v) for v in value.values()):
        yield [b"<value><struct>"]
        for key, item in value.items():
            yield [_member_head(key).encode()]
            yield from _value_runs(item, False)
            yield [b"</member>"]
        yield [b"</struct></value>"]
    else:
        yield [b"".join(_pieces([value], False))]


def success_runs(value):
    """The reply as runs (lists) of pieces of bytes, the big parts made a slice at a
    time."""
    yield [_SUCCESS_HEAD]
    yield from _value_runs(value)
    yield [_SUCCESS_TAIL]


def success_chunks(value):
    """The reply as pieces of bytes."""
    for run in success_runs(value):
        yield from run


def encode_success(value) -> bytes:
    return b"".join(success_chunks(value))


def encode_failure(description: list) -> bytes:
    out = [_HEAD, "<value><struct><member><name>Status</name><value>Failure</value></member>"
                  "<member><name>ErrorDescription</name>"]
    _encode([clean_text(str(d)) for d in description], out)  # an error always goes out
    out.append("</member></struct></value>")
    out.append(_TAIL)
    return "".join(out).encode()


def encode_bare(value) -> bytes:
    """A response without the Status wrapper (only system.listMethods uses it)."""
    out = [_HEAD]
    _encode(value, out)
    out.append(_TAIL)
    return "".join(out).encode()
