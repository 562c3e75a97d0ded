"""One HA cluster (tests/ha_harness.py) shared by the test modules that leave it as the
next can start from it: test_pool_ha_members.py ends with all three hosts members again
and a replica streaming, which is what test_pool_ha_setup.py starts from;
test_pool_ha_db.py leaves its three nodes up with a synchronous standby, which is what
test_pool_ha.py's pool is built on. Built for the first of them, stopped after the
last; conftest runs them one after the other (in their `turn`), so the cluster never
idles while other files run. A module with a failed test stops it, and the next module
gets a cluster of its own: a failure does not spill into another file.

    ha = shared_cluster(__name__, slot=5, setup_script=True)   # the module's fixture `ha`
"""
from __future__ import annotations

import contextlib

import pytest

from ha_harness import HaCluster, ha_cluster


class SharedClusters:
    def __init__(self):
        self.users: dict[str, tuple] = {}   # test module's name -> its cluster's options
        self.turns: dict[str, int] = {}     # test module's name -> its turn among them
        self.open: dict[tuple, tuple[contextlib.ExitStack, HaCluster]] = {}

    def cluster(self, key: tuple) -> HaCluster:
        if key not in self.open:
            stack = contextlib.ExitStack()
            self.open[key] = stack, stack.enter_context(ha_cluster(**dict(key)))
        return self.open[key][1]

    def close(self, key: tuple):
        stack, _ = self.open.pop(key)
        stack.close()

    def key_of(self, item) -> tuple | None:
        module = getattr(item, "module", None)
        return self.users.get(getattr(module, "__name__", None))

    def used_after(self, request, key: tuple) -> bool:
        """Whether a test after this module's uses the cluster."""
        items = request.session.items
        mine = [i for i, item in enumerate(items) if getattr(item, "module", None) is request.module]
        return any(self.key_of(item) == key for item in items[mine[-1] + 1:]) if mine else False

    def together(self, items: list) -> list:
        """`items` with the tests of the modules that share a cluster moved up to the
        first of them, module after module in their turns (the order within each
        module kept)."""
        groups: dict[tuple, list] = {}
        order: list = []
        for item in items:
            key = self.key_of(item)
            if key is None:
                order.append([item])
            elif key not in groups:
                groups[key] = [item]
                order.append(groups[key])
            else:
                groups[key].append(item)
        turn = self.turns.get
        return [item for run in order
                for item in sorted(run, key=lambda i: turn(i.module.__name__, 0))]


SHARED = SharedClusters()


def shared_cluster(module: str, name: str = "ha", turn: int = 0, **options):
    """A module-scoped fixture `name` for test module `module` (assign it to a name of
    the module): the cluster ha_cluster(**options) makes, with a leader, shared with
    every module asking for the same options; modules of a lower `turn` use it first."""
    key = tuple(sorted(options.items()))
    SHARED.users[module], SHARED.turns[module] = key, turn

    @pytest.fixture(scope="module", name=name)
    def shared(request):
        failed = request.session.testsfailed
        cluster = SHARED.cluster(key)
        cluster.wait_leader(120)
        yield cluster
        if request.session.testsfailed > failed or not SHARED.used_after(request, key):
            SHARED.close(key)
    return shared


__all__ = ["SHARED", "shared_cluster"]
