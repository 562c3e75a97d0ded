"""Every accepted connection is counted, and has a deadline, from accept to close.

Given an SSL context, the event loop tells the HTTP protocol about a connection only
once its TLS handshake is done, and forgets it silently when the handshake fails: a
client that connects and never sends a ClientHello was seen by nobody, counted against
no limit, and kept its socket for the loop's 60 s. 20,000 of them took every file
descriptor. So the listener here is plain TCP, and each accepted socket gets a TLS
protocol of our own: the event loop's own SSLProtocol (uvloop's or asyncio's, made as
the loop would make it), subclassed only to count the socket while it is open and to
drop it on demand.

At `cap` open sockets a new connection replaces the oldest idle one (still in its TLS
handshake, or waiting for request headers with no request running): a flood of silent
connections pushes out its own members, not a client that is being served. When every
open socket is busy, the new one is closed at once. The cap sits above
max_connections, so a request over that limit still gets uvicorn's HTTP 503.
"""
from __future__ import annotations

import asyncio.sslproto
import logging
import resource

log = logging.getLogger(__name__)


RESERVED_FDS = 256   # the database, libvirt, logs, subprocess pipes, qemu-img, ...


def socket_cap(max_connections: int) -> int:
    """Raise the soft file-descriptor limit to the hard one and return how many sockets
    the listener may hold: max_connections and a margin for 503 answers, within it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 1 << 20)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    wanted = max_connections + max(16, max_connections // 4)
    budget = soft - RESERVED_FDS
    if wanted > budget:
        log.warning("only %d file descriptors: serving at most %d connections, not %d",
                    soft, max(budget, 16), wanted)
    return max(16, min(wanted, budget))


class SocketTable:
    """The open sockets of the listener, oldest first."""

    def __init__(self, cap: int):
        self.cap = cap
        self.open: dict = {}     # CountedTls -> None; a dict keeps accept order

    def admit(self, conn) -> bool:
        if len(self.open) >= self.cap:
            victim = next((c for c in self.open if c.idle()), None)
            if victim is None:
                return False
            victim.drop()
        self.open[conn] = None
        return True

    def forget(self, conn):
        self.open.pop(conn, None)


def _counted(base: type) -> type:
    class CountedTls(base):
        def __init__(self, table: SocketTable, app, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.table, self.app, self.raw = table, app, None

        def connection_made(self, transport):
            self.raw = transport
            super().connection_made(transport)     # starts the handshake and its timer
            if not self.table.admit(self):
                log.warning("connection cap (%d) reached with every connection busy: "
                            "refusing a new one", self.table.cap)
                transport.abort()

        def connection_lost(self, exc):
            self.table.forget(self)
            super().connection_lost(exc)

        def idle(self) -> bool:
            if self.app.transport is None:          # handshake not done
                return True
            return self.app.awaiting_request()

        def drop(self):
            self.table.forget(self)
            self.raw.abort()

    return CountedTls


def _ssl_protocol_base(loop) -> type:
    try:
        import uvloop
        if isinstance(loop, uvloop.Loop):
            return uvloop.loop.SSLProtocol
    except ImportError:
        pass
    return asyncio.sslproto.SSLProtocol


def tls_protocol(http_protocol: type, context, table: SocketTable, tls_timeout: float):
    """What uvicorn.Config(http=...) should make per accepted socket (uvicorn itself is
    given no SSL context): TLS, with `http_protocol` inside it."""
    bases: dict[type, type] = {}

    def make(**uvicorn_kwargs):
        app = http_protocol(**uvicorn_kwargs)
        loop = app.loop
        cls = bases.get(type(loop))
        if cls is None:
            cls = bases[type(loop)] = _counted(_ssl_protocol_base(loop))
        return cls(table, app, loop, app, context, None, server_side=True,
                   ssl_handshake_timeout=tls_timeout, ssl_shutdown_timeout=tls_timeout)
    return make
