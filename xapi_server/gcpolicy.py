"""The cyclic garbage collector's policy for a long-running server.

A full collection walks every tracked object that is not frozen. The records of 10,000
VMs made while serving (clones, imports) are about a million such objects, and one full
collection of them held the event loop for about 0.3 s: every small call waiting behind
it (bench_scale: the p99 of host.get_record went from 26 to 275 ms in a window with one).
Records loaded at start are frozen after the load (store/__init__.py) for that reason;
records made later were not.

So objects that survive a full collection are frozen too: having just survived it, each
was reachable then, and nothing of it is garbage. A later full collection walks only
what arrived since, and Python's own rule (a full collection only once the objects that
survived younger collections reach a quarter of those it kept) makes them rarer as the
heap grows. Reference counting still frees a frozen object that is let go, as it frees
a replaced record; what it cannot free is a frozen object that later becomes part of
an unreachable cycle. Those are rare among long-lived objects (records hold plain
values) and their memory is bounded by what was alive at a freeze; the freeze happens
only when a full collection was slow, so a small server keeps Python's behaviour."""
from __future__ import annotations

import gc
import time

# A full collection that took longer than this was over a heap worth freezing.
SLOW_FULL_COLLECTION = 0.02   # seconds

class _FreezeSurvivors:
    """A gc callback: times each full collection, and freezes after a slow one."""

    def __init__(self):
        self.started = 0.0

    def __call__(self, phase: str, info: dict):
        if info["generation"] != 2:
            return
        if phase == "start":
            self.started = time.perf_counter()
        elif time.perf_counter() - self.started > SLOW_FULL_COLLECTION:
            # After a full collection every tracked object is in the oldest generation
            # and reachable: freezing moves exactly the survivors out of later sweeps.
            gc.freeze()


def freeze_survivors_of_slow_collections():
    """Install the policy (once per process)."""
    if not any(isinstance(callback, _FreezeSurvivors) for callback in gc.callbacks):
        gc.callbacks.append(_FreezeSurvivors())
