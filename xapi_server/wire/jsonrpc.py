"""JSON-RPC 1.0 and 2.0 as xapi speaks them (one call per body, `id` required)."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime

import orjson

from ..datamodel.types import Row, format_datetime
from . import (EncodingCache, Event, InvalidValue, MalformedRequest, batches, clean_text,
               decode_text, first_invalid_string, is_big, non_finite)


@dataclass(slots=True)
class JsonCall:
    method: str
    params: list
    id: object
    v2: bool
    invalid: InvalidValue | None = None


# Every digit made "0": a run of 19 digits is then a plain substring search, ten times
# cheaper than the regex \d{19} (3 us of a 150-byte call, tried at every position).
_DIGITS_AS_ZERO = bytes.maketrans(b"0123456789", b"0" * 10)
_LONG_DIGITS = b"0" * 19
# Only a \u escape of U+D800..U+DFFF can put a lone surrogate into a decoded string.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _plain_request(body: bytes):
    """The body parsed by orjson (C, ~10x faster than the json module for a small
    call), or None for anything it refuses: a BOM, bytes that are not UTF-8, a lone
    surrogate, NaN, Infinity or a number too big for a double, deep nesting, or no
    JSON at all. Those take the json module's way, which tells each as before; so does
    a run of 19 digits or more, as orjson reads an integer past 64 bits as a float.
    Whatever else orjson accepts, both read alike (tests/test_scale_jsonrpc.py)."""
    if _LONG_DIGITS in body.translate(_DIGITS_AS_ZERO):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def decode_call(body: bytes) -> JsonCall:
    request, text, had_invalid_bytes, problems = _plain_request(body), "", False, []
    if request is None:
        request, text, had_invalid_bytes = _checked_request(body, problems)
    if not isinstance(request, dict):
        raise MalformedRequest("the request must be a JSON object")
    version = request.get("jsonrpc")
    if version is not None and version != "2.0":
        raise MalformedRequest("Invalid field 'jsonrpc' in request body")
    v2 = version == "2.0"
    method = request.get("method")
    if not isinstance(method, str):
        raise MalformedRequest("Invalid field 'method' in request body")
    call_id = request.get("id")
    if type(call_id) is not int and (   # an int id (most clients) needs no more checks
            isinstance(call_id, bool) or not isinstance(call_id, (str, int)) or (
                isinstance(call_id, str) and clean_text(call_id) != call_id)):
        raise MalformedRequest("Invalid field 'id' in request body")  # we could not echo it
    params = request.get("params", None if v2 else ...)
    if params is ...:
        raise MalformedRequest("Invalid field 'params' in request body")
    if params is None and v2:
        params = []
    elif isinstance(params, dict) and v2:
        params = [params]
    elif not isinstance(params, list):
        raise MalformedRequest("Invalid field 'params' in request body")
    if had_invalid_bytes or (text and _SURROGATE_ESCAPE.search(text)):  # "": orjson read it
        problems.insert(0, first_invalid_string(params, had_invalid_bytes))
    invalid = next(filter(None, problems), None) if problems else None
    # An unknown method is named in the reply, which cannot carry a lone surrogate.
    return JsonCall(clean_text(method), params, call_id, v2, invalid)


def _checked_request(body: bytes, problems: list):
    """The json module's reading of a body orjson refused: (request, text, whether
    bytes were not valid), each non-finite number appended to `problems`."""
    text, had_invalid_bytes = decode_text(body)

    def number(literal: str) -> float:          # 1e999 is inf as surely as Infinity
        value = float(literal)
        if bad := non_finite(value):
            problems.append(bad)
        return value
    try:
        request = json.loads(text.lstrip("\ufeff"), parse_float=number, parse_constant=number)
    except RecursionError:
        raise MalformedRequest("JSON nested too deeply") from None
    except ValueError as exc:
        raise MalformedRequest(f"JSON parse error: {exc}") from None
    return request, text, had_invalid_bytes


# orjson (C): encodes a reply ten times faster than the json module and splices the
# cached encoding of each Record in without copying it through Python (Fragment).
# Dict, list, int and str subclasses are handed to _default (PASSTHROUGH_SUBCLASS):
# a Row is a dict subclass and must come from the cache.
_OPTIONS = orjson.OPT_PASSTHROUGH_SUBCLASS | orjson.OPT_PASSTHROUGH_DATETIME \
    | orjson.OPT_NON_STR_KEYS


def _default(value):
    if type(value) is Row:
        return orjson.Fragment(_records.get(value))
    if isinstance(value, datetime):
        return format_datetime(value)
    for plain in (dict, list, int, str):       # other subclasses (Int32 ...) as plain values
        if isinstance(value, plain):
            return plain(value)
    if isinstance(value, tuple):
        return list(value)
    return str(value)


def _dumps(value) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)


def _encode_record(record) -> bytes:
    # The Row itself as a plain map (no PASSTHROUGH_SUBCLASS: that would ask the cache).
    # Copied to bytes of its own size: orjson's result keeps the buffer it wrote into
    # (16 KiB for a 1 KiB VIF), so the cached encodings of 10,000 VMs' records, VBDs,
    # VIFs and metrics held 300 MiB more than their 80 MB after a full event.from.
    return bytes(memoryview(orjson.dumps(
        record, default=_default, option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS)))


_records = EncodingCache(_encode_record)


def _encode_event(event) -> tuple | None:
    """An Event whose last key is a Row snapshot as three pieces of bytes: its head
    `{"id":...,"ref":...,"snapshot":`, the same after the `},` that closes the event
    before it, and its snapshot's cached encoding (shared with the Row's entry, not a
    copy); the event is head, snapshot, `}`. None for anything else (a deleted object's
    event has no snapshot), which is then encoded whole."""
    if type(event) is not Event or not event or next(reversed(event)) != "snapshot" \
            or type(event["snapshot"]) is not Row:
        return None
    head = dict(event)
    del head["snapshot"]
    head = _dumps(head)[:-1] + (b',"snapshot":' if head else b'"snapshot":')
    return head, b"}," + head, _records.get(event["snapshot"])


_events = EncodingCache(_encode_event)
# What holds this codec's kept pieces (a gzip reply compresses those once: deflate.py).
CACHES = (_records, _events)


def _event_pieces(batch: list) -> list[bytes]:
    """Items of an array holding Events, comma-separated: each cached Event is two
    pieces (its head, with the `}` closing the one before, and its snapshot), nothing
    joined here and nothing made per call for an unchanged object."""
    pieces, after = [], b""       # after: what the item before left to write
    for item, known in zip(batch, _events.get_each(batch)):
        if known is None:
            pieces.append(after + _dumps(item))
            after = b","
        elif after == b"},":
            pieces += (known[1], known[2])
        else:
            pieces += (after + known[0], known[2])
            after = b"},"
    if after == b"},":
        pieces.append(b"}")
    return pieces


def _batch_pieces(batch: list, pairs: bool) -> list[bytes]:
    """Items of a map (key, value pairs) or an array, comma-separated, without brackets.
    Records (get_all_records) are their cached encodings as they are, not joined here:
    the writer joins what it sends, so the 30 MB of 10,000 VMs are copied once."""
    if pairs and all(type(v) is Row for _, v in batch):
        get, pieces = _records.get, []
        for k, v in batch:
            pieces += (b',' + _dumps(k) + b":" if pieces else _dumps(k) + b":", get(v))
        return pieces
    if not pairs and type(batch[0]) is Event:
        return _event_pieces(batch)
    return [_dumps(dict(batch) if pairs else batch)[1:-1]]


def _value_chunks(value, top: bool = True):
    """JSON of `value` in pieces: a big map or array a BATCH of items at a time; at the
    top, a small map's big values (event.from's events) the same way."""
    t = type(value)
    if is_big(value):
        opening, closing = (b"{", b"}") if t is dict else (b"[", b"]")
        yield opening
        items = list(value.items()) if t is dict else value
        for n, batch in enumerate(batches(items)):
            if n:
                yield b","
            yield from _batch_pieces(batch, t is dict)
        yield closing
    elif top and t is dict and any(is_big(v) for v in value.values()):
        for n, (key, item) in enumerate(value.items()):
            yield (b"," if n else b"{") + _dumps(key) + b":"
            yield from _value_chunks(item, False)
        yield b"}"
    else:
        yield _dumps(value)


def success_chunks(call: JsonCall, value):
    """The reply to `call` as pieces of bytes, the big parts made a slice at a time."""
    if call.v2:
        yield b'{"jsonrpc":"2.0","result":'
    else:
        yield b'{"result":'
    yield from _value_chunks(value)
    yield (b',"id":' if call.v2 else b',"error":null,"id":') + _dumps(call.id) + b"}"


def encode_small(call: JsonCall, value) -> bytes | None:
    """The reply to `call` in one orjson call, byte for byte what success_chunks makes,
    when nothing in `value` is worth encoding in slices; None when something is. A small
    call (host.get_record) so skips the generators and the slicing."""
    if is_big(value) or (type(value) is dict and any(map(is_big, value.values()))):
        return None
    if call.v2:
        return _dumps({"jsonrpc": "2.0", "result": value, "id": call.id})
    return _dumps({"result": value, "error": None, "id": call.id})


def encode_success(call: JsonCall, value) -> bytes:
    return b"".join(success_chunks(call, value))


def encode_failure(call: JsonCall, description: list) -> bytes:
    description = [clean_text(str(d)) for d in description]  # an error always goes out
    if call.v2:
        error = {"code": 1, "message": description[0], "data": list(description[1:])}
        return _dumps({"jsonrpc": "2.0", "error": error, "id": call.id})
    return _dumps({"result": None, "error": list(description), "id": call.id})
