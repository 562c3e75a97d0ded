"""Issue 19: cached record encodings, sliced encoding and chunked replies.

Every kind of change (set, add_to/remove_from a map and a set, destroy, a relation
field the store keeps) must show in the next get_record, get_all_records and
event.from over both wire formats, however the encodings are cached; a reply encoded in
slices must be the same value the one-piece codecs would give; a big reply goes out in
chunks with the right Content-Length."""
import asyncio
import json
import xmlrpc.client
from datetime import datetime, timezone

import pytest

from xapi_server.datamodel.types import Row
from xapi_server.http import rpc
from xapi_server.wire import (BATCH, EncodingCache, Int32, RowSlotCache, jsonrpc,
                               xmlrpc as xmlwire)


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


class JsonApi:
    """The same calls as the XenAPI SDK's, over JSON-RPC 2.0."""

    def __init__(self, http, session):
        self.http, self.session = http, session

    def __call__(self, method, *params):
        reply = self.http.post("/jsonrpc", json={"jsonrpc": "2.0", "method": method,
                                                 "params": [self.session, *params], "id": 7})
        body = reply.json()
        assert "error" not in body, body
        return body["result"]


@pytest.fixture
def both(xapi, http):
    """Readers over XML-RPC (the SDK) and JSON-RPC (httpx) of one session."""
    login = http.post("/jsonrpc", json={"jsonrpc": "2.0", "id": 1,
                                        "method": "session.login_with_password",
                                        "params": ["root", "test-root-password"]})
    session = login.json()["result"]
    return xapi, JsonApi(http, session)


def views(both, cname, ref):
    """The record as each reader sees it: get_record, get_all_records, and the
    snapshot of a full event.from, over XML-RPC and JSON-RPC."""
    xapi, japi = both
    x = getattr(xapi, cname)
    seen = [x.get_record(ref), x.get_all_records()[ref],
            japi(f"{cname}.get_record", ref), japi(f"{cname}.get_all_records")[ref]]
    for batch in (event_from(xapi, [cname], "", 0.0),
                  japi("event.from", [cname], "", 0.0)):
        seen += [e["snapshot"] for e in batch["events"] if e["ref"] == ref]
    assert len(seen) == 6
    return seen


def test_every_change_reaches_every_reader_in_both_formats(both):
    xapi, _ = both
    net = xapi.network.create({"name_label": "scale-a", "other_config": {"k": "v"}})
    views(both, "network", net)                    # cached in every form now
    xapi.network.set_name_label(net, "scale-b")
    assert {v["name_label"] for v in views(both, "network", net)} == {"scale-b"}
    xapi.network.add_to_other_config(net, "new", "1")
    assert all(v["other_config"] == {"k": "v", "new": "1"} for v in views(both, "network", net))
    xapi.network.remove_from_other_config(net, "k")
    assert all(v["other_config"] == {"new": "1"} for v in views(both, "network", net))
    xapi.network.add_tags(net, "blue")
    assert all(v["tags"] == ["blue"] for v in views(both, "network", net))
    xapi.network.remove_tags(net, "blue")
    assert all(v["tags"] == [] for v in views(both, "network", net))
    xapi.network.destroy(net)
    assert net not in xapi.network.get_all_records()
    assert net not in both[1]("network.get_all_records")


def test_relation_changes_reach_the_owner_in_both_formats(both):
    """A VIF made or destroyed changes its network's VIFs, a field the store keeps."""
    xapi, _ = both
    net = xapi.network.create({"name_label": "scale-rel", "other_config": {}})
    vm = next(r for r, rec in xapi.VM.get_all_records().items() if rec["is_a_template"])
    vm = xapi.VM.clone(vm, "scale-rel-vm")
    assert all(v["VIFs"] == [] for v in views(both, "network", net))
    vif = xapi.VIF.create({"device": "0", "network": net, "VM": vm, "MAC": "", "MTU": "1500",
                           "other_config": {}, "qos_algorithm_type": "",
                           "qos_algorithm_params": {}})
    assert all(v["VIFs"] == [vif] for v in views(both, "network", net))
    assert all(v["VIFs"] == [vif] for v in views(both, "VM", vm))
    xapi.VIF.destroy(vif)
    assert all(v["VIFs"] == [] for v in views(both, "network", net))
    assert all(v["VIFs"] == [] for v in views(both, "VM", vm))
    xapi.VM.destroy(vm)
    xapi.network.destroy(net)


# -- the codecs and the cache in-process ------------------------------------------

def sample(count):
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    records = {f"OpaqueRef:{i}": Row(uuid=str(i), name_label=f"vm <{i}> & \u00e9", n=i,
                                     when=when, tags=["a", "b"], other={"x": "y"},
                                     flag=i % 2 == 0)
               for i in range(count)}
    return {"events": [{"ref": r, "snapshot": rec, "id": "1"} for r, rec in records.items()],
            "valid_ref_counts": {"vm": Int32(count)}, "token": "t",
            "records": records}


