"""Issue 19, host.get_record vs a bare ASGI app: a JSON-RPC body is parsed by orjson
and only what orjson refuses by the json module. Both ways must give the same call
(method, params, id, version, the first invalid value) or the same refusal."""
import json

import pytest

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
