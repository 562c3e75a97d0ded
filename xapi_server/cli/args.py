"""Parsing what xe sends: the command word, then `k=v`, `--flag` and `-x value` tokens.

As xapi: `--name` means `name=true`; a bare word means `word=` (that is how
`xe help vm-start` names its command); a value runs from the first `=` to the end.
"""
from __future__ import annotations

import re

from .errors import SyntaxFailure, CliFailure

# Single-dash switches xapi understands on the server side (the client usually eats them).
_SWITCHES = {"-u": "username", "-pw": "password", "-s": "server", "-h": "server", "-p": "port"}

# Parameters every command accepts; they never act as filters or selectors.
STANDARD = frozenset({"server", "password", "port", "username", "minimal", "force", "multiple",
                      "all", "message-priority", "trace", "progress", "session_id"})


def parse(tokens: list[str]) -> tuple[str, dict[str, str]]:
    """(command name, params). Later duplicates win, as xapi's assoc list lookups."""
    if not tokens:
        raise SyntaxFailure("no command")
    cmd = tokens[0]
    if "=" in cmd or cmd.startswith("-"):
        raise SyntaxFailure("command name is missing")
    params: dict[str, str] = {}
    i = 1
    while i < len(tokens):
        tok = tokens[i]
        if tok.startswith("--"):
            params[tok[2:]] = "true"
        elif tok.startswith("-") and "=" not in tok:
            if tok not in _SWITCHES or i + 1 >= len(tokens):
                raise SyntaxFailure(f"unknown switch {tok}")
            params[_SWITCHES[tok]] = tokens[i + 1]
            i += 1
        else:
            key, _, value = tok.partition("=")
            params[key] = value
        i += 1
    return cmd, params


_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")


def boolean(text: str, what: str = "value") -> bool:
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise CliFailure(f"Failed to parse field '{what}': expecting a boolean (true or false), "
                     f"got '{text}'")


_UNITS = {"": 1, "b": 1, "bytes": 1,
          "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10,
          "m": 1 << 20, "mb": 1 << 20, "mib": 1 << 20,
          "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30,
          "t": 1 << 40, "tb": 1 << 40, "tib": 1 << 40}


def size(text: str, what: str = "value") -> int:
    """`512MiB` -> 536870912. Binary multiples only; no decimals, no negatives (as xe)."""
    m = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise CliFailure(f"Failed to parse field '{what}': expecting an integer (possibly with "
                         f"suffix KiB, MiB, GiB, TiB), got '{text}'")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def flag(params: dict, name: str) -> bool:
    return name in params and boolean(params[name], name)
