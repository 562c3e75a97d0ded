"""HTTP routes as declarations (xapi_server/http/routes.py) and their authentication
(http/auth.py), through the real server: /audit_log with a session in the query, in a
cookie, or HTTP Basic (a temporary session, gone afterwards), refusals as xapi's
handlers answer them (401 without a valid session, 403 without the permission)."""
import asyncio
import base64
import json
import time

import httpx
import pytest

import inprocess   # the server in this process (the ASGI app without a subprocess)
from serverproc import ROOT_PASSWORD, ServerProcess, add_local_user
from xapi_server.http.app import XapiApp
from xapi_server.http.auth import SESSION_KEY
from xapi_server.http.routes import ROUTES, SESSION, Route
from xapi_server.rbac import HTTP_PERMISSIONS, permissions


@pytest.fixture(scope="module")
def users(server):
    """A pool-admin and a read-only local account (made once per module)."""
    admin = server.session().xenapi
    for role in ("pool-admin", "read-only"):
        add_local_user(admin, f"routes-{role}", role, f"pw-routes-{role}")
    yield
    admin.session.logout()


def audit_log(server, **kwargs) -> httpx.Response:
    with httpx.Client(verify=False, timeout=60) as http:
        return http.get(f"{server.url}/audit_log", **kwargs)


def is_audit_log(reply: httpx.Response) -> bool:
    lines = [json.loads(line) for line in reply.text.splitlines()]
    return (reply.status_code == 200 and bool(lines)
            and all("method" in line for line in lines))


def users_with_sessions(xapi) -> list:
    """The subject identifiers of every live session's user (there is no session.get_all
    in xapi's API, nor here: the in-process tests below count the store's sessions)."""
    return xapi.session.get_all_subject_identifiers()


def cookie(ref: str) -> dict:
    return {"Cookie": f"session_id={ref}"}


def test_session_in_the_query_or_a_cookie(server, xapi, users):
    admin = server.session("routes-pool-admin", "pw-routes-pool-admin")
    try:
        assert is_audit_log(audit_log(server, params={"session_id": admin._session}))
        assert is_audit_log(audit_log(server, headers=cookie(admin._session)))
        # the cookie comes first, as xapi reads it: a bad query cannot spoil it
        assert is_audit_log(audit_log(server, headers=cookie(admin._session),
                                      params={"session_id": "OpaqueRef:nothing"}))
        # xapi's older cookie form (`&` between pairs), percent-encoded
        old_form = "a=1&session_id=" + admin._session.replace(":", "%3A")
        assert is_audit_log(audit_log(server, headers={"Cookie": old_form}))
    finally:
        admin.xenapi.session.logout()


def test_http_basic_logs_out_its_temporary_session(server, xapi, users):
    before = users_with_sessions(xapi)
    assert not {"local:routes-pool-admin", "local:routes-read-only"} & set(before)
    assert is_audit_log(audit_log(server, auth=("root", ROOT_PASSWORD)))
    assert is_audit_log(audit_log(server, auth=("routes-pool-admin", "pw-routes-pool-admin")))
    refused = audit_log(server, auth=("routes-read-only", "pw-routes-read-only"))
    assert refused.status_code == 403
    assert users_with_sessions(xapi) == before
    # the Basic logins went through session.login_with_password, audited as any login
    entries = [json.loads(line) for line in audit_log(server, auth=("root", ROOT_PASSWORD))
               .text.splitlines()]
    assert any(e["method"] == "session.login_with_password"
               and e["originator"].endswith("using Basic auth") for e in entries)


def test_read_only_is_refused(server, users):
    reader = server.session("routes-read-only", "pw-routes-read-only")
    try:
        for kwargs in ({"params": {"session_id": reader._session}},
                       {"headers": cookie(reader._session)}):
            reply = audit_log(server, **kwargs)
            assert reply.status_code == 403
            assert "RBAC_PERMISSION_DENIED http/get_audit_log" in reply.text
    finally:
        reader.xenapi.session.logout()


