"""Hostile bytes on the wire, through the real server: declared encodings, byte-order
marks, lone surrogates, NaN/Infinity; and the outermost handler that answers whatever
escapes with INTERNAL_ERROR in the caller's protocol."""
import json
import logging

import pytest

from serverproc import ROOT_PASSWORD
from inprocess import asgi_post as post

INVALID_STRING = ["INVALID_VALUE", "Invalid UTF-8 string in parameter"]
NON_FINITE = ["INVALID_VALUE", "Non-finite float in parameter"]


def strict_json(reply):
    """A JSON-RPC reply as a strict parser reads it (no NaN/Infinity, valid UTF-8)."""
    assert reply.status_code == 200, reply.text[:500]

    def refuse(constant):
        raise AssertionError(f"{constant} in a JSON reply")
    return json.loads(reply.content.decode("utf-8"), parse_constant=refuse)


def jcall(http, method, *params, raw=None):
    """JSON-RPC v2; `raw` is the params array as JSON text (for NaN, \\ud800 ...)."""
    body = ('{"jsonrpc":"2.0","id":7,"method":%s,"params":%s}'
            % (json.dumps(method), raw if raw is not None else json.dumps(params)))
    reply = strict_json(http.post("/jsonrpc", content=body.encode()))
    assert reply["id"] == 7
    return reply


def error(reply) -> list:
    assert "error" in reply, reply
    return [reply["error"]["message"], *reply["error"]["data"]]


@pytest.fixture(scope="module")
def session(server):
    return server.session().xenapi


@pytest.fixture(scope="module")
def network(session):
    ref = session.network.create({"name_label": "wire-hostile", "name_description": "",
                                  "MTU": "1500", "other_config": {}})
    yield ref
    session.network.destroy(ref)


# -- item: XML-RPC with a declared encoding ------------------------------------------

def xml_body(declaration: str, method: str, *params: str) -> str:
    values = "".join(f"<param><value>{p}</value></param>" for p in params)
    return (f"{declaration}<methodCall><methodName>{method}</methodName>"
            f"<params>{values}</params></methodCall>")


# (declaration, encoding of the bytes, byte-order mark, a name that encoding can carry)
READABLE = [
    ('<?xml version="1.0" encoding="UTF-8"?>', "utf-8", b"", "é中"),       # Java, PHP, XO
    ('<?xml version="1.0" encoding="utf-8"?>\n', "utf-8", b"", "é中"),
    ("<?xml version='1.0' encoding='UTF-8'?>", "utf-8", b"", "é中"),
    ('<?xml version="1.0" encoding="utf8"?>', "utf-8", b"", "é中"),
    ('<?xml version="1.0" encoding="UTF_8"?>', "utf-8", b"", "é中"),
    ('<?xml version = "1.0" encoding = "UTF-8" standalone="yes"?>', "utf-8", b"", "é中"),
    ('<?xml version="1.0" encoding="UTF-8"?>', "utf-8", b"\xef\xbb\xbf", "é中"),
    ("", "utf-8", b"\xef\xbb\xbf", "é中"),
    ('<?xml version="1.0" encoding="ISO-8859-1"?>', "latin-1", b"", "é"),
    ('<?xml version="1.0" encoding="latin1"?>', "latin-1", b"", "é"),
    ('<?xml version="1.0" encoding="US-ASCII"?>', "ascii", b"", "plain"),
    ('<?xml version="1.0" encoding="UTF-16"?>', "utf-16-le", b"\xff\xfe", "é中"),
    ('<?xml version="1.0" encoding="UTF-16"?>', "utf-16-be", b"\xfe\xff", "é中"),
]


@pytest.mark.parametrize("declaration,codec,bom,name", READABLE)
def test_declared_encodings_are_read(http, session, network, declaration, codec, bom, name):
    def post(*call):
        reply = http.post("/", content=bom + xml_body(declaration, *call).encode(codec))
        assert reply.status_code == 200 and "Traceback" not in reply.text, reply.text[:500]
        assert "<name>Status</name><value>Success</value>" in reply.text, reply.text[:500]
        return reply.text
    login = post("session.login_with_password", "root", ROOT_PASSWORD)
    ref = login.split("<name>Value</name><value>")[1].split("<")[0]
    post("network.set_name_label", ref, network, name)
    assert session.network.get_name_label(network) == name


