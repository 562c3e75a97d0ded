"""Where class-specific behaviour is registered.

    @implements("VM.start")
    async def start(ctx, vm, start_paused, force): ...

The name must be a message the datamodel declares; the function receives the call
context and the message's parameters (without the session), already type-checked.
A generated message (a getter, setter, create ...) is overridden the same way.
Both are checked at import: an unknown name, a second implementation, or a function
that could not take the call context plus the message's parameters fails there
rather than on the first call.
"""
from __future__ import annotations

import inspect

from ..datamodel import METHODS

IMPLEMENTATIONS: dict[str, object] = {}


def implements(*wire_names: str):
    def register(fn):
        for name in wire_names:
            if name not in METHODS:
                raise LookupError(f"{name} is not declared in the datamodel")
            if name in IMPLEMENTATIONS:
                raise LookupError(f"{name} is implemented twice")
            _check_arity(fn, name)
            IMPLEMENTATIONS[name] = fn
        fn.is_coroutine = inspect.iscoroutinefunction(fn)
        return fn
    return register


def implements_fresh_reads(cls: str, fresh) -> None:
    """`<cls>.get_record` and `get_currently_attached` answer what `fresh(ctx, ref)`
    returns: the record brought up to date with the host first (a PIF or VIF whose
    device changed behind our back)."""
    @implements(f"{cls}.get_record")
    async def get_record(ctx, self):
        return await fresh(ctx, self)

    @implements(f"{cls}.get_currently_attached")
    async def get_currently_attached(ctx, self):
        return (await fresh(ctx, self))["currently_attached"]


def _check_arity(fn, name: str) -> None:
    """The dispatcher calls fn(ctx, *params), every declared parameter given (defaults
    filled in): fn must accept exactly that many positional arguments."""
    declared = [p.name for p in METHODS[name].params]
    wanted = 1 + len(declared)
    params = inspect.signature(fn).parameters.values()
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    takes_rest = any(p.kind == p.VAR_POSITIONAL for p in params)
    required = [p for p in positional if p.default is p.empty]
    if len(required) <= wanted and (takes_rest or len(positional) >= wanted):
        return
    where = f"{fn.__module__}.{fn.__qualname__}"
    raise TypeError(f"@implements({name!r}): {where} takes {len(positional)} positional "
                    f"parameter(s), the dispatcher passes {wanted}: ctx, "
                    f"{', '.join(declared) or '(no message parameters)'}")
