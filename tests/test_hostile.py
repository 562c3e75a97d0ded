"""A hostile client against the real server, beside honest ones.

While honest root clients keep writing (each acknowledged write is noted), hostile clients
hit the server at the same time over HTTPS: first anonymously (bodies that are no request,
every XML declaration and byte-order mark, other encodings, lone surrogates, NaN, deep
nesting, huge names and user agents, login floods), then logged in with each role, calling
every message of the datamodel with hostile arguments (lone surrogates, non-finite floats,
huge and nested values, refs that are no refs).

What must hold: the server stays up and answers each request with a XenAPI result or fault
(HTTP 500 only for a body that is no request at all, 413/431 for what is too big), never a
traceback and never INTERNAL_ERROR (hostile input is the client's error, not ours); every
acknowledged honest write is there afterwards, and still there after kill -9 and a restart.
"""
from __future__ import annotations

import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from serverproc import ServerProcess, add_local_user
from xapi_server.datamodel import METHODS, ROLES, Enum, Map, Prim, Record, Ref, Set

HONEST_WRITERS = 6
HOSTILE_THREADS = 12
# Classes the role sweep leaves out: session (a hostile logout only ends its own sweep)
# and the rate limiter's (a limit on "*" is an admin's right and would only slow the
# honest writers down, which is not what this test is about).
SKIPPED_CLASSES = {"session", "Caller", "Rate_limit"}
# host.shutdown_agent stops the server, as it should for its pool-admin caller.
SKIPPED_METHODS = {"host.shutdown_agent"}
ALLOWED_STATUS = {200, 413, 431}


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("hostile")),
                         env={"XAPI_AUTH_FAILURE_DELAY": "0.05",
                                              "XAPI_CLI_IDLE_TIMEOUT": "3"}).start()
    try:
        yield proc
    finally:
        proc.kill()


class Honest:
    """Root clients that each own a VM and add a new other_config key per round."""

    def __init__(self, server: ServerProcess):
        self.server = server
        admin = server.session().xenapi
        template = next(ref for ref, rec in admin.VM.get_all_records().items()
                        if rec["is_a_template"])
        self.vms = [admin.VM.clone(template, f"honest-{i}") for i in range(HONEST_WRITERS)]
        self.acked: dict[str, dict[str, str]] = {vm: {} for vm in self.vms}
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._write, args=(vm,)) for vm in self.vms]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _write(self, vm):
        x = self.server.session().xenapi
        n = 0
        while not self.stop.is_set():
            key, value = f"k{n}", f"v{n}-{vm[-6:]}"
            try:
                x.VM.add_to_other_config(vm, key, value)
                self.acked[vm][key] = value
            except Exception as exc:   # noqa: BLE001  (any failure of an honest call counts)
                self.failures.append(f"{vm} {key}: {exc!r}")
            n += 1

    def check(self, server: ServerProcess, what: str):
        x = server.session().xenapi
        for vm, acked in self.acked.items():
            stored = x.VM.get_other_config(vm)
            lost = {k: v for k, v in acked.items() if stored.get(k) != v}
            assert not lost, f"{what}: {len(lost)} acknowledged writes lost on {vm}"
        assert sum(map(len, self.acked.values())) > 50, "the honest clients barely wrote"


# -- what a reply may be ------------------------------------------------------------

def check_reply(response: httpx.Response, what: str, malformed_ok: bool):
    text = response.text
    assert "Traceback" not in text and 'File "' not in text, (what, text[:300])
    if response.status_code in (400, 500) and malformed_ok:
        return None
    assert response.status_code in ALLOWED_STATUS, (what, response.status_code, text[:300])
    if response.status_code != 200:
        return None
    return text


def fault_code(text: str, json_rpc: bool) -> str | None:
    """The XenAPI error code of a reply, or None for a success."""
    if json_rpc:
        body = json.loads(text)
        error = body.get("error")
        if error is None:
            return None
        return error[0] if isinstance(error, list) else error.get("message")
    if "<name>Status</name><value>Success</value>" in text:
        return None
    assert "<name>ErrorDescription</name>" in text or "<fault>" in text, text[:300]
    start = text.find("<name>ErrorDescription</name>")
    inner = text[start:].split("<value>", 3)
    return inner[3].split("<", 1)[0] if len(inner) > 3 else "?"


# -- anonymous bodies -----------------------------------------------------------------

def _xml_call(method: str, params_xml: str | list[str], declaration: str = "") -> str:
    values = [params_xml] if isinstance(params_xml, str) else params_xml
    params = "".join(f"<param><value>{v}</value></param>" for v in values if v)
    params = f"<params>{params}</params>" if params else ""
    return f"{declaration}<methodCall><methodName>{method}</methodName>{params}</methodCall>"