def test_other_declared_encoding_is_a_fault(http, session, network):
    session.network.set_name_label(network, "before")
    for encoding in ("windows-1252", "EBCDIC-US", "no such thing"):
        declaration = f'<?xml version="1.0" encoding="{encoding}"?>'
        body = xml_body(declaration, "network.set_name_label", "s", network, "after")
        reply = http.post("/", content=body.encode("cp1252"))
        assert reply.status_code == 200, reply.text[:300]
        assert ("<value>XMLRPC_UNMARSHAL_FAILURE</value><value>UTF-8, UTF-16, ISO-8859-1 or "
                f"US-ASCII</value><value>{encoding}</value>") in reply.text
    assert session.network.get_name_label(network) == "before"


# -- item: lone surrogates and non-finite floats never reach the store --------------

def test_lone_surrogates_are_invalid_values(http, session, network):
    s = jcall(http, "session.login_with_password", "root", ROOT_PASSWORD)["result"]
    label = session.network.get_name_label(network)
    for raw in (f'["{s}","{network}","x\\ud800y"]',              # a lone high surrogate
                f'["{s}","{network}","\\udc00"]'):                # a lone low surrogate
        assert error(jcall(http, "network.set_name_label", raw=raw))[:2] == INVALID_STRING
    # Map keys and values, a task's name, under Async too: refused before anything is made.
    reply = jcall(http, "network.set_other_config", raw=f'["{s}","{network}",{{"k\\ud83d":"v"}}]')
    assert error(reply) == [*INVALID_STRING, "k\ufffd"]
    tasks = set(session.task.get_all())
    networks = set(session.network.get_all())
    for method, raw in (("task.create", f'["{s}","\\ud800","d"]'),
                        ("Async.network.create", f'["{s}",{{"name_label":"\\ud800"}}]')):
        assert error(jcall(http, method, raw=raw)) == [*INVALID_STRING, "\ufffd"]
    assert set(session.task.get_all()) == tasks
    assert set(session.network.get_all()) == networks
    assert session.network.get_name_label(network) == label
    # A surrogate *pair* is a character like any other.
    jcall(http, "network.set_name_description", raw=f'["{s}","{network}","\\ud83d\\ude00"]')
    assert session.network.get_name_description(network) == "\U0001F600"
    # Everyone can still read everything.
    assert "result" in jcall(http, "task.get_all_records", s)
    assert "result" in jcall(http, "event.from", s, ["*"], "", 0.0)


def test_xml_invalid_utf8_and_surrogate_bytes(http, session, network):
    s = jcall(http, "session.login_with_password", "root", ROOT_PASSWORD)["result"]
    for bad in (b"\xed\xa0\x80", b"\xff"):        # a UTF-8-encoded surrogate, a stray byte
        body = (f'<?xml version="1.0" encoding="UTF-8"?><methodCall><methodName>'
                f'network.set_other_config</methodName><params><param><value>{s}</value>'
                f'</param><param><value>{network}</value></param><param><value><struct>'
                f'<member><name>k').encode() + bad + (
                b"</name><value>v</value></member></struct></value></param></params>"
                b"</methodCall>")
        reply = http.post("/", content=body)
        assert reply.status_code == 200
        assert ("<value>INVALID_VALUE</value><value>Invalid UTF-8 string in parameter"
                "</value>") in reply.text


@pytest.fixture(scope="module")
def rate_limit(session):
    ref = session.Rate_limit.create({"name_label": "wire-hostile", "burst_size": 5.0,
                                     "fill_rate": 1.0})
    yield ref
    session.Rate_limit.destroy(ref)


