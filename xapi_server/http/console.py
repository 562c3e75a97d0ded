"""A VM's consoles over HTTP, as xapi's console.ml serves them.

    CONNECT /console?uuid=|ref=   raw bytes both ways after xapi's exact 200 header block
    GET /console?uuid=|ref=       the same in WebSocket binary frames (http/websocket.py)

`uuid` is a VM's uuid, else a console's; `ref` a VM or a console. A VM means its rfb
console: QEMU's VNC server, on the UNIX socket libvirt made for it (the live domain
XML names it; no TCP port anywhere), spoken to as RFB 3.3 to 3.8 (XenCenter only speaks 3.3; QEMU accepts it). A
vt100 console is the guest's serial port, through libvirt's console stream
(`xe console`). The VM must be Running on this host; a console that does not answer is
404; an unknown VM or console, or a VM elsewhere, is xapi's 500 page.

pool.limit_console_sessions: a CONNECT to a VM someone is connected to gets 503
"Connection Limit Exceeded" naming the users, a WebSocket always gets a 503 header
block (xapi's wsproxy does not count). pool.vm_console_idle_timeout (seconds, 0 off)
closes a session without a key press, pointer move or QEMU input message for that long
(rfb_activity.py; for a vt100 console any typed byte counts), WebSocket sessions too
(xapi's wsproxy had no idle monitor).
"""
from __future__ import annotations

import asyncio
import contextlib
import html
import logging
from dataclasses import dataclass

from ..backends.hypervisor import HypervisorError
from ..errors import ApiError
from . import auth, websocket
from .dataplane import Refusal, Request
from .raw import ClientGone
from .rfb_activity import RfbActivity

log = logging.getLogger(__name__)

OK_LINES = ["HTTP/1.1 200 OK", "Connection: keep-alive", "Cache-Control: no-cache, no-store"]
READ_SIZE = 64 * 1024
# The extra permission a control domain's console needs, by the route's (rbac.py).
HOST_CONSOLE = {"http/connect_console": "http/connect_console/host_console",
                "http/connect_console_ws": "http/connect_console_ws/host_console_ws",
                "http/get_vncsnapshot": "http/get_vncsnapshot/host_console"}
IDLE_POLL = 5.0          # seconds between idle checks (xapi's proxy_poll_period_timeout)


@dataclass(frozen=True)
class Target:
    console: str
    vm: str
    vm_uuid: str
    protocol: str          # rfb | vt100


def find_target(req: Request) -> Target:
    """xapi's console_of_request and check_vm_is_running_here; failures are ApiErrors,
    which the framework answers with xapi's 500 page."""
    store = req.server.store
    uuid, ref = req.param("uuid"), req.param("ref")
    if uuid is not None:
        ref = _by_uuid(store, "VM", uuid) or _by_uuid(store, "console", uuid)
        if ref is None:
            raise ApiError("UUID_INVALID", "console", uuid)
    elif ref is None:
        raise ApiError("INVALID_VALUE", "ref", "a console request needs ref= or uuid=")
    if store.exists("VM", ref):
        consoles = [c for c in store.record("VM", ref)["consoles"]
                    if store.get("console", c, "protocol") == "rfb"]
        if not consoles:
            raise ApiError("HANDLE_INVALID", "console", "the VM has no rfb console")
        console = consoles[0]
    elif store.exists("console", ref):
        console = ref
    else:
        raise ApiError("HANDLE_INVALID", "console", ref)
    rec = store.record("console", console)
    vm = rec["VM"]
    if store.get("VM", vm, "is_control_domain"):
        try:
            auth.check_permission(req.server, req.session,
                                  HOST_CONSOLE[req.route.permission])
        except auth.Refused as refused:
            raise Refusal(403, refused.error) from None
    running = store.record("VM", vm)
    if running["power_state"] != "Running":
        raise ApiError("VM_BAD_POWER_STATE", vm, "Running", running["power_state"])
    if running["resident_on"] != req.server.host_ref:
        raise ApiError("VM_NOT_RESIDENT_HERE", vm, req.server.host_ref)
    if rec["protocol"] not in ("rfb", "vt100"):
        raise ApiError("INVALID_VALUE", "protocol", rec["protocol"])
    return Target(console, vm, running["uuid"], rec["protocol"])


def _by_uuid(store, cname: str, uuid: str) -> str | None:
    try:
        return store.by_uuid(cname, uuid)
    except ApiError:
        return None


class _SocketEnd:
    """The VNC server's UNIX socket, with the ConsoleStream's read/write/close."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    async def read(self) -> bytes:
        return await self.reader.read(READ_SIZE)

    async def write(self, data: bytes):
        self.writer.write(data)
        await self.writer.drain()

    async def close(self):
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def open_end(req: Request, target: Target):
    """The console's server end, or Refusal 404 when nothing answers there."""
    hv = req.server.runtime_of_vm(target.vm).vms.hv
    try:
        if target.protocol == "vt100":
            return await hv.open_console(target.vm_uuid)
        path = await hv.graphics_socket(target.vm_uuid)
        if path is None:
            raise Refusal(404, ApiError("INTERNAL_ERROR", "the VM has no VNC server"))
        return _SocketEnd(*await asyncio.open_unix_connection(path))
    except (HypervisorError, OSError) as exc:
        raise Refusal(404, ApiError("INTERNAL_ERROR", f"console unavailable: {exc}")) from None


