"""Fuzzing the decoders and the dispatcher: in-process through the ASGI app, and through
the HTTP layer of a real server (TLS, uvicorn, our outermost handler).

Whatever arrives, the reply is HTTP 200 (a XenAPI result or error), 413 (too large) or,
only for a body that is not a request at all, xapi's HTTP 500 page; it never carries a
traceback, is valid UTF-8 (strict JSON for JSON-RPC: no NaN), comes within seconds, and
the server stays up. Inputs include XML declarations of every spelling, byte-order marks,
other encodings (latin-1, UTF-16, ones xapi does not read), lone surrogates and
NaN/Infinity. FUZZ_EXAMPLES sets the examples per test (default keeps the module well
under a minute; try 20000).
"""
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inprocess import InProcess
from serverproc import ROOT_PASSWORD as ROOT
from xapi_server.datamodel import METHODS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None,
                suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def app():
    proc = InProcess()
    yield proc
    proc.close()


NOT_A_REQUEST = b"The request could not be read."   # our HTTP 500 page, as xapi's


def check(status, body, is_request=False):
    """`is_request`: the body is a well-formed call, so it must be answered with 200."""
    assert status in ((200,) if is_request else (200, 413, 500)), (status, body[:300])
    if status == 500:
        assert NOT_A_REQUEST in body, body[:300]     # never a bare 500
    assert b"Traceback" not in body and b'File "' not in body
    body.decode("utf-8")                              # no lone surrogate went out


# Text as hostile clients send it: lone surrogates included (they reach the server as
# invalid UTF-8 or UTF-16, or as JSON \\ud800 escapes); not U+FFFE/U+FFFF, which no XML
# document may hold (such a body is not a request at all).
hostile_text = st.text(st.characters(exclude_categories=(), exclude_characters="\ufffe\uffff"),
                       max_size=40)
scalars = st.one_of(hostile_text, st.integers(-2**70, 2**70), st.booleans(), st.floats(),
                    st.none())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=12)
# event.from/next may legitimately wait as long as they are told, and
# host.shutdown_agent stops the server (here: the test process): not fuzzed.
_NAMES = sorted(m for m in METHODS
                if m not in ("event.from", "event.next", "host.shutdown_agent"))
methods = st.one_of(st.sampled_from(_NAMES), hostile_text,
                    st.sampled_from(_NAMES).map(lambda m: "Async." + m))

# (declaration, how the document is encoded, does xapi's parser read that encoding)
DECLARATIONS = [
    ("", "utf-8", True),
    ("<?xml version='1.0'?>", "utf-8", True),
    ('<?xml version="1.0" encoding="UTF-8"?>', "utf-8", True),
    ("<?xml version='1.0' encoding='utf-8'?>", "utf-8", True),
    ('<?xml version="1.0" encoding="utf8"?>', "utf-8", True),
    ('<?xml version="1.0" encoding="UTF_8" standalone="yes"?>', "utf-8", True),
    ('<?xml version = "1.0"  encoding = "Utf-8" ?>', "utf-8", True),
    ('<?xml version="1.0" encoding="UTF-8"?>', "utf-8-sig", True),      # with a BOM
    ("", "utf-8-sig", True),
    ('<?xml version="1.0" encoding="ISO-8859-1"?>', "latin-1", True),
    ("<?xml version='1.0' encoding='latin1'?>", "latin-1", True),
    ('<?xml version="1.0" encoding="US-ASCII"?>', "ascii", True),
    ('<?xml version="1.0" encoding="UTF-16"?>', "utf-16", True),        # BOM, native order
    ('<?xml version="1.0" encoding="UTF-16BE"?>', "bom-utf-16-be", True),
    ('<?xml version="1.0" encoding="windows-1252"?>', "cp1252", False),
    ('<?xml version="1.0" encoding="x-no-such-thing"?>', "utf-8", False),
]


def encode_document(text: str, codec: str) -> bytes:
    """`text` as a client in that encoding sends it: characters it cannot carry are
    replaced, lone surrogates go out as the invalid sequences they make."""
    if codec == "bom-utf-16-be":
        return b"\xfe\xff" + text.encode("utf-16-be", "surrogatepass")
    if codec in ("utf-8", "utf-8-sig", "utf-16"):
        data = text.encode("utf-8" if codec == "utf-8-sig" else codec, "surrogatepass")
        return b"\xef\xbb\xbf" + data if codec == "utf-8-sig" else data
    return text.encode(codec, "replace")


