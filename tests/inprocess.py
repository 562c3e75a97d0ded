"""The server in the test's own process: the ASGI app (XapiApp) called directly, with no
subprocess, no TLS and no sockets. For fast API tests, beside the real server of
serverproc.py (which the wire, TLS, limit and crash tests need) and the xe harness
(xapi_server/cli/testing.py).

    proc = InProcess()
    x = proc.session().xenapi          # the official SDK's proxy: x.VM.get_all()
    status, body = proc.post("/", xml) # raw bytes through the app
    proc.close()

The event loop runs only while a call is in flight: work the server schedules in the
background (Async tasks, watchers) moves on during the next call, not between calls.
libvirt is its test driver (test:///default), so nothing boots."""
import asyncio
import os
import tempfile
import xmlrpc.client

import pytest
import XenAPI

from serverproc import HOST_COMMANDS, ROOT_PASSWORD as ROOT
from xapi_server.config import Settings
from xapi_server.http.app import XapiApp
from xapi_server.server import Server

CALL_TIMEOUT = 10   # seconds: a call that hangs fails its test instead of the run


def asgi_post(app, path: str, body: bytes, run=asyncio.run):
    """POST `body` to an ASGI app in-process: (status, content type, body)."""
    out = []

    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message):
        out.append(message)
    scope = {"type": "http", "method": "POST", "path": path, "client": ("127.0.0.1", 9),
             "headers": [(b"content-length", str(len(body)).encode())], "query_string": b""}
    run(app(scope, receive, send))
    content_type = dict(out[0]["headers"]).get(b"content-type")
    return out[0]["status"], content_type, b"".join(m.get("body", b"") for m in out[1:])


class InProcess:
    """A started Server and its XapiApp on an event loop of their own; `session` is a
    root session made through the dispatcher."""

    def __init__(self):
        os.environ.setdefault("XAPI_ROOT_PASSWORD", ROOT)
        self.loop = asyncio.new_event_loop()
        self.server = Server(Settings(data_dir=tempfile.mkdtemp(prefix="xapi-fuzz-"),
                                      libvirt_uri="test:///default", auth_failure_delay=0.0,
                                      **{name: "true" for name in HOST_COMMANDS}))
        self.app = XapiApp(self.server)
        self.loop.run_until_complete(self.server.startup())
        self.session = self.loop.run_until_complete(self.server.dispatcher.call(
            "session.login_with_password", ["root", os.environ["XAPI_ROOT_PASSWORD"]]))

    def post(self, path: str, body: bytes):
        run = lambda call: self.loop.run_until_complete(  # noqa: E731
            asyncio.wait_for(call, CALL_TIMEOUT))
        status, _, reply = asgi_post(self.app, path, body, run)
        return status, reply

    def sdk_session(self, user: str = "root", password: str = ROOT) -> XenAPI.Session:
        """A logged-in official SDK session whose calls go through this app, as
        ServerProcess.session's go through TLS."""
        s = XenAPI.Session("http://in-process", transport=AsgiTransport(self))
        s.xenapi.login_with_password(user, password, "1.0", "tests")
        return s

    def close(self):
        self.loop.run_until_complete(self.server.shutdown())
        self.loop.close()


class AsgiTransport(xmlrpc.client.Transport):
    """xmlrpc.client's transport, but the request goes to an InProcess app: the SDK
    encodes the call and decodes the reply (Failure for a XenAPI error) as over HTTP."""

    def __init__(self, proc: InProcess):
        super().__init__()
        self.proc = proc

    def request(self, host, handler, request_body, verbose=False):
        status, reply = self.proc.post(handler or "/", request_body)
        if status != 200:
            raise xmlrpc.client.ProtocolError(host + handler, status, reply[:200], {})
        parser, unmarshaller = self.getparser()
        parser.feed(reply)
        parser.close()
        return unmarshaller.close()


@pytest.fixture(name="xapi")
def xapi_in_process(api):
    """The `xapi` fixture on the in-process server, for a module whose API tests need no
    wire, TLS or process of their own: `from inprocess import xapi_in_process`."""
    return api
