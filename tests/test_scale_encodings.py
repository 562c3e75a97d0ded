"""Issue 19: the cached encodings (a Record's, an Event's head) and the Events that
event.from reuses must give, byte for byte, what encoding the same values afresh gives,
after every kind of change: a field set, a map key added and removed, an object made
and destroyed, a relation changed (a VIF made), an object touched (event.inject: same
fields, new generation). Both wires, get_all_records and event.from (in full and from a
token), big replies (batched) and small ones. In-process server (tests/inprocess.py)."""
import pytest

from xapi_server import events
from xapi_server.datamodel.types import Row
from xapi_server.wire import BATCH, Event, jsonrpc, xmlrpc as xmlwire

JSON_CALL = jsonrpc.JsonCall("m", [], 3, True)


def plain(value):
    """`value` with every Row and Event turned into a plain dict: what the codecs encode
    without any cache."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def assert_cached_is_fresh(value):
    assert xmlwire.encode_success(value) == xmlwire.encode_success(plain(value))
    assert jsonrpc.encode_success(JSON_CALL, value) == \
        jsonrpc.encode_success(JSON_CALL, plain(value))


@pytest.fixture(scope="module")
def server(inprocess):
    proc = inprocess

    def call(method, *params):
        return proc.loop.run_until_complete(
            proc.server.dispatcher.call(method, [proc.session, *params]))
    return proc.server, call


def every_reply(server):
    """get_all_records of two classes and a full event.from, each checked against the
    store: the Events are of the objects' current Records and generations."""
    srv, call = server
    store = srv.store
    full = call("event.from", ["*"], "", 0.0)
    # every live object of the classes "*" means, once (Events of a class that has not
    # changed since the last full read are reused whole); a change the disk does not
    # have yet (a background write in flight) is the next call's
    told_upto = int(full["token"].partition(",")[0])
    live = {(cname.lower(), ref) for cname in events.Subscription(["*"]).all_classes()
            for ref, gen in store.gens[cname].items() if gen <= told_upto}
    assert sorted((e["class"], e["ref"]) for e in full["events"]) == sorted(live)
    for event in full["events"]:
        cname = next(c for c in store.tables if c.lower() == event["class"])
        if event["operation"] != "del":
            assert event["snapshot"] is store.tables[cname][event["ref"]]
            assert event["id"] == str(store.gens[cname][event["ref"]])
    return [call("VM.get_all_records"), call("network.get_all_records"), full]


def test_cached_encodings_are_the_fresh_ones_after_every_change(server):
    srv, call = server
    nets = [call("network.create", {"name_label": f"enc-{i}", "other_config": {"i": str(i)}})
            for i in range(BATCH + 2)]                     # a big map: the batched path
    vm = next(r for r, rec in call("VM.get_all_records").items() if rec["is_a_template"])
    vm = call("VM.clone", vm, "enc-vm")
    token = call("event.from", ["*"], "", 0.0)["token"]
    for value in every_reply(server):                      # fills every cache
        assert_cached_is_fresh(value)
    first = {e["ref"]: e for e in call("event.from", ["*"], "", 0.0)["events"]}
    changes = [
        lambda: call("network.set_name_label", nets[0], "enc-renamed <&>"),
        lambda: call("network.add_to_other_config", nets[1], "k\u00e9y", "v\"1"),
        lambda: call("network.remove_from_other_config", nets[1], "i"),
        lambda: call("network.destroy", nets[2]),
        lambda: call("VIF.create", {"device": "0", "network": nets[3], "VM": vm, "MAC": "",
                                    "MTU": "1500", "other_config": {},
                                    "qos_algorithm_type": "", "qos_algorithm_params": {}}),
        lambda: call("event.inject", "network", nets[4]),
        lambda: call("network.create", {"name_label": "enc-late", "other_config": {}}),
        lambda: call("VM.set_name_description", vm, "x\ty"),
    ]
    for change in changes:
        change()
        for value in every_reply(server):
            assert_cached_is_fresh(value)
        since = call("event.from", ["*"], token, 0.0)
        assert since["events"]
        assert_cached_is_fresh(since)
    now = {e["ref"]: e for e in call("event.from", ["*"], "", 0.0)["events"]}
    # Unchanged objects are told with the very Event of the first read (nothing made
    # per call); changed ones with new Events, the destroyed network not at all.
    assert now[nets[10]] is first[nets[10]] and type(now[nets[10]]) is Event
    assert now[nets[0]] is not first[nets[0]]
    assert now[nets[0]]["snapshot"]["name_label"] == "enc-renamed <&>"
    assert now[nets[4]]["snapshot"] is first[nets[4]]["snapshot"]      # touched only
    assert int(now[nets[4]]["id"]) > int(first[nets[4]]["id"])
    assert now[vm]["snapshot"]["VIFs"] and now[nets[3]]["snapshot"]["VIFs"]
    assert nets[2] not in now
    deleted = [e for e in call("event.from", ["*"], token, 0.0)["events"]
               if e["ref"] == nets[2]]
    assert [e["operation"] for e in deleted] == ["del"] and "snapshot" not in deleted[0]


def test_small_replies_and_odd_events_encode_as_plain_values(server):
    """An event list too short to be batched, an Event without a snapshot and an Event
    whose snapshot is not a Row go the plain way, with the same bytes."""
    srv, call = server
    net = call("network.create", {"name_label": "enc-small", "other_config": {}})
    record = srv.store.tables["network"][net]
    odd = [Event({"id": "1", "timestamp": "0.0", "class": "network", "operation": "del",
                  "ref": net}),
           Event({"id": "2", "class": "network", "snapshot": dict(record), "ref": net}),
           Event({"id": "3", "timestamp": "0.0", "class": "network", "operation": "mod",
                  "ref": net, "snapshot": record})]
    for listed in (odd, odd * (BATCH // 2)):              # small, then big (batched)
        assert_cached_is_fresh({"events": listed, "token": "t"})
        assert_cached_is_fresh(listed)
    assert_cached_is_fresh(call("network.get_record", net))
    assert type(call("network.get_record", net)) is Row


def test_legacy_event_next_leaves_the_shared_events_alone(server):
    """event.next stamps the time on copies: the Events event.from reuses keep 0.0."""
    srv, call = server
    net = call("network.create", {"name_label": "enc-next", "other_config": {}})
    call("event.register", ["network"])
    try:
        call("network.set_name_label", net, "enc-next-2")
        told = [e for e in call("event.next") if e["ref"] == net]
        assert told and told[-1]["timestamp"] != "0.0"
        full = [e for e in call("event.from", ["network"], "", 0.0)["events"]
                if e["ref"] == net]
        assert full[0]["timestamp"] == "0.0"
    finally:
        call("event.unregister", ["network"])