def xml_value(v) -> str:
    from xapi_server.wire.xmlrpc import encode_value
    return encode_value(v)


def xml_call(method: str, params: list) -> str:
    return ("<methodCall><methodName>%s</methodName><params>%s</params></methodCall>"
            % (xml_value(method)[7:-8], "".join(f"<param>{xml_value(p)}</param>" for p in params)))


def strict_json(reply: bytes):
    def refuse(constant):
        raise AssertionError(f"{constant} in a JSON reply")
    return json.loads(reply, parse_constant=refuse)


# -- two targets: the ASGI app in-process, and a real server over HTTPS --------------

class OverHttps:
    def __init__(self, tmp):
        import httpx
        from serverproc import ServerProcess
        self.server = ServerProcess(str(tmp), env={"XAPI_AUTH_FAILURE_DELAY": "0"}).start()
        self.client = httpx.Client(base_url=self.server.url, verify=False, timeout=30)
        reply = self.client.post("/jsonrpc", json={"jsonrpc": "2.0", "id": 0, "method":
                                 "session.login_with_password", "params": ["root", ROOT]})
        self.session = reply.json()["result"]

    def post(self, path: str, body: bytes):
        reply = self.client.post(path, content=body)
        return reply.status_code, reply.content

    def assert_up(self):
        assert self.server.proc.poll() is None, self.server.log()
        assert self.client.get("/").status_code == 200

    def close(self):
        self.client.close()
        self.server.stop()


@pytest.fixture(scope="module", params=["asgi", "https"])
def target(request, app, tmp_path_factory):
    if request.param == "asgi":
        yield app
        return
    proc = OverHttps(tmp_path_factory.mktemp("fuzz-https"))
    yield proc
    proc.assert_up()            # the server survived everything the module sent
    proc.close()


@FUZZ
@given(body=st.binary(max_size=2000))
def test_random_bytes(target, body):
    for path in ("/", "/jsonrpc"):
        check(*target.post(path, body))


@FUZZ
@given(method=methods, params=st.lists(values, max_size=5), with_session=st.booleans(),
       declaration=st.sampled_from(DECLARATIONS))
def test_xmlrpc_calls(target, method, params, with_session, declaration):
    if with_session:
        params = [target.session] + params
    prolog, codec, readable = declaration
    body = encode_document(prolog + xml_call(method, params), codec)
    status, reply = target.post("/", body)
    # An empty or blank method name makes no call (xapi: parse error, HTTP 500).
    check(status, reply, is_request=bool(xml_value(method)[7:-8].strip()))
    if status == 200 and not readable:
        assert b"<value>XMLRPC_UNMARSHAL_FAILURE</value>" in reply
    elif status == 200:
        assert b"<name>Status</name>" in reply or method == "system.listMethods"


@FUZZ
@given(method=methods, params=st.lists(values, max_size=5), with_session=st.booleans(),
       call_id=st.one_of(st.integers(-2**63, 2**63), st.text(max_size=5), st.none()),
       v2=st.booleans(), escaped=st.booleans(), codec=st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
def test_jsonrpc_calls(target, method, params, with_session, call_id, v2, escaped, codec):
    if with_session:
        params = [target.session] + params
    request = {"method": method, "params": params, "id": call_id}
    if v2:
        request["jsonrpc"] = "2.0"
    # ensure_ascii: lone surrogates as \ud800 escapes; else as invalid UTF-8 bytes.
    text = json.dumps(request, ensure_ascii=escaped)      # NaN/Infinity included
    body = encode_document(text, codec)
    status, reply = target.post("/jsonrpc", body)
    check(status, reply, is_request=call_id is not None and codec != "utf-16")
    if status == 200:
        assert strict_json(reply)["id"] == call_id


@FUZZ
@given(text=st.text(max_size=300), declaration=st.sampled_from(DECLARATIONS))
def test_xml_text_mutations(target, text, declaration):
    prolog, codec, _ = declaration
    body = f"{prolog}<methodCall><methodName>{text}</methodName></methodCall>"
    check(*target.post("/", encode_document(body, codec)))