@pytest.mark.parametrize("count", [0, 3, BATCH, BATCH * 3 + 7])
def test_sliced_json_is_the_plain_encoding(count):
    value = sample(count)
    call = jsonrpc.JsonCall("m", [], "id-1", True)
    for form in (value, value["records"], value["events"], list(value["records"])):
        text = jsonrpc.encode_success(call, form)
        plain = json.dumps({"jsonrpc": "2.0", "result": form, "id": "id-1"},
                           default=lambda v: jsonrpc.format_datetime(v))
        assert json.loads(text) == json.loads(plain)
    v1 = json.loads(jsonrpc.encode_success(jsonrpc.JsonCall("m", [], 5, False), value))
    assert v1["error"] is None and v1["id"] == 5 and v1["result"]["token"] == "t"


@pytest.mark.parametrize("count", [0, 3, BATCH * 3 + 7])
def test_sliced_xml_is_the_plain_encoding(count):
    value = sample(count)
    for form in (value, value["records"], value["events"]):
        reply = xmlrpc.client.loads(xmlwire.encode_success(form))[0][0]
        assert reply["Status"] == "Success"
        expected = xmlrpc.client.loads(xmlwire.encode_bare(form))[0][0]
        assert reply["Value"] == expected
    records = xmlrpc.client.loads(xmlwire.encode_success(value["records"]))[0][0]["Value"]
    if count:
        assert records["OpaqueRef:1"]["name_label"] == "vm <1> & \u00e9"


def test_big_xml_map_keys_are_escaped_as_small_ones():
    """The keys of a big map are escaped only when needed (refs never are): the same
    bytes as the escaping of a small map's keys, control characters dropped."""
    # a NUL too: the names of a batch are encoded as one string split at NULs
    keys = [f"OpaqueRef:{i}" for i in range(BATCH)] + ["a<b>&\"c\x01d", "\u00e9\td", 7,
                                                       "n\x00ul"]
    big = {k: Row(n=i) for i, k in enumerate(keys)}
    reply = xmlrpc.client.loads(xmlwire.encode_success(big))[0][0]["Value"]
    assert reply["a<b>&\"cd"] == {"n": str(BATCH)}   # ints go out bare, as xapi sends them
    assert reply["\u00e9\td"] == {"n": str(BATCH + 1)}
    assert reply["7"] == {"n": str(BATCH + 2)}
    assert reply["nul"] == {"n": str(BATCH + 3)}
    assert b"<member><name>a&lt;b&gt;&amp;&quot;cd</name>" in xmlwire.encode_success(big)
    assert reply == xmlrpc.client.loads(xmlwire.encode_bare(big))[0][0]


def test_cache_drops_only_records_nobody_holds():
    cache = EncodingCache(lambda r: repr(sorted(r)), floor=8)
    live = [Row(n=i) for i in range(8)]
    for r in live:
        cache.get(r)
    for i in range(20):                 # replaced at once: only the cache holds them
        cache.get(Row(gone=i))
    cache.sweep()
    assert len(cache) == len(live)
    assert all(cache.get(r) == repr(sorted(r)) for r in live)


def test_cache_follows_a_replaced_record():
    cache = EncodingCache(lambda r: json.dumps(r))
    old = Row(a=1)
    assert cache.get(old) == '{"a": 1}'
    new = Row(old, a=2)                 # the store never changes a Record in place
    assert cache.get(new) == '{"a": 2}'


def test_row_slot_cache_holds_and_drops_as_the_identity_cache():
    cache = RowSlotCache(lambda r: repr(sorted(r.items())).encode(), "xml_encoding", floor=8)
    live = [Row(n=i) for i in range(8)]
    kept = cache.get_each(live)
    assert kept == [repr(sorted(r.items())).encode() for r in live]
    assert all(map(cache.holds, kept)) and not cache.holds(kept[0][:1] + kept[0][1:])
    gone = [cache.get(Row(gone=i)) for i in range(20)]   # only the cache holds their Rows
    cache.sweep()
    assert len(cache) == len(live) and not any(map(cache.holds, gone))
    assert cache.get_each(live) == kept
    new = Row(live[0], n=99)            # a Row made from another has no encoding yet
    assert cache.get(new) == repr(sorted(new.items())).encode()


def test_big_reply_goes_out_in_chunks_with_its_length():
    sent = []

    async def send(message):
        sent.append(message)

    pieces = [bytes([65 + i % 26]) * 300_000 for i in range(9)]
    asyncio.run(rpc._send_success(send, iter(pieces), b"application/json"))
    start, bodies = sent[0], sent[1:]
    length = int(dict(start["headers"])[b"content-length"])
    assert length == sum(map(len, pieces))
    assert b"".join(m["body"] for m in bodies) == b"".join(pieces)
    assert len(bodies) > 1 and all(m["more_body"] for m in bodies[:-1])
    assert not bodies[-1]["more_body"]