def test_no_valid_credentials_is_401(server, xapi, users):
    before = users_with_sessions(xapi)
    for kwargs in ({}, {"params": {"session_id": "OpaqueRef:nothing"}},
                   {"headers": cookie("")},
                   {"auth": ("routes-pool-admin", "wrong")},
                   {"auth": ("root", "wrong")},
                   {"headers": {"Authorization": "Bearer abc"}},
                   {"headers": {"Authorization": "Basic !!not base64"}}):
        reply = audit_log(server, **kwargs)
        assert reply.status_code == 401, kwargs
        assert reply.headers["www-authenticate"].startswith("Basic realm=")
        assert '"method"' not in reply.text
    assert users_with_sessions(xapi) == before


def test_an_expired_session_is_refused_and_ended(tmp_path):
    """The same idle expiry as RPC calls (Dispatcher.check_session)."""
    proc = ServerProcess(str(tmp_path / "d"), env={"XAPI_SESSION_IDLE_TIMEOUT": "2"}).start()
    try:
        session = proc.session()
        ref = session._session
        assert is_audit_log(audit_log(proc, params={"session_id": ref}))
        time.sleep(3)
        assert audit_log(proc, params={"session_id": ref}).status_code == 401
        reply = session._ServerProxy__request("pool.get_all", (ref,))
        assert reply["ErrorDescription"] == ["SESSION_INVALID", ref]
    finally:
        proc.stop()


def test_http_permissions_are_in_the_rbac_tables(xapi):
    for route in ROUTES:
        if route.permission is not None:
            assert route.auth == SESSION
            assert route.permission in HTTP_PERMISSIONS
    admin = xapi.role.get_by_name_label("pool-admin")[0]
    reader = xapi.role.get_by_name_label("read-only")[0]
    assert "http/get_audit_log" in xapi.role.get_permissions_name_label(admin)
    assert "http/get_audit_log" not in xapi.role.get_permissions_name_label(reader)
    assert xapi.role.get_by_permission_name_label("http/get_audit_log") == [admin]
    assert "http/get_audit_log" not in permissions("pool-operator")


def raw_request(server, head: bytes) -> bytes:
    """Send a request head over TLS; everything the server answers until it closes."""
    from serverproc import tls_connect
    sock = tls_connect(server.port)
    try:
        sock.sendall(head)
        out = b""
        while True:
            data = sock.recv(65536)
            if not data:
                return out
            out += data
            if b"\r\n\r\n" in out and b"connection: close" not in out.lower():
                return out
    finally:
        sock.close()


def test_paths_are_prefixes_and_unknown_methods_501(server, xapi):
    """xapi's dispatch: the longest registered prefix of the method wins; a method with
    no handler at all is 501, a known one with no matching path 403; any other POST is
    XML-RPC, any other GET the index (404 but for /)."""
    session = server.session()
    try:
        # /audit_log/ and /audit_logfoo reach /audit_log (prefix, not segment)
        for path in ("/audit_log/", "/audit_logfoo"):
            assert is_audit_log(audit_log_at(server, path, session._session))
    finally:
        session.xenapi.session.logout()
    assert raw_request(server, b"DELETE / HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 501")
    assert raw_request(server, b"PUT /nothing HTTP/1.0\r\ncontent-length: 0\r\n\r\n") \
        .startswith(b"HTTP/1.1 403")
    with httpx.Client(verify=False, timeout=60) as http:
        assert http.get(f"{server.url}/no/such/file").status_code == 404
        reply = http.post(f"{server.url}/any/path", content=(
            "<?xml version='1.0'?><methodCall><methodName>session.logout</methodName>"
            "<params><param><value>OpaqueRef:x</value></param></params></methodCall>"))
        assert reply.status_code == 200 and b"SESSION_INVALID" in reply.content


def audit_log_at(server, path, ref) -> httpx.Response:
    with httpx.Client(verify=False, timeout=60) as http:
        return http.get(f"{server.url}{path}", params={"session_id": ref})