def anonymous_bodies(rng: random.Random) -> list[tuple[str, bytes, bool, dict]]:
    """(path, body, is_a_request, headers) of hostile requests that need no account.
    is_a_request False: the body is no request at all (HTTP 500 allowed, as xapi)."""
    login = ["root", "wrong", "1.0", "hostile"]
    out = []
    for decl in ('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-8"?>',
                 "<?xml version='1.0' encoding='utf-8'?>", '<?xml version="1.0" encoding="utf8"?>',
                 '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'):
        body = _xml_call("session.login_with_password", login, decl)
        out.append(("/", body.encode(), True, {}))
        out.append(("/", b"\xef\xbb\xbf" + body.encode(), True, {}))
    body = _xml_call("pool.get_all", "<string>caf\u00e9</string>",
                     '<?xml version="1.0" encoding="ISO-8859-1"?>')
    out.append(("/", body.encode("latin-1"), True, {}))
    body = _xml_call("pool.get_all", "x", '<?xml version="1.0" encoding="UTF-16"?>')
    out.append(("/", body.encode("utf-16"), True, {}))
    out.append(("/", _xml_call("host.get_all", "<double>nan</double>").encode(), True, {}))
    out.append(("/", _xml_call("host.get_all", "<double>inf</double>").encode(), True, {}))
    out.append(("/", _xml_call("x" * 100_000, "").encode(), True, {}))
    nested = "<array><data><value>" * 5000 + "</value></data></array>" * 5000
    out.append(("/", _xml_call("host.get_all", nested).encode(), False, {}))
    laughs = ('<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
              '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><methodCall><methodName>&b;'
              '</methodName></methodCall>')
    out.append(("/", laughs.encode(), False, {}))
    out.append(("/", b"<methodCall><methodName>a\xff\xfe</methodName></methodCall>", True, {}))
    for junk in (b"", b"\x00" * 64, bytes(rng.randrange(256) for _ in range(512)),
                 b"<methodCall>", b"{", b"[1,2"):
        out.append(("/", junk, False, {}))
        out.append(("/jsonrpc", junk, False, {}))
    for params in ('["\\ud800", "x"]', '[NaN]', '[Infinity, -Infinity]', '[{"\\udfff": 1}]',
                   '["' + "a" * 200_000 + '"]', "[" * 10_000 + "]" * 10_000):
        text = '{"jsonrpc": "2.0", "method": "session.login_with_password", "id": 1, ' \
               f'"params": {params}}}'
        out.append(("/jsonrpc", text.encode(), "[[[[" not in params, {}))
    huge = "u" * 2_000_000
    out.append(("/jsonrpc", json.dumps({"jsonrpc": "2.0", "id": 1,
                                        "method": "session.login_with_password",
                                        "params": [huge, "x", "1.0", huge]}).encode(),
                True, {"user-agent": "a" * 6000}))
    # A control byte in a header is no HTTP request (the HTTP parser answers 400);
    # obs-text bytes (0x80-0xff) are allowed in header values.
    for ua, is_http in ((b"\x7f" * 100, False), (b"A" * 8000, True),
                        (b"monitor" + b"\xff" * 10, True)):
        out.append(("/jsonrpc", json.dumps({"jsonrpc": "2.0", "id": 2, "method": "pool.get_all",
                                            "params": ["OpaqueRef:nope"]}).encode(), is_http,
                    {"user-agent": ua}))
    # /cli greets and then waits for the client's greeting: a client that never sends
    # one is dropped after cli_idle_timeout (short here), which is all it may expect.
    out.append(("/cli", b"junk\n\x00\xff", False, {}))
    return out


# -- hostile arguments for a typed parameter ---------------------------------------------

BOGUS_REFS = ["OpaqueRef:NULL", "OpaqueRef:00000000-dead-beef-0000-000000000000", "",
              "OpaqueRef:../../../etc/passwd", "x" * 5000]


