"""`POST /cli`: xapi's thin-CLI protocol on top of our ASGI server.

xapi answers /cli without any HTTP status line: right after the request it writes the
protocol greeting and then talks both ways on the raw connection. ASGI has no such
thing, so (as uvicorn does itself for WebSocket upgrades) we take the connection's
transport from the request cycle and give it a protocol object of our own. Where the
transport is not reachable (another ASGI server, in-memory tests) the command still
runs, its output sent as an ordinary HTTP body, without interaction.

Once hijacked, the connection is outside the HTTP layer's deadlines: whenever the server
waits on the client (its greeting, a prompt's answer, a file it loads, room to write
output) the client must act within `cli_idle_timeout` seconds or is dropped. Only the
wait for an HTTP transfer's outcome has no deadline: the transfer runs on a connection
of its own, under the HTTP layer's deadlines.
"""
from __future__ import annotations

import asyncio
import logging
import struct

from xe_cli import proto

from ..http.responses import peer, read_body, respond
from .context import Output
from .engine import execute, split_body
from .errors import CliExit

log = logging.getLogger(__name__)

MAX_BODY = 200 * 1024           # as xapi's limit on a CLI request
MAX_UPLOAD = 32 * 1024 * 1024   # Load: the most a client may send us


class Closed(CliExit):
    """The client is gone (or was dropped): a command that meets this just ends, with
    nothing to report to anyone."""


class RawStream(asyncio.Protocol):
    """The hijacked connection: buffered reads, writes that respect flow control, and
    a deadline on every wait for the client."""

    def __init__(self, transport, idle_timeout: float):
        self.transport = transport
        self.idle_timeout = idle_timeout
        self._buffer = bytearray()
        self._more = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = False
        self.timed_out = False

    def data_received(self, data):
        self._buffer += data
        self._more.set()

    def eof_received(self):
        self.closed = True
        self._more.set()

    def connection_lost(self, exc):
        self.closed = True
        self._more.set()
        self._writable.set()

    def pause_writing(self):
        self._writable.clear()

    def resume_writing(self):
        self._writable.set()

    async def _wait_for_client(self, event: asyncio.Event, deadline: bool = True):
        try:
            await asyncio.wait_for(event.wait(), self.idle_timeout if deadline else None)
        except asyncio.TimeoutError:
            self.timed_out, self.closed = True, True
            self.transport.abort()     # close would wait for the silent client
            raise Closed() from None

    async def read_exact(self, n: int, deadline: bool = True) -> bytes:
        while len(self._buffer) < n:
            if self.closed:
                raise Closed()
            self._more.clear()
            await self._wait_for_client(self._more, deadline)
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def write(self, data: bytes):
        if self.closed:
            raise Closed()
        self.transport.write(data)
        await self._wait_for_client(self._writable)


class WireIO(Output):
    def __init__(self, stream: RawStream):
        self.s = stream

    async def print(self, text):
        await self.s.write(proto.command(proto.PRINT, text))

    async def stderr(self, text):
        await self.s.write(proto.command(proto.PRINT_STDERR, text))

    async def error(self, code, params):
        await self.s.write(proto.command(proto.ERROR, code, list(params)))

    async def exit(self, code):
        await self.s.write(proto.command(proto.EXIT, code))

    async def _message(self, deadline: bool = True):
        (length,) = struct.unpack("<i", await self.s.read_exact(4, deadline))
        return proto.parse(await self.s.read_exact(length))

    async def _blob(self, limit: int) -> bytes:
        data = bytearray()
        while True:
            kind, tag, params = await self._message()
            if kind == proto.RESPONSE and tag == proto.WAIT:
                continue   # the client's heartbeat
            if kind != proto.BLOB or tag == proto.END:
                return bytes(data)
            if len(data) + params[0] > limit:
                raise Closed()
            data += await self.s.read_exact(params[0])

    async def prompt(self):
        await self.s.write(proto.command(proto.PROMPT))
        return (await self._blob(64 * 1024)).decode("utf-8", "replace")

    async def load(self, filename):
        await self.s.write(proto.command(proto.LOAD, filename))
        kind, tag, _ = await self._message()
        if kind != proto.RESPONSE or tag != proto.OK:
            return None
        return await self._blob(MAX_UPLOAD)

    async def http(self, put, filename, url):
        await self.s.write(proto.command(proto.HTTP_PUT if put else proto.HTTP_GET,
                                         filename, url))
        while True:
            kind, tag, _ = await self._message(deadline=False)
            if not (kind == proto.RESPONSE and tag == proto.WAIT):
                return kind == proto.RESPONSE and tag == proto.OK


class BufferIO(Output):
    """Fallback without a raw connection: collect the command stream as a body."""

    def __init__(self):
        self.chunks = []

    async def print(self, text):
        self.chunks.append(proto.command(proto.PRINT, text))

    async def stderr(self, text):
        self.chunks.append(proto.command(proto.PRINT_STDERR, text))

    async def error(self, code, params):
        self.chunks.append(proto.command(proto.ERROR, code, list(params)))

    async def prompt(self):
        return ""

    async def load(self, filename):
        return None

    async def http(self, put, filename, url):
        return False


def _hijack(receive, send, idle_timeout: float):
    """The request cycle's transport, switched to a RawStream; None if unreachable."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "set_protocol"):
        return None, None
    http_protocol = transport.get_protocol()
    stream = RawStream(transport, idle_timeout)
    transport.set_protocol(stream)
    # The HTTP protocol object must forget this connection: no keep-alive timer, no
    # waiting for it at shutdown, no "response not completed" complaint.
    getattr(http_protocol, "connections", set()).discard(http_protocol)
    flow = getattr(http_protocol, "flow", None)
    if flow is not None:
        flow.resume_reading()
    cycle.disconnected = True
    return stream, cycle


async def cli_route(app, scope, receive, send):
    server = app.server
    body = await read_body(scope, receive, MAX_BODY)
    tokens = split_body(body)
    stream, _ = _hijack(receive, send, server.settings.cli_idle_timeout)
    if stream is None:
        io = BufferIO()
        code = await execute(server, tokens, io, peer(scope))
        payload = proto.greeting() + b"".join(io.chunks) + proto.command(proto.EXIT, code)
        return await respond(send, 200, payload, b"application/octet-stream")
    try:
        await stream.write(proto.greeting())
        magic = await stream.read_exact(len(proto.MAGIC) + 8)
        major = struct.unpack_from("<i", magic, len(proto.MAGIC))[0]
        if not magic.startswith(proto.MAGIC) or major != proto.MAJOR:
            return
        io = WireIO(stream)
        code = await execute(server, tokens, io, peer(scope))
        await io.exit(code)
    except (Closed, ConnectionError, proto.ProtocolError):
        pass
    except Exception:
        log.exception("CLI connection failed")
    finally:
        if stream.timed_out:
            log.warning("dropped xe connection from %s: silent for %g s", peer(scope),
                        stream.idle_timeout)
        stream.transport.close()
