"""Every accepted connection is counted, and has a deadline, from accept to close.

Given an SSL context, the event loop tells the HTTP protocol about a connection only
once its TLS handshake is done, and forgets it silently when the handshake fails: a
client that connects and never sends a ClientHello was seen by nobody, counted against
no limit, and kept its socket for the loop's 60 s. 20,000 of them took every file
descriptor. So the listener here is plain TCP, and each accepted socket gets a TLS
protocol of our own: the event loop's own SSLProtocol (uvloop's or asyncio's, made as
the loop would make it), subclassed only to count the socket while it is open and to
drop it on demand.

Idle keep-alive connections are kept for hours (settings.keep_alive_timeout), as xapi
behind stunnel keeps them: SDKs reuse a connection after any pause and do not retry
every way a closed one can fail. So the budget is protected here instead: at `budget`
(max_connections) open sockets, a new connection replaces the one that has been idle
longest (still in its TLS handshake, or between requests with none running): a flood
of silent connections pushes out its own members, and a crowd of idle SDK sessions
makes room for a new client, never a client that is being served. An idle HTTP
connection is closed politely (TLS close_notify), so its client's next request finds
a closed connection and opens a new one, as after a keep-alive timeout. When every
open socket is busy, the new one is let in up to `cap` (a margin above the budget)
and uvicorn answers its request with HTTP 503; beyond `cap` it is closed at once.
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

    def __init__(self, cap: int, budget: int | None = None):
        self.cap = cap
        self.budget = cap if budget is None else min(budget, cap)
        self.open: dict = {}     # CountedTls -> None; a dict keeps accept order

    def admit(self, conn) -> bool:
        if len(self.open) >= self.budget:
            victim = min((c for c in self.open if c.idle()), key=lambda c: c.idle_since(),
                         default=None)
            if victim is not None:
                victim.drop()
        if len(self.open) >= self.cap:
            return False
        self.open[conn] = None
        return True

    def forget(self, conn):
        self.open.pop(conn, None)


def _counted(base: type) -> type:
    class CountedTls(base):
        def __init__(self, table: SocketTable, app, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.table, self.app, self.raw = table, app, None
            self.accepted = 0.0

        def connection_made(self, transport):
            self.raw = transport
            self.accepted = self.app.loop.time()
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

        def idle_since(self) -> float:
            if self.app.transport is None:
                return self.accepted
            return self.app.idle_since

        def drop(self):
            self.table.forget(self)
            app = self.app
            if app.transport is None or app.transport.is_closing():
                self.raw.abort()
                return
            log.info("connection budget (%d) reached: closing the connection idle longest, "
                     "from %s", self.table.budget, app.client[0] if app.client else "?")
            # uvicorn counts it until the TLS goodbye is over: not against the new one
            app.connections.discard(app)
            app.transport.close()

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
