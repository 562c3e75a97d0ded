"""Fuzzing the decoders and the dispatcher through the ASGI app, in-process.

Whatever arrives, the reply is HTTP 200 (a XenAPI result or error), 413 (too large)
or 500 (not a request at all, as xapi), never carries a traceback, and comes within
seconds. FUZZ_EXAMPLES sets the examples per test (CI: 2500 x 4 = 10k; try 100000).
"""
import asyncio
import json
import os
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xapi_server.config import Settings
from xapi_server.datamodel import METHODS
from xapi_server.http.app import XapiApp
from xapi_server.server import Server

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "2500"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=list(HealthCheck))


class InProcess:
    def __init__(self):
        os.environ.setdefault("XAPI_ROOT_PASSWORD", "fuzz")
        self.loop = asyncio.new_event_loop()
        self.server = Server(Settings(data_dir=tempfile.mkdtemp(prefix="xapi-fuzz-"),
                                      libvirt_uri="test:///default", auth_failure_delay=0.0))
        self.app = XapiApp(self.server)
        self.loop.run_until_complete(self.server.startup())
        self.session = self.loop.run_until_complete(self.server.dispatcher.call(
            "session.login_with_password", ["root", os.environ["XAPI_ROOT_PASSWORD"]]))

    def post(self, path: str, body: bytes):
        out = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            out.append(message)
        scope = {"type": "http", "method": "POST", "path": path, "client": ("127.0.0.1", 9),
                 "headers": [(b"content-length", str(len(body)).encode())], "query_string": b""}
        self.loop.run_until_complete(asyncio.wait_for(self.app(scope, receive, send), 10))
        return out[0]["status"], b"".join(m.get("body", b"") for m in out[1:])

    def close(self):
        self.loop.run_until_complete(self.server.shutdown())
        self.loop.close()


@pytest.fixture(scope="module")
def app():
    proc = InProcess()
    yield proc
    proc.close()


def check(status, body):
    assert status in (200, 413, 500), status
    assert b"Traceback" not in body and b'File "' not in body


scalars = st.one_of(st.text(max_size=40), st.integers(-2**70, 2**70), st.booleans(),
                    st.floats(allow_nan=False), st.none())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
methods = st.one_of(st.sampled_from(sorted(METHODS)), st.text(max_size=30),
                    st.sampled_from(sorted(METHODS)).map(lambda m: "Async." + m))


def xml_value(v) -> str:
    from xapi_server.wire.xmlrpc import encode_value
    return encode_value(v)


@FUZZ
@given(body=st.binary(max_size=2000))
def test_random_bytes(app, body):
    for path in ("/", "/jsonrpc"):
        check(*app.post(path, body))


@FUZZ
@given(method=methods, params=st.lists(values, max_size=5), with_session=st.booleans())
def test_xmlrpc_calls(app, method, params, with_session):
    if with_session:
        params = [app.session] + params
    body = ("<?xml version='1.0'?><methodCall><methodName>%s</methodName><params>%s</params>"
            "</methodCall>" % (xml_value(method)[7:-8],
                               "".join(f"<param>{xml_value(p)}</param>" for p in params)))
    status, reply = app.post("/", body.encode())
    check(status, reply)
    if status == 200:
        assert b"<name>Status</name>" in reply or method == "system.listMethods"


@FUZZ
@given(method=methods, params=st.lists(values, max_size=5), with_session=st.booleans(),
       call_id=st.one_of(st.integers(), st.text(max_size=5), st.none()), v2=st.booleans())
def test_jsonrpc_calls(app, method, params, with_session, call_id, v2):
    if with_session:
        params = [app.session] + params
    request = {"method": method, "params": params, "id": call_id}
    if v2:
        request["jsonrpc"] = "2.0"
    status, reply = app.post("/jsonrpc", json.dumps(request).encode())
    check(status, reply)
    if status == 200:
        decoded = json.loads(reply)
        assert decoded["id"] == call_id


@FUZZ
@given(text=st.text(max_size=300))
def test_xml_text_mutations(app, text):
    body = f"<?xml version='1.0'?><methodCall><methodName>{text}</methodName></methodCall>"
    check(*app.post("/", body.encode("utf-8", "surrogatepass")))
