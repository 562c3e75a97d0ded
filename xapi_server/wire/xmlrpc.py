"""XML-RPC as xapi speaks it.

Decoding uses defusedxml: no DTDs, no entity expansion, so billion-laughs and external
entities are refused before anything is built. Encoding is xapi's compact form:
strings and ints as bare `<value>text</value>`, no whitespace between tags.
"""
from __future__ import annotations

import codecs
import functools
import re
from dataclasses import dataclass
from datetime import datetime

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

from ..datamodel.types import Row, format_datetime, parse_datetime
from . import (BATCH, EncodingCache, Event, Int32, InvalidValue, MalformedRequest,
               UnsupportedEncoding, batches, clean_text, decode_text, first_invalid_string,
               is_big, non_finite)

MAX_DEPTH = 64  # nesting of arrays/structs we accept in a request

# The encodings xapi's XML parser (xmlm) reads; any spelling Python knows for them is
# accepted (UTF-8, utf8, UTF_8, latin1 ...). Another declared encoding is refused with a
# fault rather than guessed at.
_READABLE = {"utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "iso8859-1", "ascii"}
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))
_DECLARED_ENCODING = re.compile(
    rb"[ \t\r\n]*<\?xml\b[^>]*?\bencoding[ \t\r\n]*=[ \t\r\n]*([\"'])(.*?)\1")


@dataclass
class XmlCall:
    method: str
    params: list
    invalid: InvalidValue | None = None


def body_codec(body: bytes) -> str:
    """The Python codec of an XML body: its byte-order mark, else its declaration,
    else UTF-8 (XML's default)."""
    for bom, codec in _BOMS:
        if body.startswith(bom):
            return codec
    declared = _DECLARED_ENCODING.match(body, 0, 512)
    if declared is None:
        return "utf-8"
    name = declared.group(2).decode("latin-1")
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        codec = None
    if codec not in _READABLE:
        raise UnsupportedEncoding(name[:100])
    return codec


def decode_call(body: bytes) -> XmlCall:
    """The <methodCall> in `body`, or MalformedRequest (or UnsupportedEncoding)."""
    text, had_invalid_bytes = decode_text(body, body_codec(body))
    try:
        # Parsing text, not bytes: expat then ignores the declared encoding.
        root = safe_et.fromstring(text.lstrip("\ufeff"), forbid_dtd=True)
    except DefusedXmlException as exc:
        raise MalformedRequest(f"forbidden XML construct: {type(exc).__name__}") from None
    except Exception as exc:  # expat errors: not well-formed ...
        raise MalformedRequest(f"XML parse error: {exc}") from None
    if root.tag != "methodCall":
        raise MalformedRequest("expected <methodCall>")
    name = root.find("methodName")
    if name is None or not (name.text or "").strip():
        raise MalformedRequest("missing <methodName>")
    params, problems = [], []
    container = root.find("params")
    if container is not None:
        for param in container.findall("param"):
            value = param.find("value")
            if value is None:
                raise MalformedRequest("<param> without <value>")
            params.append(_decode_value(value, 0, problems))
    if had_invalid_bytes:
        problems.insert(0, first_invalid_string(params, True))
    invalid = next(filter(None, problems), None)
    return XmlCall(name.text.strip(), params, invalid)


def _decode_value(node, depth, problems: list):
    """One <value>; a non-finite <double> is decoded but noted in `problems`."""
    if depth > MAX_DEPTH:
        raise MalformedRequest("values nested too deeply")
    children = list(node)
    if not children:
        return node.text or ""
    if len(children) != 1:
        raise MalformedRequest("<value> with more than one child")
    child = children[0]
    tag, text = child.tag, child.text or ""
    try:
        if tag == "string":
            return text
        if tag in ("int", "i4", "i8"):
            return int(text.strip())
        if tag == "boolean":
            if text.strip() not in ("0", "1"):
                raise ValueError(text)
            return text.strip() == "1"
        if tag == "double":
            number = float(text.strip())
            if bad := non_finite(number):
                problems.append(bad)
            return number
        if tag == "dateTime.iso8601":
            return parse_datetime(text)
        if tag == "nil":
            return None
        if tag == "base64":
            return text
    except Exception:
        raise MalformedRequest(f"bad <{tag}> value") from None
    if tag == "array":
        data = child.find("data")
        if data is None:
            raise MalformedRequest("<array> without <data>")
        return [_decode_value(v, depth + 1, problems) for v in data.findall("value")]
    if tag == "struct":
        result = {}
        for member in child.findall("member"):
            key, value = member.find("name"), member.find("value")
            if key is None or value is None:
                raise MalformedRequest("<member> needs <name> and <value>")
            result[key.text or ""] = _decode_value(value, depth + 1, problems)
        return result
    raise MalformedRequest(f"unknown value type <{tag}>")


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
# 10,000 VMs is 81 MB).
_records = EncodingCache(_encode_record)


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
    if _NEEDS_ESCAPE.search("".join(keys)):
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