def test_a_refused_request_fails_the_task_it_names(server, xapi, users):
    """xapi_http.ml: when a handler's auth fails, the task the client passed fails with
    SESSION_AUTHENTICATION_FAILED (401) or RBAC_PERMISSION_DENIED (403)."""
    task = xapi.task.create("mine", "")
    reply = audit_log(server, params={"session_id": "OpaqueRef:nothing", "task_id": task})
    assert reply.status_code == 401
    record = xapi.task.get_record(task)
    assert record["status"] == "failure"
    assert record["error_info"][0] == "SESSION_AUTHENTICATION_FAILED"
    reader = server.session("routes-read-only", "pw-routes-read-only")
    try:
        task = reader.xenapi.task.create("readers", "")
        reply = audit_log(server, params={"session_id": reader._session, "task_id": task})
        assert reply.status_code == 403
        assert reader.xenapi.task.get_error_info(task)[:2] == [
            "RBAC_PERMISSION_DENIED", "http/get_audit_log"]
    finally:
        reader.xenapi.session.logout()


def test_a_route_needs_a_declared_permission():
    async def body(app, scope, receive, send):
        pass
    with pytest.raises(ValueError, match="not in rbac.HTTP_PERMISSIONS"):
        Route("GET", ("/x",), body, permission="http/get_nothing", auth=SESSION)
    with pytest.raises(ValueError, match="needs a session"):
        Route("GET", ("/x",), body, permission="http/get_audit_log")


# -- in-process (the ASGI app without a subprocess): the store's sessions counted --

class InProcess(inprocess.InProcess):
    def sessions(self) -> int:
        return len(self.server.store.tables["session"])


@pytest.fixture(scope="module")
def inproc():
    proc = InProcess()
    yield proc
    proc.close()


def basic(user: str, password: str) -> tuple:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (b"authorization", f"Basic {token}".encode())


async def asgi_get(app, path: str, headers=(), cancel_after: float | None = None):
    """GET through the ASGI app: (status, body), or None when cancelled on purpose."""
    out = []

    async def receive():
        await asyncio.Event().wait()    # no body; the client never disconnects

    async def send(message):
        out.append(message)
    scope = {"type": "http", "method": "GET", "path": path, "client": ("127.0.0.1", 9),
             "headers": list(headers), "query_string": b""}
    task = asyncio.ensure_future(app(scope, receive, send))
    if cancel_after is None:
        await task
        return out[0]["status"], b"".join(m.get("body", b"") for m in out[1:])
    await asyncio.sleep(cancel_after)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.1)     # the shielded logout finishes
    return None


def test_basic_sessions_end_with_the_request_in_process(inproc):
    app = XapiApp(inproc.server)
    before = inproc.sessions()
    status, body = inproc.loop.run_until_complete(
        asgi_get(app, "/audit_log", [basic("root", ROOT_PASSWORD)]))
    assert status == 200 and inproc.sessions() == before
    status, _ = inproc.loop.run_until_complete(
        asgi_get(app, "/audit_log", [basic("root", "wrong")]))
    assert status == 401 and inproc.sessions() == before


def test_a_declared_route_gets_its_session_and_ends_it_when_cancelled(inproc):
    """The machinery the data handlers use: a declared route's body gets a Request with
    the session (also in scope[SESSION_KEY]); a Basic session ends even when the request
    is cancelled."""
    seen = []

    async def slow(req):
        seen.append(req.session)
        assert req.scope[SESSION_KEY] == req.session
        await asyncio.Event().wait()
    app = XapiApp(inproc.server, routes=(
        Route("GET", ("/slow",), slow, permission="http/get_audit_log", auth=SESSION),))
    before = inproc.sessions()
    assert inproc.loop.run_until_complete(
        asgi_get(app, "/slow", [basic("root", ROOT_PASSWORD)], cancel_after=0.5)) is None
    assert seen and seen[0].startswith("OpaqueRef:")
    assert inproc.sessions() == before