def hostile_value(t, rng: random.Random, depth: int = 0):
    """A JSON-ready value for a parameter of type t, chosen to hurt; lone surrogates and
    non-finite floats are written into the JSON text by `encode_json` below."""
    if isinstance(t, Prim):
        choices = {
            "string": ["\ud800", "a\udfffb", "x" * 100_000, "\x00\x01", "caf\u00e9 \u2603",
                       "field=\"x\" or true", "'; DROP TABLE VM; --"],
            "int": [2 ** 63, -(2 ** 63) - 1, "12e400", -1, 0],
            "float": [float("nan"), float("inf"), float("-inf"), "nan", "inf", 1e308, -0.0],
            "bool": ["true", 1, None],
            "datetime": ["not a date", "99999999T99:99:99Z", "\ud800", 5],
            "void": [None],
        }[t.name]
        return rng.choice(choices)
    if isinstance(t, Ref):
        return rng.choice(BOGUS_REFS + [12, None])
    if isinstance(t, Enum):
        return rng.choice([t.values[0].upper(), "\ud800", "no-such-value", 7])
    if isinstance(t, Set):
        if depth > 2:
            return []
        return rng.choice([[hostile_value(t.elem, rng, depth + 1) for _ in range(3)],
                           "not a list", [[[]]]])
    if isinstance(t, (Map, Record)):
        if depth > 2:
            return {}
        return rng.choice([
            {"\ud800": "x", "k": "\udc00"},
            {f"k{i}": "v" * 100 for i in range(2000)},
            {"name_label": "\ud800", "memory_static_max": float("nan"), "VCPUs_max": 2 ** 70},
            {"a": {"b": {"c": {"d": [float("inf")]}}}},
            [],
        ])
    return None


def encode_json(value) -> str:
    # json.dumps writes lone surrogates as \\udXXX escapes and floats as NaN/Infinity:
    # exactly the text a careless or hostile client sends.
    return json.dumps(value, ensure_ascii=True, allow_nan=True)


def role_calls(rng: random.Random):
    methods = [m for m in METHODS.values() if m.session and m.cls not in SKIPPED_CLASSES
               and m.wire_name not in SKIPPED_METHODS]
    return [(m.wire_name, [hostile_value(p.type, rng) for p in m.params]) for m in methods]


# -- the test ---------------------------------------------------------------------------

def _client(server: ServerProcess) -> httpx.Client:
    return httpx.Client(base_url=server.url, verify=False, timeout=60)


def test_hostile_clients_beside_honest_ones(hostile_server):
    server = hostile_server
    admin = server.session().xenapi
    sessions = {}
    for role in ROLES:
        add_local_user(admin, f"hostile-{role}", role, f"pw-{role}")
        sessions[role] = server.session(f"hostile-{role}", f"pw-{role}")._session
    rng = random.Random(12)
    problems: list[str] = []
    counts = {"requests": 0, "faults": 0}
    lock = threading.Lock()

    local = threading.local()
    clients: list[httpx.Client] = []

    def send(path, body, is_request, headers, json_rpc):
        what = f"{path} {body[:80]!r}"
        if not hasattr(local, "client"):
            local.client = _client(server)
            with lock:
                clients.append(local.client)
        try:
            response = local.client.post(path, content=body, headers=headers)
        except httpx.HTTPError as exc:
            # The server may close a connection on a request that is too big or too
            # nested to read; a dropped connection is not a reply, but not a crash.
            with lock:
                counts["requests"] += 1
            return f"dropped: {exc!r} for {what}" if is_request else None
        try:
            text = check_reply(response, what, malformed_ok=not is_request or path == "/cli")
            code = fault_code(text, json_rpc) if text and path != "/cli" else None
        except AssertionError as exc:
            return f"bad reply: {exc}"
        with lock:
            counts["requests"] += 1
            counts["faults"] += code is not None
        if code == "INTERNAL_ERROR":
            return f"INTERNAL_ERROR for {what}: {text[:300]}"
        return None

    jobs = [(path, body, is_request, headers, path == "/jsonrpc")
            for path, body, is_request, headers in anonymous_bodies(rng)]
    for role, session in sessions.items():
        for method, args in role_calls(rng):
            body = ('{"jsonrpc":"2.0","id":7,"method":' + json.dumps(method)
                    + ',"params":' + encode_json([session, *args]) + "}").encode()
            jobs.append(("/jsonrpc", body, True, {"user-agent": f"hostile-{role}"}, True))
    rng.shuffle(jobs)

    started = time.monotonic()
    with Honest(server) as honest:
        with ThreadPoolExecutor(HOSTILE_THREADS) as pool:
            for problem in pool.map(lambda job: send(*job), jobs):
                if problem:
                    problems.append(problem)
        for client in clients:
            client.close()
        # The server still answers a small call quickly once the storm is over.
        probe = time.monotonic()
        server.session().xenapi.pool.get_all()
        probe = time.monotonic() - probe
    print(f"{counts['requests']} hostile requests ({counts['faults']} faults) in "
          f"{time.monotonic() - started:.1f} s; probe afterwards {probe * 1000:.0f} ms; "
          f"{sum(map(len, honest.acked.values()))} honest writes")
    assert server.proc.poll() is None, "the server died"
    assert not honest.failures, honest.failures[:5]
    assert not problems, f"{len(problems)} bad replies:\n" + "\n".join(problems)
    assert counts["requests"] > 4000
    honest.check(server, "after the storm")
    server.kill()
    server.start()
    honest.check(server, "after kill -9 and a restart")
