"""Bounds on text a client chooses before it is stored or logged.

User names, originators and User-Agents come from anyone who can reach the port. They end
up in session and Caller records, audit lines, the server log and messages, so each is cut
to a bound once, where it enters (the dispatcher for the User-Agent and the address, the
login for the user name and the originator), and nothing later has to care.
"""
from __future__ import annotations

WIRE_FIELD_MAX = 256   # characters kept of a User-Agent, an originator or an address
USER_NAME_MAX = 255    # a longer name is no account's (Linux: 32; directories: < 256)


def bounded(text, limit: int = WIRE_FIELD_MAX) -> str:
    """`text` if it is short enough, else its start and how much was cut."""
    if not isinstance(text, str):
        text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}...[{len(text) - limit} more characters]"


def readable(text, limit: int = WIRE_FIELD_MAX) -> str:
    """A bounded, quoted form with every control or unprintable character escaped, for
    text written where people read it (messages, the server log): a name cannot forge
    a line or carry a lone surrogate into a JSON answer."""
    return repr(bounded(text, limit))
