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

import logging
import struct

from xe_cli import proto

from ..http.raw import ClientGone, RawStream, take_over
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


class WireIO(Output):
    """The command's side of the connection; a client that is gone ends the command
    (Closed) wherever it waits."""

    def __init__(self, stream: RawStream):
        self.stream = stream

    async def _write(self, data: bytes):
        try:
            await self.stream.write(data)
        except ClientGone:
            raise Closed() from None

    async def _read(self, n: int, deadline: bool = True) -> bytes:
        try:
            return await self.stream.read_exact(n, deadline)
        except ClientGone:
            raise Closed() from None

    async def print(self, text):
        await self._write(proto.command(proto.PRINT, text))

    async def stderr(self, text):
        await self._write(proto.command(proto.PRINT_STDERR, text))

    async def error(self, code, params):
        await self._write(proto.command(proto.ERROR, code, list(params)))

    async def exit(self, code):
        await self._write(proto.command(proto.EXIT, code))

    async def _message(self, deadline: bool = True):
        (length,) = struct.unpack("<i", await self._read(4, deadline))
        return proto.parse(await self._read(length))

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
            data += await self._read(params[0])

    async def prompt(self):
        await self._write(proto.command(proto.PROMPT))
        return (await self._blob(64 * 1024)).decode("utf-8", "replace")

    async def load(self, filename):
        await self._write(proto.command(proto.LOAD, filename))
        kind, tag, _ = await self._message()
        if kind != proto.RESPONSE or tag != proto.OK:
            return None
        return await self._blob(MAX_UPLOAD)

    async def http(self, put, filename, url):
        await self._write(proto.command(proto.HTTP_PUT if put else proto.HTTP_GET,
                                         filename, url))
        while True:
            kind, tag, _ = await self._message(deadline=False)
            if not (kind == proto.RESPONSE and tag == proto.WAIT):
                return kind == proto.RESPONSE and tag == proto.OK

    async def connect(self, url):
        # An interactive console may stay open for hours: no deadline on the answer
        # (the client's Wait heartbeats are skipped).
        await self._write(proto.command(proto.HTTP_CONNECT, url))
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

    async def connect(self, url):
        return False


async def cli_route(app, scope, receive, send):
    server = app.server
    body = await read_body(scope, receive, MAX_BODY)
    tokens = split_body(body)
    stream = take_over(send, server.settings.cli_idle_timeout)
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
