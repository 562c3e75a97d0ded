"""Issue 19: what a big read keeps for later (the per-record encodings, the Events a
full event.from told) adds no object per record for the cyclic garbage collector to
walk: a full collection walks every tracked object, and one set off by the 65,000
that a read of 10,000 VMs used to leave behind cost a later VM.clone ~0.3 s.
Counts of tracked objects, not timings."""
import asyncio
import gc

from xapi_server import events
from xapi_server.datamodel.types import Row
from xapi_server.store import Store
from xapi_server.wire import EncodingCache

N = 2000


def tracked_after(call) -> int:
    """How many more objects the collector tracks once `call` has run (a collection
    first, which also untracks tuples holding only untracked items)."""
    gc.collect()
    before = len(gc.get_objects())
    kept = call()
    gc.collect()
    grown = len(gc.get_objects()) - before
    del kept
    return grown


def test_encoding_cache_entries_are_not_tracked():
    records = [Row(n=i, tags=[]) for i in range(N)]
    cache = EncodingCache(lambda r: (b"<struct>", str(r["n"]).encode()), floor=4 * N)
    assert tracked_after(lambda: cache.get_each(records)) < 50
    assert cache.get_each(records[:2]) == [(b"<struct>", b"0"), (b"<struct>", b"1")]
    assert len(cache) == N


def test_event_memo_keeps_the_events_and_nothing_more_per_object():
    async def run():
        store = Store()
        store.open()
        nets = [store.create("network", {"name_label": f"n{i}"}) for i in range(N)]
        memo = events.EventMemo()
        sub = events.Subscription(["network"])
        told = []
        # the Events themselves are kept (a dict each, holding its Record): nothing else
        grown = tracked_after(lambda: told.extend(events.collect(store, sub, 0,
                                                                 store.generation, memo)))
        assert len(told) >= N
        assert grown < len(told) + 50, (grown, len(told))
        again = events.collect(store, sub, 0, store.generation, memo)
        assert all(a is b for a, b in zip(again, told))          # told again from the memo
        store.update("network", nets[5], name_label="changed")
        later = {e["ref"]: e for e in events.collect(store, sub, 0, store.generation, memo)}
        assert later[nets[5]]["snapshot"]["name_label"] == "changed"
        assert later[nets[6]] is next(e for e in told if e["ref"] == nets[6])
    asyncio.run(run())
