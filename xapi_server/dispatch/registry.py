"""Where class-specific behaviour is registered.

    @implements("VM.start")
    async def start(ctx, vm, start_paused, force): ...

The name must be a message the datamodel declares; the function receives the call
context and the message's parameters (without the session), already type-checked.
A generated message (a getter, setter, create ...) is overridden the same way.
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
            IMPLEMENTATIONS[name] = fn
        fn.is_coroutine = inspect.iscoroutinefunction(fn)
        return fn
    return register
