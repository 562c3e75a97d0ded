"""The cyclic garbage collector's policy for a long-running server.

A full collection walks every tracked object that is not frozen. A stored record is
always tracked (a Row is a dict subclass, and its maps and lists are containers), so
the records of 10,000 VMs made while serving (clones, imports) are about 170,000
tracked objects, and one full collection of them held the event loop for 0.2-0.3 s:
every small call waiting behind it (bench_scale: the p99 of host.get_record beside a
big reader went from 15 to 204 ms in a window with one). Python's own rules let that
old generation grow unwalked during a growth (a full collection waits for 100
collections of the middle generation here, see __main__, and for the objects that
survived them to reach a quarter of those kept at the last one), then walk all of it.
Records loaded at start are frozen after the load (store/__init__.py).

So the unfrozen old generation is kept small: when a collection of the middle
generation leaves more than OLD_GENERATION_LIMIT objects in it, the next collection is
made a full one (threshold2 = 0 until it has run), and a full collection that left
more than half that limit, or was slow, freezes its survivors. Having just survived
it, each was reachable then. A full collection thus walks at most the limit and the
young generations' survivors that passed it (below 8,000), at any number of records.

What freezing costs: reference counting still frees a frozen object that is let go
(a replaced record, a finished call); what it cannot free is a frozen object that
later becomes part of an unreachable cycle (a connection's objects alive at the
freeze, closed later). Only what is alive at a freeze can leak that way, and a freeze
needs OLD_GENERATION_LIMIT / 2 objects that became long-lived since the previous one
and are still alive (or a full collection that cost SLOW_FULL_COLLECTION of CPU), so
the leak is at most the cyclic transients alive at one freeze per that many long-lived
objects made: 1,700-2,700 objects after 10,000 clones and their reads (README,
Scale). A server that runs for months replaces records all along, and each new record
is a long-lived object made, so those freezes never stop: after SWEEP_EVERY_FREEZES of
them the whole heap is swept once (unfrozen, collected, frozen again), from the event
loop rather than inside a collection. That frees what leaked, which bounds the leak
by the transients alive at that many freezes, for one pause of a full collection of
everything per SWEEP_EVERY_FREEZES * OLD_GENERATION_LIMIT / 2 long-lived objects made
(at 10,000 VMs, about 0.3 s once per 1.3 million)."""
from __future__ import annotations

import asyncio
import gc
import time

# A full collection of this many tracked objects (records and their lists) takes
# 5-15 ms of CPU (the records of clones, in the server at 10,000 VMs).
OLD_GENERATION_LIMIT = 10_000
# A full collection that took more CPU than this was over a heap worth freezing (CPU:
# time lost to the other processes of a busy machine says nothing of the heap).
SLOW_FULL_COLLECTION = 0.02   # seconds
# Freezes between two sweeps of the whole heap (each may keep the cyclic transients
# alive at it: 1,700-2,700 objects for the ~70 freezes of a 10,000-VM growth).
SWEEP_EVERY_FREEZES = 256


class _BoundOldGeneration:
    """A gc callback: asks for a full collection once the old generation has grown
    past the limit, and freezes the survivors of a big or slow one."""

    def __init__(self):
        self.started = 0.0
        self.full_threshold: int | None = None   # Python's, while a full one is asked
        self.freezes = 0                           # since the last sweep
        self.sweep_asked = False

    def __call__(self, phase: str, info: dict):
        generation = info["generation"]
        if phase == "start":
            if generation == 2:
                self.started = time.thread_time()
        elif generation == 1:
            # The middle generation's survivors have just moved into the old one.
            if self.full_threshold is None and len(gc.get_objects(2)) > OLD_GENERATION_LIMIT:
                young, middle, self.full_threshold = gc.get_threshold()
                gc.set_threshold(young, middle, 0)
        elif generation == 2:
            if self.full_threshold is not None:
                young, middle, _ = gc.get_threshold()
                gc.set_threshold(young, middle, self.full_threshold)
                self.full_threshold = None
            if (time.thread_time() - self.started > SLOW_FULL_COLLECTION
                    or len(gc.get_objects(2)) > OLD_GENERATION_LIMIT // 2):
                # After a full collection every tracked object is in the oldest
                # generation and reachable: freezing moves exactly the survivors out
                # of later sweeps.
                gc.freeze()
                self.freezes += 1
                if self.freezes >= SWEEP_EVERY_FREEZES and not self.sweep_asked:
                    self._ask_for_a_sweep()

    def _ask_for_a_sweep(self):
        """Sweep from the event loop once this collection is over (a collection asked
        for inside another does nothing). With no loop in this thread, the next freeze
        asks again."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self.sweep_asked = True
        loop.call_soon_threadsafe(self.sweep)

    def sweep(self):
        """Collect the whole heap once, frozen objects included, then freeze it again."""
        gc.unfreeze()
        gc.collect()
        freeze_all()
        self.freezes, self.sweep_asked = 0, False


def freeze_all():
    """gc.freeze(), then a full collection of what is left (nothing but the young), so
    that Python counts the objects kept at its last full collection as none. Else,
    after the freeze of a big heap that a full collection had counted (a restart in
    the same process unfreezes the store's records, see store/__init__.py), its rule
    of a quarter would hold off the next full collection until a quarter of that heap
    had arrived anew, and that collection would walk all of it."""
    gc.freeze()
    gc.collect()


def bound_old_generation():
    """Install the policy (once per process)."""
    if not any(isinstance(callback, _BoundOldGeneration) for callback in gc.callbacks):
        gc.callbacks.append(_BoundOldGeneration())
