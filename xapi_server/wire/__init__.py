"""Wire codecs: bytes in, (method, params) out; results and errors back to bytes.

`xmlrpc` and `jsonrpc` share the helpers here. Nothing in this package knows about
sessions or classes; the dispatcher does.
"""
from __future__ import annotations

import re


class MalformedRequest(Exception):
    """The body is not a request at all (bad XML/JSON, missing fields): HTTP 500 as xapi."""


class Int32(int):
    """An int xapi sends as <i4> in XML-RPC (only event.from's valid_ref_counts)."""


_DECLARED_ENCODING = re.compile(rb"^\s*<\?xml[^>]*encoding=[\"']([A-Za-z0-9._-]+)")


def repair_utf8(body: bytes, xml: bool) -> tuple[bytes, bool]:
    """Return (body, had_invalid_utf8). Invalid sequences become U+FFFD so that the
    request can still be parsed and the offending parameter reported by name."""
    if xml:
        declared = _DECLARED_ENCODING.match(body)
        if declared and declared.group(1).lower().replace("_", "-") not in (b"utf-8", b"utf8"):
            return body, False  # another declared encoding: the XML parser handles it
    try:
        body.decode("utf-8")
        return body, False
    except UnicodeDecodeError:
        return body.decode("utf-8", "replace").encode("utf-8"), True


def first_replaced_string(value):
    """The first string inside `value` that holds U+FFFD (from repair_utf8), or None."""
    if isinstance(value, str):
        return value if "\ufffd" in value else None
    if isinstance(value, dict):
        items = [*value.keys(), *value.values()]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        return None
    for item in items:
        found = first_replaced_string(item)
        if found is not None:
            return found
    return None


class EncodingCache:
    """The encoded text of store Records, keyed by object identity. An entry keeps its
    Record alive, so an id is never reused while its entry exists; the whole cache
    is dropped when it grows past `limit` (old records are simply re-encoded)."""

    def __init__(self, encode, limit: int = 20000):
        self._encode, self._limit, self._map = encode, limit, {}

    def get(self, record) -> str:
        entry = self._map.get(id(record))
        if entry is not None and entry[0] is record:
            return entry[1]
        text = self._encode(record)
        if len(self._map) >= self._limit:
            self._map.clear()
        self._map[id(record)] = (record, text)
        return text
