"""Issue 19, JSON-RPC. host.get_record vs a bare ASGI app: a body is parsed by orjson
and only what orjson refuses by the json module; both ways must give the same call
(method, params, id, version, the first invalid value) or the same refusal. Memory:
the cached encoding of a record is the size of its text."""
import json
import tracemalloc

import pytest

from xapi_server.datamodel.types import Row
from xapi_server.wire import MalformedRequest, jsonrpc

REF = "OpaqueRef:0f3c3ffe-8cd4-4a5c-9a6e-9fbb1a1f3c11"
BODIES = [
    json.dumps({"jsonrpc": "2.0", "method": "host.get_record", "params": [REF, REF], "id": 1}),
    json.dumps({"method": "VM.set_memory", "params": [REF, 2 ** 40, -0.0, 1.5e300], "id": "x"}),
    '{"jsonrpc":"2.0","method":"m","params":[1e999],"id":1}',           # inf by size
    '{"jsonrpc":"2.0","method":"m","params":[NaN, Infinity],"id":1}',
    '{"jsonrpc":"2.0","method":"m","params":["\\ud800"],"id":1}',      # lone surrogate
    '{"jsonrpc":"2.0","method":"m","params":["\\ud83d\\ude00 \\u00e9"],"id":1}',
    '{"jsonrpc":"2.0","method":"m","params":[%d],"id":1}' % 2 ** 70,   # past 64 bits
    '{"jsonrpc":"2.0","method":"m","method":"n","params":{"a":[]},"id":2}',
    '\ufeff{"method":"m","params":[],"id":1}',
    '{"jsonrpc":"2.0","method":"m\\ud800","params":[],"id":1}',
    '{"jsonrpc":"2.0","method":"m","params":' + "[" * 3000 + "]" * 3000 + ',"id":1}',
    '{"jsonrpc":"1.0","method":"m","params":[],"id":1}',
    '{"method":"m","id":1}', '[1, 2]', '{"method":"m",}', '', 'nul',
]
RAW = [b'{"jsonrpc":"2.0","method":"m","params":["a\xffb"],"id":1}',   # not UTF-8
       '{"jsonrpc":"2.0","method":"m","params":["é"],"id":1}'.encode("utf-16")]


def _read(body: bytes):
    try:
        return jsonrpc.decode_call(body)
    except MalformedRequest as exc:
        return ("refused", str(exc))


@pytest.mark.parametrize("body", [b.encode() for b in BODIES] + RAW)
def test_orjson_and_the_json_module_read_a_call_alike(body, monkeypatch):
    fast = _read(body)
    monkeypatch.setattr(jsonrpc, "_plain_request", lambda body: None)
    slow = _read(body)
    assert repr(fast) == repr(slow)      # repr: NaN != NaN, -0.0 == 0.0


def test_the_common_call_takes_orjson_s_way(monkeypatch):
    body = BODIES[0].encode()
    monkeypatch.setattr(jsonrpc.json, "loads", None)       # the json module not used
    assert jsonrpc.decode_call(body).params == [REF, REF]


def test_a_cached_record_encoding_holds_only_its_bytes():
    """A big reply splices each record's cached encoding; orjson's own result keeps
    the 16 KiB buffer it wrote a 1 KiB record into, which the cache then kept for
    every record (300 MiB more after a full event.from of 10,000 VMs)."""
    records = {f"OpaqueRef:{i:036d}": Row({"uuid": f"{i:036d}", "name_label": "x" * 900,
                                           "VIFs": [], "other_config": {"k": "v"}})
               for i in range(100)}
    call = jsonrpc.JsonCall("VM.get_all_records", [], 1, True)
    tracemalloc.start()      # the allocation: sys.getsizeof sees only the bytes' length
    try:
        before = tracemalloc.get_traced_memory()[0]
        pieces = list(jsonrpc.success_chunks(call, records))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    text = sum(map(len, pieces))
    assert len([p for p in pieces if len(p) > 900]) == len(records)
    assert held < 2 * text, (held, text)
    assert json.loads(b"".join(pieces))["result"] == {r: dict(v) for r, v in records.items()}


ROW = Row({"uuid": "u", "memory": 2 ** 40, "other_config": {"k": "v"}, "VIFs": [REF]})


SMALL = [ROW, "OpaqueRef:x", 7, None, [], [ROW, "a"], {"a": ROW}, {REF: ROW}]
BIG = [list(range(100)), {str(i): i for i in range(100)}, {"events": list(range(100)), "t": "1"}]


@pytest.mark.parametrize("value", SMALL + BIG)
@pytest.mark.parametrize("v2, call_id", [(True, 1), (False, "x\u00e9"), (True, "id")])
def test_a_small_reply_made_whole_is_the_sliced_one_byte_for_byte(value, v2, call_id):
    """A small reply (host.get_record) is made in one orjson call; a big one, or a map
    holding a big value (event.from), still in slices (encode_small: None)."""
    call = jsonrpc.JsonCall("m", [], call_id, v2)
    whole = jsonrpc.encode_small(call, value)
    if any(value is big for big in BIG):
        assert whole is None
    else:
        assert whole == jsonrpc.encode_success(call, value)
