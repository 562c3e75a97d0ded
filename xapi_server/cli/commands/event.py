"""event-wait class=<class> [field=value | field=/=value ...]: block until some object
of the class matches every condition (=/= means "not equal"); prints nothing."""
from __future__ import annotations

from ...datamodel import CLASSES
from ..errors import CliFailure
from ..records import cli_class, field_index
from ..table import command

POLL_TIMEOUT = 30.0   # seconds per event.from call; the loop runs until a match


def _api_class(name: str) -> str:
    for cname, cdef in CLASSES.items():
        if cli_class(cname) == name.lower() and cdef.get_all:
            return cname
    raise CliFailure(f"Unknown class: {name}")


def _conditions(ctx, cname: str) -> list:
    fields = field_index(cname)
    out = []
    for key, value in ctx.extra("class").items():
        if key not in fields:
            raise CliFailure(f"key missing: {key}")
        negate = value.startswith("/=")
        out.append((fields[key], value[2:] if negate else value, negate))
    return out


@command("event-wait", reqd=("class",),
         help="Wait until an object of the class matches all the conditions given as "
              "field=value (equal) or field=/=value (not equal).")
async def event_wait(ctx):
    cname = _api_class(ctx.reqd("class"))
    conditions = _conditions(ctx, cname)
    await ctx.prefetch(set().union(*(f.needs for f, _, _ in conditions)) if conditions else ())
    token = ""
    while True:
        ctx.forget(cname)
        for rec in (await ctx.all_records(cname)).values():
            if all((f.value(rec, ctx) == v) != neg for f, v, neg in conditions):
                return
        # Blocks until the class changes (or the timeout): then look again.
        token = (await ctx.call("event.from", [cname.lower()], token, POLL_TIMEOUT))["token"]
