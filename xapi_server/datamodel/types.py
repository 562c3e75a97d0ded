"""XenAPI types, parsed from the notation xapi's documentation uses.

`parse("(string -> VM ref) map")` gives `Map(String, Ref("VM"))`. Each type knows its
zero value (what a field holds when nothing was said) and how to turn a decoded wire
value into the internal value (`unmarshal`), raising `TypeMismatch` on a bad one.

Internal values: str, int, float, bool, `datetime` (UTC), list (sets), dict (maps),
dict (records). Refs and enums are plain strings.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone

NULL_REF = "OpaqueRef:NULL"
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class Row(dict):
    """A stored object's fields. The store never changes a Record in place (every
    change makes a new one), so the wire layer may cache a record's encoding for as
    long as it holds that very object.

    `xml_encoding`, once set, is that cache for XML-RPC (wire/xmlrpc.py): read as an
    attribute, the 10,000 encodings of VM.get_all_records took a tenth of the time of
    looking each Row up by identity; it dies with its Row. `Row(row)` does not copy it."""

    __slots__ = ("xml_encoding",)


class TypeMismatch(Exception):
    """A wire value does not fit the declared type."""


class BadEnum(Exception):
    """A string that is not one of the enum's values."""

    def __init__(self, enum: str, value: str):
        super().__init__(f"{value!r} is not a valid {enum}")
        self.enum, self.value = enum, value


_INT64 = (-(2**63), 2**63 - 1)


def parse_datetime(text: str) -> datetime:
    """Accept xapi's compact form, RFC 3339 with dashes, and zone-less values (UTC)."""
    t = text.strip()
    if len(t) == 18 and t[8] == "T" and t[17] == "Z" and t[11] == t[14] == ":" \
            and (t[:8] + t[9:11] + t[12:14] + t[15:17]).isdigit():
        # The form format_datetime writes (every stored datetime): read directly, as
        # strptime costs tens of microseconds and a restart reads tens of thousands.
        try:
            return datetime(int(t[0:4]), int(t[4:6]), int(t[6:8]), int(t[9:11]),
                            int(t[12:14]), int(t[15:17]), tzinfo=timezone.utc)
        except ValueError:
            pass    # not digits, or out of range: the general way says why
    for fmt in ("%Y%m%dT%H:%M:%SZ", "%Y%m%dT%H:%M:%S", "%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S"):
        try:
            return datetime.strptime(t, fmt).replace(tzinfo=timezone.utc)
        except ValueError:
            pass
    try:
        value = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError as exc:
        raise TypeMismatch(f"not a datetime: {text!r}") from exc
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def format_datetime(value: datetime) -> str:
    """UTC values end in Z; a value with another offset keeps it (+HH:MM), as xapi."""
    offset = value.utcoffset()
    if offset is None or not offset:
        return value.strftime("%Y%m%dT%H:%M:%SZ")
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return value.strftime("%Y%m%dT%H:%M:%S") + "%s%02d:%02d" % (sign, *divmod(abs(minutes), 60))


