"""xapi's `get_all_records_where` expression language.

    expr  := value "=" value | expr "and" expr | expr "or" expr | "not" expr
           | "true" | "false" | "(" expr ")"
    value := "\"" text "\"" | "field" "\"" column "\""

`and` and `or` bind equally and associate left; `not` binds tighter. Fields compare as
the strings xapi's database holds (ints in decimal, bools "true"/"false"); nested field
names use a double underscore (`name__label`). An unknown field equals nothing.
"""
from __future__ import annotations

import re

from ..errors import ApiError

_TOKEN = re.compile(r'\s*(?:(?P<str>"[^"]*")|(?P<word>[a-z]+)|(?P<sym>[=()]))')


class FilterError(Exception):
    pass


def _tokens(text: str) -> list:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise FilterError(f"unexpected character at {pos}")
        pos = m.end()
        if m.group("str") is not None:
            out.append(("str", m.group("str")[1:-1]))
        elif m.group("word") is not None:
            out.append(("word", m.group("word")))
        else:
            out.append(("sym", m.group("sym")))
    return out


def compile_expr(text: str):
    """Return a predicate `(record, db_string) -> bool`, or raise ApiError(INVALID_VALUE)."""
    try:
        tokens = _tokens(text)
        node, pos = _expr(tokens, 0)
        if pos != len(tokens):
            raise FilterError("trailing input")
    except FilterError as exc:
        raise ApiError("INVALID_VALUE", text, f"Parse error: {exc}") from None
    return node


def _expr(tokens, pos):
    left, pos = _unary(tokens, pos)
    while pos < len(tokens) and tokens[pos] in (("word", "and"), ("word", "or")):
        op = tokens[pos][1]
        right, pos = _unary(tokens, pos + 1)
        left = _combine(op, left, right)
    return left, pos


def _combine(op, left, right):
    if op == "and":
        return lambda rec, fmt: left(rec, fmt) and right(rec, fmt)
    return lambda rec, fmt: left(rec, fmt) or right(rec, fmt)


def _unary(tokens, pos):
    if pos >= len(tokens):
        raise FilterError("unexpected end of expression")
    tok = tokens[pos]
    if tok == ("word", "not"):
        inner, pos = _unary(tokens, pos + 1)
        return (lambda rec, fmt: not inner(rec, fmt)), pos
    if tok == ("word", "true"):
        return (lambda rec, fmt: True), pos + 1
    if tok == ("word", "false"):
        return (lambda rec, fmt: False), pos + 1
    if tok == ("sym", "("):
        inner, pos = _expr(tokens, pos + 1)
        if pos >= len(tokens) or tokens[pos] != ("sym", ")"):
            raise FilterError("missing )")
        return inner, pos + 1
    left, pos = _value(tokens, pos)
    if pos >= len(tokens) or tokens[pos] != ("sym", "="):
        raise FilterError("expected =")
    right, pos = _value(tokens, pos + 1)
    return (lambda rec, fmt: _eq(left(rec, fmt), right(rec, fmt))), pos


def _eq(a, b):
    return a is not None and b is not None and a == b


def _value(tokens, pos):
    tok = tokens[pos] if pos < len(tokens) else None
    if tok and tok[0] == "str":
        literal = tok[1]
        return (lambda rec, fmt: literal), pos + 1
    if tok == ("word", "field"):
        if pos + 1 >= len(tokens) or tokens[pos + 1][0] != "str":
            raise FilterError("field needs a quoted name")
        name = tokens[pos + 1][1].replace("__", "_")
        return (lambda rec, fmt: fmt(name, rec[name]) if name in rec else None), pos + 2
    raise FilterError("expected a value")