def test_non_finite_floats_are_invalid_values(http, session, rate_limit):
    s = jcall(http, "session.login_with_password", "root", ROOT_PASSWORD)["result"]
    before = set(session.Rate_limit.get_all())
    for literal in ("Infinity", "-Infinity", "NaN", "1e999"):
        raw = f'["{s}",{{"name_label":"x","burst_size":2.0,"fill_rate":{literal}}}]'
        reply = jcall(http, "Rate_limit.create", raw=raw)
        assert error(reply)[:2] == NON_FINITE, reply
        reply = jcall(http, "Rate_limit.set_burst_size", raw=f'["{s}","{rate_limit}",{literal}]')
        assert error(reply)[:2] == NON_FINITE, reply
    for text in ("inf", "nan", "-Infinity", "1e400"):
        body = xml_body('<?xml version="1.0"?>', "Rate_limit.set_fill_rate", s, rate_limit,
                        f"<double>{text}</double>")
        reply = http.post("/", content=body.encode())
        assert ("<value>INVALID_VALUE</value><value>Non-finite float in parameter</value>"
                in reply.text), reply.text[:400]
    # A string where a float is due is no way around it.
    reply = jcall(http, "Rate_limit.set_fill_rate", s, rate_limit, "Infinity")
    assert error(reply) == ["FIELD_TYPE_ERROR", "value"]
    assert set(session.Rate_limit.get_all()) == before
    record = session.Rate_limit.get_record(rate_limit)
    assert (record["burst_size"], record["fill_rate"]) == (5.0, 1.0)
    assert "result" in jcall(http, "Rate_limit.get_all_records", s)     # strict JSON


# -- item: the outermost handler ------------------------------------------------------
# Every known way to make an exception escape a route is fixed at its root (above), so
# the handler itself is driven in-process with a dispatcher that fails on purpose.

class Broken(Exception):
    pass


@pytest.fixture
def broken_app(tmp_path, monkeypatch):
    from xapi_server.config import Settings
    from xapi_server.http.app import XapiApp

    class FakeServer:
        settings = Settings(data_dir=str(tmp_path))

        class dispatcher:
            method_names = []

            @staticmethod
            async def call(*args, **kwargs):
                raise Broken("the \ud800 bug")    # even its text cannot go out as it is
    app = XapiApp(FakeServer())

    async def run_cli(app, scope, receive, send):
        raise Broken("cli bug")
    monkeypatch.setattr("xapi_server.cli.handler.cli_route", run_cli)
    return app


def test_escaped_exceptions_are_internal_errors(broken_app, caplog):
    caplog.set_level(logging.ERROR, logger="xapi_server")
    status, ctype, body = post(broken_app, "/", xml_body("", "pool.get_all", "s").encode())
    assert (status, ctype) == (200, b"text/xml")
    assert (b"<value>Failure</value></member><member><name>ErrorDescription</name><value>"
            b"<array><data><value>INTERNAL_ERROR</value><value>Broken: the \xef\xbf\xbd bug"
            b"</value></data></array>") in body
    status, ctype, body = post(broken_app, "/jsonrpc",
                               b'{"jsonrpc":"2.0","id":"abc","method":"pool.get_all","params":[]}')
    assert (status, ctype) == (200, b"application/json")
    assert json.loads(body) == {"jsonrpc": "2.0", "id": "abc", "error": {
        "code": 1, "message": "INTERNAL_ERROR", "data": ["Broken: the \ufffd bug"]}}
    status, ctype, body = post(broken_app, "/jsonrpc",
                               b'{"id":5,"method":"pool.get_all","params":[]}')
    assert json.loads(body) == {"result": None, "id": 5,
                                "error": ["INTERNAL_ERROR", "Broken: the \ufffd bug"]}
    status, ctype, body = post(broken_app, "/cli", b"pool-list\nusername=root\n")
    from xe_cli import proto
    assert status == 200 and body == (proto.greeting()
                                      + proto.command(proto.ERROR, "INTERNAL_ERROR",
                                                      ["Broken: cli bug"])
                                      + proto.command(proto.EXIT, 1))
    # Logged once each, with the traceback, in the server's log only.
    records = [r for r in caplog.records if r.exc_info and r.exc_info[0] is Broken]
    assert len(records) == 4 and len(caplog.records) == 4
