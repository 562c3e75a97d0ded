"""The collector policy (xapi_server/gcpolicy.py), in a process of its own so that this
test's freezing leaves pytest's objects alone: no full collection walks much more than
OLD_GENERATION_LIMIT objects however many long-lived ones are made; a full collection
that left many survivors, or was slow, freezes them, after collecting the cyclic
garbage; a small one freezes nothing. Counts of objects, not timings."""
import subprocess
import sys

import pytest

SLOW_OR_BIG = r"""
import gc, weakref
from xapi_server import gcpolicy
gcpolicy.SLOW_FULL_COLLECTION = 3600.0           # nothing is slow, nor big: nothing frozen
gc.collect(); gc.freeze()                       # what was imported, as __main__ does
imported = gc.get_freeze_count()
gcpolicy.bound_old_generation()
small = [{"k": [i]} for i in range(1000)]
gc.collect()
assert gc.get_freeze_count() == imported, gc.get_freeze_count()

class Node:
    pass
cycle = Node(); cycle.me = cycle                # garbage that only the collector frees
dead = weakref.ref(cycle); del cycle
gc.disable()                                    # no automatic collection: one big one
records = [{"VBDs": [str(i)], "other_config": {"a": [i]}} for i in range(200000)]
gc.enable()
gcpolicy.SLOW_FULL_COLLECTION = 0.0             # every full collection counts as slow
gc.collect()
assert dead() is None                           # collected, not frozen
frozen = gc.get_freeze_count() - imported
assert frozen >= 3 * len(records), frozen       # each record, its list and its map
assert not gc.get_objects(2)                    # nothing left for the next full one
records[5]["VBDs"].append("x")                  # frozen objects stay usable
gc.collect(); print("ok", frozen)
"""

GROWTH = r"""
import gc, weakref
from xapi_server import gcpolicy
gcpolicy.SLOW_FULL_COLLECTION = 3600.0           # sizes only, whatever the machine's speed
gc.collect(); gc.freeze()
young, middle, _ = gc.get_threshold()
gc.set_threshold(young, middle, 100)            # as __main__ sets it
gcpolicy.bound_old_generation()
BEFORE_THE_GROWTH
walked = []

def note_full_collections(phase, info):
    if phase == "start" and info["generation"] == 2:
        walked.append(sum(len(gc.get_objects(g)) for g in range(3)))
gc.callbacks.insert(0, note_full_collections)

class Node:
    pass
cycle = Node(); cycle.me = cycle
dead = weakref.ref(cycle); del cycle
# 600,000 long-lived tracked objects, made while the automatic collections run
records = [{"VBDs": [str(i)], "other_config": {"a": [i]}} for i in range(200000)]
assert len(walked) >= 10, walked                # full collections ran along the way,
# each a small one: the limit, plus the young generations and at most one collection
# of the middle one's survivors that passed it (set off by `young` allocations each)
assert max(walked) < gcpolicy.OLD_GENERATION_LIMIT + young * (middle + 2), walked
assert dead() is None                           # the garbage among them collected
assert gc.get_freeze_count() >= 2 * len(records), gc.get_freeze_count()
print("ok", len(walked), max(walked))
"""


# A restart in the same process: the store's records unfrozen (Store.close), counted by
# a full collection, loaded again and frozen (Store.open): the growth after it must not
# wait for a quarter of that count before its first full collection.
RESTART = r"""
gc.disable()
loaded = [{"VBDs": [str(i)], "other_config": {"a": [i]}} for i in range(200000)]
gc.enable()
gc.collect()
gcpolicy.freeze_all()
"""

# A cycle alive at a freeze and dropped later is garbage that no collection sees while
# it is frozen: the sweep after SWEEP_EVERY_FREEZES freezes, run by the event loop,
# frees it.
SWEEP = r"""
import asyncio, gc, weakref
from xapi_server import gcpolicy
gcpolicy.SLOW_FULL_COLLECTION = 3600.0           # sizes only
gcpolicy.OLD_GENERATION_LIMIT = 2000
gcpolicy.SWEEP_EVERY_FREEZES = 4
gc.collect(); gc.freeze()
gcpolicy.bound_old_generation()
policy = next(c for c in gc.callbacks if isinstance(c, gcpolicy._BoundOldGeneration))

class Node:
    pass

def grow_until(freezes):
    kept = []
    while policy.freezes < freezes:
        kept.append({"VBDs": [len(kept)]})
    return kept

async def main():
    cycle = Node(); cycle.me = cycle
    dead = weakref.ref(cycle)
    records = grow_until(1)                     # the cycle, alive, frozen with them
    assert gc.get_freeze_count() > 0
    del cycle
    gc.collect()
    assert dead() is not None                   # leaked while frozen
    records += grow_until(gcpolicy.SWEEP_EVERY_FREEZES - 1)
    assert dead() is not None and policy.freezes == gcpolicy.SWEEP_EVERY_FREEZES - 1
    records += grow_until(gcpolicy.SWEEP_EVERY_FREEZES)
    assert policy.sweep_asked                   # asked inside the collection, not run
    for _ in range(3):
        await asyncio.sleep(0)
    assert dead() is None, "the sweep freed it"
    assert policy.freezes == 0 and not policy.sweep_asked
    assert records[7]["VBDs"] == [7]            # the live ones kept, frozen again
    assert not gc.get_objects(2)
asyncio.run(main())
print("ok")
"""


@pytest.mark.parametrize("script", [SLOW_OR_BIG, GROWTH.replace("BEFORE_THE_GROWTH", ""),
                                    GROWTH.replace("BEFORE_THE_GROWTH", RESTART), SWEEP],
                         ids=["slow_or_big", "growth", "growth_after_a_restart", "sweep"])
def test_policy(script):
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
