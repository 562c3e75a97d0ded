"""Issue 19: gzip-compressed RPC replies (the setting rpc_gzip_min_bytes).

A server with the setting on answers a big reply as one gzip member to a client whose
Accept-Encoding allows gzip (the XenAPI SDK's does), built from per-record pieces
compressed once and kept: the decoded bytes must be exactly the plain reply, whatever
gzip reader decodes them, and a changed record must show. Plain for everyone else and
for small replies."""
import gzip
import http.client
import json
import ssl
import xmlrpc.client
import zlib

import pytest
import XenAPI

from serverproc import ServerProcess
from xapi_server.http.responses import accepts_gzip
from xapi_server.wire import EncodingCache, deflate

THRESHOLD = 16 * 1024
_TLS = ssl._create_unverified_context()


@pytest.fixture(scope="module")
def gz_server(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("gzip-data")),
                         env={"XAPI_RPC_GZIP_MIN_BYTES": str(THRESHOLD)}).start()
    try:
        yield proc
    finally:
        proc.stop()


class SeenTransport(xmlrpc.client.SafeTransport):
    """The SDK's own HTTPS transport (it asks for gzip), noting each reply's
    Content-Encoding; `accept_gzip` False: as a client that does not ask."""

    def __init__(self, accept_gzip: bool):
        super().__init__(context=_TLS)
        self.accept_gzip_encoding = accept_gzip
        self.encodings: list = []

    def parse_response(self, response):
        self.encodings.append(response.getheader("Content-Encoding"))
        return super().parse_response(response)


def sdk(server, accept_gzip: bool):
    transport = SeenTransport(accept_gzip)
    session = XenAPI.Session(server.url, transport=transport, ignore_ssl=True)
    session.xenapi.login_with_password("root", "test-root-password")
    return session, transport


@pytest.fixture(scope="module")
def session_ref(gz_server):
    session = gz_server.session()
    yield session._session
    session.xenapi.session.logout()


def post(server, path: str, body: bytes, accept_encoding: str | None):
    """(status, headers, raw body bytes); `accept_encoding` None sends no such header."""
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, context=_TLS, timeout=60)
    try:
        conn.putrequest("POST", path, skip_accept_encoding=True)
        conn.putheader("Content-Type", "text/xml" if path == "/" else "application/json")
        conn.putheader("Content-Length", str(len(body)))
        if accept_encoding is not None:
            conn.putheader("Accept-Encoding", accept_encoding)
        conn.endheaders(body)
        reply = conn.getresponse()
        data = reply.read()
        assert reply.status == 200, data[:300]
        return reply.status, {k.lower(): v for k, v in reply.getheaders()}, data
    finally:
        conn.close()


def xml_call(method: str, *params) -> bytes:
    return xmlrpc.client.dumps(params, method).encode()


def json_call(method: str, *params) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                       "id": 3}).encode()


def as_text(value):
    """A decoded reply with every int and date as its text, so that XML-RPC's and
    JSON-RPC's answers compare."""
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_text(v) for v in value]
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def single_member(data: bytes) -> bytes:
    """The bytes of a gzip body that both stdlib readers decode alike, checked to be
    exactly one member with nothing after it."""
    reader = zlib.decompressobj(31)
    decoded = reader.decompress(data) + reader.flush()
    assert reader.eof and reader.unused_data == b""
    assert gzip.decompress(data) == decoded
    return decoded


def settled(fetch, tries: int = 5) -> list:
    """fetch()'s values once they agree. A record may move between two requests (the
    server's own updates), so a disagreement is fetched again a few times; one that
    persists is a real difference and fails the test."""
    for _ in range(tries):
        values = fetch()
        if all(value == values[0] for value in values):
            return values
    pytest.fail(f"the replies still differ after {tries} tries")


def test_accept_encoding_parsing():
    def allows(value):
        return accepts_gzip({"headers": [] if value is None
                             else [(b"accept-encoding", value.encode())]})
    for value in ("gzip", "GZip", "gzip, deflate", "deflate;q=1.0, gzip;q=0.5", "x-gzip",
                  "*", "identity, *;q=0.1", "gzip;q=0, gzip"):
        assert allows(value), value
    for value in (None, "", "identity", "deflate", "gzip;q=0", "gzip; q=0.000",
                  "*;q=0", "gzip;q=0, *", "gzip;q=nonsense", "br"):
        assert not allows(value), value


def test_sdk_gets_the_same_records_with_and_without_gzip(gz_server, session_ref):
    asked, asked_transport = sdk(gz_server, True)
    plain, plain_transport = sdk(gz_server, False)
    def fetch():
        body = post(gz_server, "/jsonrpc", json_call("VM.get_all_records", session_ref),
                    None)[2]
        # XML-RPC carries ints as strings and dates as DateTime (as xapi's does)
        return [as_text(asked.xenapi.VM.get_all_records()),
                as_text(plain.xenapi.VM.get_all_records()),
                as_text(json.loads(body)["result"])]
    try:
        records = settled(fetch)[0]
        assert asked_transport.encodings[-1] == "gzip"      # it was compressed
        assert plain_transport.encodings[-1] is None
        assert len(records) > 1
    finally:
        asked.xenapi.session.logout()
        plain.xenapi.session.logout()


