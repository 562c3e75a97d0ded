"""The plain-HTTP port (settings.http_redirect_port): every request is answered with 301
to the same path and query on the HTTPS port, and nothing else. No API is ever served
here, whatever the method or path.

Only the request line and headers are read (bounded in size and time); a body is never
waited for. After the answer the connection closes: whatever the client still sends is
drained briefly and dropped, because closing a socket with unread input makes the kernel
send a reset, which can destroy the 301 before the client has read it.
"""
from __future__ import annotations

import asyncio
import re
from urllib.parse import urlsplit

MAX_HEAD = 16 * 1024          # request line + headers
DRAIN_BYTES, DRAIN_SECONDS = 256 * 1024, 2.0
# A DNS name or IPv4 address, or an IPv6 literal in brackets; an optional port (dropped).
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]*)?")


def redirect_target(request_line: str, host_header: str | None, https_port: int,
                    fallback_host: str) -> str | None:
    """The Location for a request, or None if the request is malformed."""
    parts = request_line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    target = parts[1]
    if target.startswith(("http://", "https://")):   # absolute form (proxies)
        split = urlsplit(target)
        target = split.path + (f"?{split.query}" if split.query else "")
        host_header = host_header or split.netloc
    if not target.startswith("/"):                    # "*", authority form, garbage
        target = "/"
    if any(not 0x21 <= ord(c) <= 0x7E for c in target):
        return None
    host = fallback_host
    if host_header:
        found = _HOST.fullmatch(host_header.strip())
        if not found:
            return None
        host = found.group(1)
    return f"https://{host}:{https_port}{target}"


def _response(status: str, location: str | None = None) -> bytes:
    head = f"HTTP/1.1 {status}\r\n"
    if location:
        head += f"Location: {location}\r\n"
    return (head + "Content-Length: 0\r\nConnection: close\r\n\r\n").encode()


class RedirectServer:
    def __init__(self, https_port: int, header_timeout: float, max_connections: int,
                 closed=None):
        self.https_port, self.header_timeout = https_port, header_timeout
        self.max_connections, self.open = max_connections, 0
        # closed() true: the port answers nothing (pool.set_https_only), as xapi's
        # firewall closing port 80; connections are accepted and closed at once.
        self.closed = closed or (lambda: False)

    async def start(self, host: str, port: int) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._handle, host, port, limit=MAX_HEAD)

    async def _handle(self, reader, writer):
        self.open += 1
        try:
            if self.open <= self.max_connections and not self.closed():
                await self._answer(reader, writer)
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass   # client went away, too slow, or sent lines longer than MAX_HEAD
        finally:
            self.open -= 1
            writer.close()

    async def _answer(self, reader, writer):
        request_line, host = await asyncio.wait_for(self._read_head(reader),
                                                    self.header_timeout)
        local = writer.get_extra_info("sockname")[0]
        location = redirect_target(request_line, host, self.https_port,
                                   f"[{local}]" if ":" in local else local)
        writer.write(_response("301 Moved Permanently", location) if location
                     else _response("400 Bad Request"))
        await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        await asyncio.wait_for(self._drain(reader), DRAIN_SECONDS)

    @staticmethod
    async def _read_head(reader) -> tuple[str, str | None]:
        """(request line, Host header or None). Lines may end in CRLF or LF."""
        request_line, host, size = None, None, 0
        while True:
            line = await reader.readline()
            size += len(line)
            if not line.endswith(b"\n") or size > MAX_HEAD:
                raise ValueError("incomplete or oversized request head")
            text = line.decode("latin-1").rstrip("\r\n")
            if request_line is None:
                if text:               # blank lines before the request line are allowed
                    request_line = text
                continue
            if not text:
                return request_line, host
            name, colon, value = text.partition(":")
            if colon and name.strip().lower() == "host" and host is None:
                host = value.strip()

    @staticmethod
    async def _drain(reader):
        dropped = 0
        while dropped < DRAIN_BYTES:
            chunk = await reader.read(64 * 1024)
            if not chunk:
                return
            dropped += len(chunk)


def run(https, settings, closed=None):
    """Serve `https` (a uvicorn.Server) and, when settings.http_redirect_port is set,
    the redirect port on the same event loop; both stop when HTTPS stops. `closed()`
    says when the redirect port must answer nothing (https_only)."""
    if not settings.http_redirect_port:
        return https.run()

    async def both():
        redirect = await RedirectServer(settings.port, settings.header_timeout,
                                        settings.max_connections, closed).start(
            settings.listen, settings.http_redirect_port)
        try:
            await https.serve()
        finally:
            redirect.close()

    with asyncio.Runner(loop_factory=https.config.get_loop_factory()) as runner:
        runner.run(both())
