"""The collector policy (xapi_server/gcpolicy.py), in a process of its own so that this
test's freezing leaves pytest's objects alone: a slow full collection freezes what
survived it, and collects the cyclic garbage first; a quick one freezes nothing."""
import subprocess
import sys

SCRIPT = r"""
import gc, weakref
from xapi_server import gcpolicy
gcpolicy.freeze_survivors_of_slow_collections()
gc.collect()
gcpolicy.SLOW_FULL_COLLECTION = 3600.0           # nothing is slow: nothing is frozen
small = [{"k": [i]} for i in range(1000)]
gc.collect()
assert gc.get_freeze_count() == 0, gc.get_freeze_count()

class Node:
    pass
cycle = Node(); cycle.me = cycle                # garbage that only the collector frees
dead = weakref.ref(cycle); del cycle
records = [{"VBDs": [str(i)], "other_config": {"a": [i]}} for i in range(200000)]
gcpolicy.SLOW_FULL_COLLECTION = 0.0             # every full collection counts as slow
gc.collect()
assert dead() is None                           # collected, not frozen
frozen = gc.get_freeze_count()
assert frozen >= 3 * len(records), frozen       # each record, its list and its map
assert not gc.get_objects(2)                    # nothing left for the next full one
records[5]["VBDs"].append("x")                  # frozen objects stay usable
gc.collect(); print("ok", frozen)
"""


def test_survivors_of_a_slow_full_collection_are_frozen():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")
