"""How records become database rows and back, the same for every backend.

One table per persistent class, one column per stored field holding the value as JSON
text, `ref` as the key. Values are encoded and checked on the caller's side
(`row_values`), before a change joins a commit batch: a value refused by the writer
would fail the whole batch, that is every other caller's writes in it.
"""
from __future__ import annotations

import functools
import json
from datetime import datetime

import orjson

from ..datamodel import CLASSES, Map, Prim, Set
from ..datamodel.types import Row, format_datetime, parse_datetime


def stored_fields(c):
    return [f for f in c.fields if f.derived_from is None]


def stored_classes():
    """The classes that have a table."""
    return [c for c in CLASSES.values() if c.persist and c.stored]


def _json_default(value):
    if isinstance(value, datetime):
        return format_datetime(value)
    raise TypeError(type(value).__name__)


def encode(value) -> str:
    # orjson writes the same compact text several times faster (a write encodes every
    # column of the row); what it refuses (lone surrogates, ints past 64 bits) goes the
    # json module's way, to be judged by storable_text as before.
    try:
        return orjson.dumps(value, default=_json_default,
                            option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:
        return json.dumps(value, default=_json_default, ensure_ascii=False,
                          separators=(",", ":"))


class Unstorable(ValueError):
    """A value the database cannot hold (a string that is no valid Unicode)."""
    def __init__(self, where: str, reason: str):
        super().__init__(f"{where}: {reason}")
        self.where, self.reason = where, reason


def storable_text(text: str, where: str) -> str:
    """`text` if every backend can store it as UTF-8 text, else Unstorable. JSON
    escapes control characters, so only raw keys (refs, meta) can meet the NUL
    character PostgreSQL's text refuses."""
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise Unstorable(where, f"not valid Unicode at character {exc.start}") from None
    if "\0" in text:
        raise Unstorable(where, f"NUL character at {text.index(chr(0))}")
    return text


def row_values(cname: str, ref: str, record: dict) -> list[str]:
    """The column values of a `put` (ref first), encoded and checked on the caller's
    side, so that the writer only runs SQL on text it can store."""
    values = [storable_text(ref, f"{cname} ref")]
    for f in stored_fields(CLASSES[cname]):
        try:
            text = encode(record.get(f.name))
        except (TypeError, ValueError) as exc:   # a programming error: a non-JSON value
            raise TypeError(f"{cname}.{f.name}: cannot store {exc}") from None
        values.append(storable_text(text, f"{cname}.{f.name}"))
    return values


def decode(ftype, text):
    """JSON column text back to the internal value of `ftype` (datetimes re-parsed)."""
    try:
        value = orjson.loads(text)      # several times faster: a restart reads every row
    except orjson.JSONDecodeError:      # what only the json module reads (NaN ...)
        value = json.loads(text)
    return _revive(ftype, value) if _holds_datetime(ftype) else value


@functools.cache
def _holds_datetime(ftype) -> bool:
    if isinstance(ftype, Prim):
        return ftype.name == "datetime"
    if isinstance(ftype, Set):
        return _holds_datetime(ftype.elem)
    if isinstance(ftype, Map):
        return _holds_datetime(ftype.value)
    return False


# Stored datetimes repeat (the epoch for "never", clones made in the same second); a
# datetime is immutable, so one parse of each text is shared.
_parse_stored_datetime = functools.lru_cache(maxsize=4096)(parse_datetime)


def _revive(ftype, value):
    if isinstance(ftype, Prim) and ftype.name == "datetime" and isinstance(value, str):
        return _parse_stored_datetime(value)
    if isinstance(ftype, Set) and isinstance(value, list):
        return [_revive(ftype.elem, v) for v in value]
    if isinstance(ftype, Map) and isinstance(value, dict):
        return {k: _revive(ftype.value, v) for k, v in value.items()}
    return value


def decode_row(fields, texts) -> dict:
    """A record from a row's column texts (NULL: a column added after the row)."""
    return {f.name: f.default_value() if text is None else decode(f.type, text)
            for f, text in zip(fields, texts)}


def decode_rows(fields, rows) -> dict[str, dict]:
    """{ref: record} of rows (ref, *column texts), as decode_row would make them (as
    Rows, which the store takes as they are).

    A restart reads every row of every table: parsing each row's columns as one JSON
    array (one orjson call, not one per column) and reviving only the columns that can
    hold datetimes makes loading 10,000 VMs several times faster. A row with a NULL
    column, or one that does not read as exactly one value per column, takes
    decode_row's way."""
    names = [f.name for f in fields]
    revived = [(i, f.type) for i, f in enumerate(fields) if _holds_datetime(f.type)]
    width = len(fields)
    records = {}
    for row in rows:
        texts = row[1:]
        values = None
        if None not in texts:
            try:
                values = orjson.loads("[" + ",".join(texts) + "]")
            except orjson.JSONDecodeError:
                pass
        if values is None or len(values) != width:
            records[row[0]] = decode_row(fields, texts)
            continue
        for i, ftype in revived:
            values[i] = _revive(ftype, values[i])
        records[row[0]] = Row(zip(names, values))   # the store keeps it as it is
    return records


def quote(name: str) -> str:
    """An SQL identifier (class and field names keep their case)."""
    return '"' + name.replace('"', '""') + '"'