@pytest.mark.parametrize("path,make", [("/", xml_call), ("/jsonrpc", json_call)])
def test_gzip_body_is_one_member_of_the_identity_body(gz_server, session_ref, path, make):
    body = make("VM.get_all_records", session_ref)
    _, plain_headers, plain = post(gz_server, path, body, "identity")
    assert len(plain) > THRESHOLD       # else this test would prove nothing
    assert "content-encoding" not in plain_headers
    last = {}

    def fetch():
        _, last["headers"], last["zipped"] = post(gz_server, path, body, "gzip")
        return [single_member(last["zipped"]), post(gz_server, path, body, None)[2]]
    settled(fetch)
    headers = last["headers"]
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(last["zipped"]) < len(plain)
    # a full event.from: each event's cached head and snapshot pieces
    events = make("event.from", session_ref, ["VM"], "", 0.0)
    _, _, plain_events = post(gz_server, path, events, None)
    _, headers, zipped_events = post(gz_server, path, events, "deflate, gzip;q=0.8")
    assert headers["content-encoding"] == "gzip"
    # The same VMs and names (the events' ids and token move between two calls).
    assert named_snapshots(single_member(zipped_events), path) == \
        named_snapshots(plain_events, path)


def named_snapshots(reply: bytes, path: str) -> dict:
    value = (json.loads(reply)["result"] if path == "/jsonrpc"
             else xmlrpc.client.loads(reply)[0][0]["Value"])
    return {e["ref"]: e["snapshot"]["name_label"] for e in value["events"]}


@pytest.mark.parametrize("accept", [None, "identity", "gzip;q=0", "*;q=0", "br"])
def test_plain_unless_gzip_is_acceptable(gz_server, session_ref, accept):
    body = xml_call("VM.get_all_records", session_ref)
    _, headers, data = post(gz_server, "/", body, accept)
    assert "content-encoding" not in headers
    assert int(headers["content-length"]) == len(data) > THRESHOLD
    assert data.startswith(b"<?xml") and xmlrpc.client.loads(data)[0][0]["Status"] == "Success"


def test_compressed_reply_shows_a_change(gz_server, session_ref):
    """A record's compressed piece is kept; after the record changes, the reply must
    carry the new value (a new encoding, a new compressed piece), as the plain one."""
    body = json_call("VM.get_all_records", session_ref)
    first = json.loads(single_member(post(gz_server, "/jsonrpc", body, "gzip")[2]))["result"]
    vm = next(ref for ref, r in first.items() if not r["is_control_domain"])
    for label in ("gzip-label-1", "gzip-label-2"):
        post(gz_server, "/jsonrpc", json_call("VM.set_name_label", session_ref, vm, label),
             None)
        for path, make in (("/jsonrpc", json_call), ("/", xml_call)):
            request = make("VM.get_all_records", session_ref)
            zipped = settled(lambda: [single_member(post(gz_server, path, request, "gzip")[2]),
                                      post(gz_server, path, request, None)[2]])[0]
            assert f">{label}<".encode() in zipped or f'"{label}"'.encode() in zipped


def test_small_replies_stay_plain(gz_server, session_ref):
    for path, body in (("/", xml_call("session.get_this_host", session_ref, session_ref)),
                       ("/jsonrpc", json_call("VM.get_all", session_ref))):
        _, headers, data = post(gz_server, path, body, "gzip")
        assert len(data) <= THRESHOLD
        assert "content-encoding" not in headers
        assert headers["vary"] == "Accept-Encoding"


def test_off_by_default(server):
    """The default server (setting 0) answers as xapi does: never compressed."""
    session = server.session()
    try:
        _, headers, data = post(server, "/", xml_call("VM.get_all_records", session._session),
                                "gzip")
    finally:
        session.xenapi.session.logout()
    assert len(data) > THRESHOLD
    assert "content-encoding" not in headers and "vary" not in headers


def test_gzip_chunks_of_every_kind_of_piece():
    """The writer's own pieces in every form (stored, compressed when a run is long,
    empty) between kept pieces make one member decoding to the joined pieces."""
    kept = [(f"<record n='{n}'>" + "field " * 400 + "</record>").encode() for n in range(3)]

    class Holder:
        def holds(self, piece):
            return any(piece is k for k in kept)
    loose = [b"", b"<member><name>OpaqueRef:1</name>", bytes(range(256)) * 300,
             b"tail" * 20000]
    pieces = [loose[0], kept[0], loose[1], kept[1], loose[2], kept[2], kept[0], loose[3]]
    zipped = b"".join(deflate.gzip_chunks(pieces, [Holder()]))
    assert single_member(zipped) == b"".join(pieces)


def test_encoding_cache_tells_its_own_pieces():
    """holds(): true for the very bytes a kept encoding is made of (before and after the
    index exists), false for equal bytes made elsewhere and for a swept entry's."""
    class Record(dict):
        pass
    cache = EncodingCache(lambda r: (b"head" * 300, str(r["n"]).encode() * 2000), floor=1)
    first, second = Record(n=1), Record(n=2)
    head, body = cache.get(first)
    assert cache.holds(body) and cache.holds(head)
    assert not cache.holds(bytes(bytearray(body)))         # equal, not the same object
    later = cache.get(second)[1]                             # encoded after the index
    assert cache.holds(later)
    del first
    cache.sweep()                                            # first's entry goes
    assert not cache.holds(body) and cache.holds(later)