@dataclass(frozen=True)
class Type:
    def zero(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def unmarshal(self, value):  # pragma: no cover - overridden
        raise NotImplementedError

    def db_string(self, value) -> str:
        """The string form `get_all_records_where` compares against (xapi's DB form)."""
        return str(value)


@dataclass(frozen=True)
class Prim(Type):
    name: str  # string | int | float | bool | datetime | void

    def __str__(self):
        return self.name

    def zero(self):
        return {"string": "", "int": 0, "float": 0.0, "bool": False,
                "datetime": EPOCH, "void": ""}[self.name]

    def unmarshal(self, value):
        n = self.name
        if n == "string":
            if isinstance(value, str):
                return value
        elif n == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                result = value
            elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
                result = int(value)
            else:
                raise TypeMismatch(f"expected an int, got {value!r}")
            if not _INT64[0] <= result <= _INT64[1]:
                raise TypeMismatch(f"int out of 64-bit range: {value!r}")
            return result
        elif n == "float":
            if isinstance(value, (int, float, str)) and not isinstance(value, bool):
                try:
                    result = float(value)
                except (ValueError, OverflowError):   # "x", 10**400
                    result = math.nan
                if math.isfinite(result):   # NaN/Infinity ("nan", "1e999") is no number to store
                    return result
        elif n == "bool":
            if isinstance(value, bool):
                return value
        elif n == "datetime":
            if isinstance(value, datetime):
                return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
            if isinstance(value, str):
                return parse_datetime(value)
        elif n == "void":
            return value
        raise TypeMismatch(f"expected {n}, got {type(value).__name__}")

    def db_string(self, value) -> str:
        if self.name == "bool":
            return "true" if value else "false"
        if self.name == "datetime":
            return format_datetime(value)
        if self.name == "float":
            return "%.16g" % value
        return str(value)


@dataclass(frozen=True)
class Ref(Type):
    cls: str

    def __str__(self):
        return f"{self.cls} ref"

    def zero(self):
        return NULL_REF

    def unmarshal(self, value):
        if isinstance(value, str):
            return value
        raise TypeMismatch(f"expected a {self.cls} ref, got {type(value).__name__}")


@dataclass(frozen=True)
class Enum(Type):
    name: str
    values: tuple

    def __str__(self):
        return f"enum {self.name}"

    def zero(self):
        return self.values[0]

    def unmarshal(self, value):
        if not isinstance(value, str):
            raise TypeMismatch(f"expected enum {self.name}, got {type(value).__name__}")
        if value in self.values:
            return value
        # xapi matches enum strings case-insensitively on input.
        for candidate in self.values:
            if candidate.lower() == value.lower():
                return candidate
        raise BadEnum(self.name, value)


@dataclass(frozen=True)
class Set(Type):
    elem: Type

    def __str__(self):
        return f"{self.elem} set"

    def zero(self):
        return []

    def unmarshal(self, value):
        if not isinstance(value, (list, tuple)):
            raise TypeMismatch(f"expected an array, got {type(value).__name__}")
        return [self.elem.unmarshal(v) for v in value]

    def db_string(self, value) -> str:
        return "(" + " ".join("'%s'" % self.elem.db_string(v) for v in value) + ")"


@dataclass(frozen=True)
class Map(Type):
    key: Type
    value: Type

    def __str__(self):
        return f"({self.key} -> {self.value}) map"

    def zero(self):
        return {}

    def unmarshal(self, value):
        if not isinstance(value, dict):
            raise TypeMismatch(f"expected a struct, got {type(value).__name__}")
        return {self.key.unmarshal(_key_from_wire(self.key, k)): self.value.unmarshal(v)
                for k, v in value.items()}

    def db_string(self, value) -> str:
        return "(" + " ".join("('%s' '%s')" % (self.key.db_string(k), self.value.db_string(v))
                              for k, v in value.items()) + ")"


@dataclass(frozen=True)
class Record(Type):
    cls: str

    def __str__(self):
        return f"{self.cls} record"

    def zero(self):
        return {}

    def unmarshal(self, value):
        if not isinstance(value, dict):
            raise TypeMismatch(f"expected a {self.cls} record, got {type(value).__name__}")
        return value  # fields are checked by the constructor against the class


def _key_from_wire(key_type: Type, key):
    """Map keys travel as strings; int keys come back as decimal strings."""
    if isinstance(key_type, Prim) and key_type.name == "int" and isinstance(key, str):
        return key.strip()
    return key


STRING, INT, FLOAT, BOOL, DATETIME, VOID = (Prim(n) for n in
                                            ("string", "int", "float", "bool", "datetime", "void"))
_PRIMS = {p.name: p for p in (STRING, INT, FLOAT, BOOL, DATETIME, VOID)}


def parse(text: str, enums: dict) -> Type:
    """Parse xapi's type notation: `int`, `VM ref`, `enum vm_power_state`,
    `string set`, `(string -> VM ref) map`, `VM record`, nested freely."""
    tokens = re.findall(r"\(|\)|->|[A-Za-z0-9_]+", text)
    pos = 0

    def atom() -> Type:
        nonlocal pos
        tok = tokens[pos]
        if tok == "(":
            pos += 1
            key = postfix(atom())
            assert tokens[pos] == "->", text
            pos += 1
            val = postfix(atom())
            assert tokens[pos] == ")", text
            pos += 1
            assert tokens[pos] == "map", text
            pos += 1
            return Map(key, val)
        pos += 1
        if tok == "enum":
            name = tokens[pos]
            pos += 1
            return Enum(name, tuple(enums[name]))
        if tok in _PRIMS and not (pos < len(tokens) and tokens[pos] in ("ref", "record")):
            return _PRIMS[tok]
        kind = tokens[pos]
        pos += 1
        return Ref(tok) if kind == "ref" else Record(tok)

    def postfix(t: Type) -> Type:
        nonlocal pos
        while pos < len(tokens) and tokens[pos] == "set":
            pos += 1
            t = Set(t)
        return t

    result = postfix(atom())
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in type {text!r}")
    return result