def _pool(req: Request) -> dict:
    return req.server.store.record("pool", req.server.pool_ref)


def _idle_timeout(req: Request) -> float:
    return float(_pool(req)["vm_console_idle_timeout"])


def _limit_on(req: Request) -> bool:
    return bool(_pool(req)["limit_console_sessions"])


def _user(req: Request) -> str:
    store = req.server.store
    return store.get("session", req.session, "auth_user_name") \
        if store.exists("session", req.session) else ""


# -- the handlers ---------------------------------------------------------------------

async def connect_console(req: Request):
    target = find_target(req)
    end = await open_end(req, target)
    try:
        sessions = req.server.runtime_of_vm(target.vm).consoles
        user = _user(req)
        if not sessions.try_add(target.vm, user, req.session, _limit_on(req)):
            return await _limit_exceeded(req, sessions.users(target.vm))
        try:
            conn = await req.start_stream(OK_LINES)
            await splice(conn, end, RawCodec(), _activity(target), _idle_timeout(req))
        finally:
            sessions.drop(target.vm, user, req.session)
    finally:
        await end.close()


async def connect_console_ws(req: Request):
    target = find_target(req)
    if _limit_on(req):
        raise Refusal(503, ApiError("OPERATION_NOT_ALLOWED", "limit_console_sessions"),
                      version="1.0")
    key = req.header("sec-websocket-key")
    if not key:     # no WebSocket upgrade: xapi's 501, exactly
        await req.start_stream(["HTTP/1.0 501 Method Not Implemented", "Connection: close",
                                "Cache-Control: no-cache, no-store"])
        return
    end = await open_end(req, target)
    try:
        conn = await req.start_stream(websocket.handshake_lines(key))
        await splice(conn, end, WebSocketCodec(), _activity(target), _idle_timeout(req))
    finally:
        await end.close()


async def _limit_exceeded(req: Request, users: list[str]):
    names = ", ".join(html.escape(u, quote=True) for u in users)
    who = f"User '{names}' is" if len(users) == 1 else f"Users '{names}' are"
    body = (f"<html><body><h1>Connection Limit Exceeded</h1><p>{who} currently connected "
            f"to this console. No new connections are allowed. Please check the "
            f"limit_console_sessions config and try again later.</p></body></html>").encode()
    version = "1.0" if req.http10 else "1.1"
    conn = await req.start_stream([
        f"HTTP/{version} 503 Connection Limit Exceeded", "content-type: text/html",
        "connection: close", "cache-control: no-cache, no-store",
        f"content-length: {len(body)}"])
    with contextlib.suppress(ClientGone):
        await conn.write(body)


# -- moving the bytes -----------------------------------------------------------------

class RawCodec:
    def to_client(self, data: bytes) -> bytes:
        return data

    def from_client(self, data: bytes) -> tuple[bytes, bytes, bool]:
        """(bytes for the console, reply for the client, the client ended)."""
        return data, b"", False


class WebSocketCodec:
    def __init__(self):
        self.reader = websocket.FrameReader()

    def to_client(self, data: bytes) -> bytes:
        return websocket.frames(data)

    def from_client(self, data: bytes) -> tuple[bytes, bytes, bool]:
        payload, reply = [], []
        for opcode, body in self.reader.feed(data):
            if opcode == websocket.CLOSE:
                return b"".join(payload), b"".join(reply), True
            if opcode == websocket.PING:
                reply.append(websocket.frame(body, websocket.PONG))
            elif opcode != websocket.PONG:
                payload.append(body)
        return b"".join(payload), b"".join(reply), False


def _activity(target: Target):
    """fn(client bytes) -> whether they show a person at the console."""
    if target.protocol == "vt100":
        return bool
    return RfbActivity().feed


async def splice(conn, end, codec, active, idle_timeout: float):
    """Both ways until either side ends, the client sends a close, or (idle_timeout >
    0) no activity for that long."""
    loop = asyncio.get_running_loop()
    last_active = loop.time()

    async def downstream():
        while data := await end.read():
            await conn.write(codec.to_client(data))

    async def upstream():
        nonlocal last_active
        while data := await conn.read_some(READ_SIZE, deadline=False):
            payload, reply, ended = codec.from_client(data)
            if reply:
                await conn.write(reply)
            if payload:
                if active(payload):
                    last_active = loop.time()
                await end.write(payload)
            if ended:
                return

    async def idle():
        while True:
            await asyncio.sleep(min(IDLE_POLL, idle_timeout))
            if loop.time() - last_active > idle_timeout:
                log.info("console session idle for %g s: closed", idle_timeout)
                return

    jobs = [loop.create_task(downstream()), loop.create_task(upstream())]
    if idle_timeout > 0:
        jobs.append(loop.create_task(idle()))
    try:
        await asyncio.wait(jobs, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for job in jobs:
            job.cancel()
        results = await asyncio.gather(*jobs, return_exceptions=True)
    for result in results:
        # Either side going away is how a console session ends.
        if isinstance(result, BaseException) and not isinstance(
                result, (asyncio.CancelledError, ClientGone, HypervisorError, OSError,
                         websocket.ProtocolError)):
            raise result
