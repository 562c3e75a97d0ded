"""xapi's `get_all_records_where` expression language.

    expr  := value "=" value | expr "and" expr | expr "or" expr | "not" expr
           | "true" | "false" | "(" expr ")"
    value := "\"" text "\"" | "field" "\"" column "\""

`and` and `or` bind equally and associate left; `not` binds tighter. Fields compare as
the strings xapi's database holds (ints in decimal, bools "true"/"false"); nested field
names use a double underscore (`name__label`). An unknown field equals nothing.

Anyone who may read a class may send an expression, so its cost is bounded: at most
MAX_EXPR_CHARS characters and MAX_DEPTH nested `(` / `not`. A chain of `and`/`or`
evaluates in a loop, not by recursion, so its length costs time but no stack; a bad
expression is INVALID_VALUE [expression, reason] as in xapi, never a traceback.
"""
from __future__ import annotations

import functools
import re

from ..errors import ApiError

MAX_EXPR_CHARS = 8 * 1024      # far above any real filter; parsing it takes ~2 ms
MAX_DEPTH = 32                 # nested parentheses and `not`s
_ECHO_CHARS = 256              # how much of a refused expression the error repeats

_TOKEN = re.compile(r'(?P<str>"[^"]*")|(?P<word>[a-z]+)|(?P<sym>[=()])|(?P<space>\s+)|(?P<bad>.)',
                    re.S)


class FilterError(Exception):
    pass


def _tokens(text: str) -> list:
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind == "space":
            continue
        if kind == "bad":
            raise FilterError(f"unexpected character at {m.start()}")
        out.append((kind, m.group()[1:-1] if kind == "str" else m.group()))
    return out


def compile_expr(text: str):
    """Return a predicate `(record, db_string) -> bool`, or raise ApiError(INVALID_VALUE)."""
    if len(text) > MAX_EXPR_CHARS:
        raise ApiError("INVALID_VALUE", text[:_ECHO_CHARS] + "...",
                       f"Parse error: expression longer than {MAX_EXPR_CHARS} characters")
    return _compile(text)


@functools.lru_cache(maxsize=64)   # clients poll with the same few expressions
def _compile(text: str):
    try:
        tokens = _tokens(text)
        node, pos = _expr(tokens, 0, 0)
        if pos != len(tokens):
            raise FilterError("trailing input")
    except FilterError as exc:
        raise ApiError("INVALID_VALUE", text if len(text) <= _ECHO_CHARS
                       else text[:_ECHO_CHARS] + "...", f"Parse error: {exc}") from None
    return node


def _expr(tokens, pos, depth):
    first, pos = _unary(tokens, pos, depth)
    rest = []      # (is_and, term): evaluated left to right, as left-associative nesting
    while pos < len(tokens) and tokens[pos] in (("word", "and"), ("word", "or")):
        is_and = tokens[pos][1] == "and"
        term, pos = _unary(tokens, pos + 1, depth)
        rest.append((is_and, term))
    if not rest:
        return first, pos

    def chain(rec, fmt):
        value = first(rec, fmt)
        for is_and, term in rest:
            if value == is_and:      # `x and t` needs t only when x; `x or t` when not x
                value = term(rec, fmt)
        return value
    return chain, pos


def _unary(tokens, pos, depth):
    if pos >= len(tokens):
        raise FilterError("unexpected end of expression")
    tok = tokens[pos]
    if tok == ("word", "not") or tok == ("sym", "("):
        if depth >= MAX_DEPTH:
            raise FilterError(f"nested deeper than {MAX_DEPTH}")
        if tok == ("word", "not"):
            inner, pos = _unary(tokens, pos + 1, depth + 1)
            return (lambda rec, fmt: not inner(rec, fmt)), pos
        inner, pos = _expr(tokens, pos + 1, depth + 1)
        if pos >= len(tokens) or tokens[pos] != ("sym", ")"):
            raise FilterError("missing )")
        return inner, pos + 1
    if tok == ("word", "true"):
        return (lambda rec, fmt: True), pos + 1
    if tok == ("word", "false"):
        return (lambda rec, fmt: False), pos + 1
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
