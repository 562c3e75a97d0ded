"""Issue 19: a full event.from is built in parts, giving the event loop back between
them; the parts must still form the answer of one moment (in-process store, memory
only)."""
import asyncio

from xapi_server import events
from xapi_server.store import Store


def test_parts_give_the_answer_of_the_moment_they_began(monkeypatch):
    monkeypatch.setattr(events, "PART", 3)

    async def run():
        store = Store()
        store.open()
        nets = [store.create("network", {"name_label": f"n{i}"}) for i in range(10)]
        store.delete("network", nets[0])
        sub = events.Subscription(["network"])
        upto = store.generation
        whole = events.collect(store, sub, 0, upto)

        async def meddle():        # runs while the parts yield
            store.update("network", nets[1], name_label="changed")
            store.delete("network", nets[2])
            store.create("network", {"name_label": "late"})
        meddler = asyncio.ensure_future(meddle())
        sliced = await events.collect_sliced(store, sub, 0, upto)
        await meddler
        assert sliced == whole
        assert {e["ref"] for e in sliced} == set(nets[1:])
        assert all(e["operation"] == "add" for e in sliced)
        # the changes made meanwhile are the next call's
        later = {e["ref"]: e for e in events.collect(store, sub, upto, store.generation)}
        assert later[nets[1]]["snapshot"]["name_label"] == "changed"
        assert later[nets[2]]["operation"] == "del"
        assert len(later) == 3
    asyncio.run(run())


def test_a_whole_class_and_single_objects_scan_alike():
    async def run():
        store = Store()
        store.open()
        nets = [store.create("network", {"name_label": f"n{i}"}) for i in range(5)]
        one = events.collect(store, events.Subscription([f"network/{nets[3]}"]), 0,
                             store.generation)
        assert [e["ref"] for e in one] == [nets[3]]
        every = events.collect(store, events.Subscription(["*"]), 0, store.generation)
        assert set(nets) <= {e["ref"] for e in every}
    asyncio.run(run())
