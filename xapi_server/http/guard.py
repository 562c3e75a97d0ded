"""Deadlines uvicorn does not have: a client must send its request line and headers
within `header_timeout` seconds and its body within `body_timeout`, or the connection
is closed. Without them a client that trickles a header byte every few seconds
(slowloris), or connects and says nothing, holds a connection for ever.

Idle keep-alive connections between requests stay uvicorn's business
(timeout_keep_alive); the header deadline starts with the first byte of a request
and, on a new connection, when the TLS handshake is done (the handshake itself has
asyncio's own 60 s limit).

A request only writes a number (its deadline); one sweep per event loop, a few times a
second while connections exist, closes the late ones. Timers per request cost more
than the rest of this layer put together.
"""
from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .._logging import log


def guarded_protocol(header_timeout: float, body_timeout: float) -> type:
    """The HTTP protocol class for uvicorn.Config(http=...), with these deadlines."""
    sweep = min(1.0, max(0.05, min(header_timeout, body_timeout) / 4))
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout,
                 "sweep_interval": sweep})


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 60.0
    sweep_interval = 1.0
    _deadline: float | None = None      # loop time by which `_awaiting` must have arrived
    _awaiting = ""

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm(self.header_timeout, "request headers")
        state = self.server_state
        if not getattr(state, "xapi_sweeping", False):
            state.xapi_sweeping = True
            self.loop.call_later(self.sweep_interval, self._sweep, self.loop, state,
                                 self.sweep_interval)

    def on_headers_complete(self):
        super().on_headers_complete()
        self._arm(self.body_timeout, "request body")

    def on_message_complete(self):
        super().on_message_complete()
        # The next request's headers: counted from now, but only enforced once this
        # request is answered (a VM.start may take minutes); an idle connection is
        # closed by uvicorn's keep-alive timeout first.
        self._arm(self.timeout_keep_alive + self.header_timeout, "request headers")

    def _arm(self, seconds: float, what: str):
        self._deadline, self._awaiting = self.loop.time() + seconds, what

    @staticmethod
    def _sweep(loop, state, interval: float):
        now = loop.time()
        for conn in list(state.connections):
            deadline = getattr(conn, "_deadline", None)
            if deadline is None or deadline > now:
                continue
            busy = conn.cycle is not None and not conn.cycle.response_complete
            if busy and conn._awaiting != "request body":
                continue   # still answering; the next request's clock is not running
            conn._expire()
        if state.connections:
            loop.call_later(interval, GuardedHttpProtocol._sweep, loop, state, interval)
        else:
            state.xapi_sweeping = False

    def _expire(self):
        self._deadline = None
        if self.transport is not None and not self.transport.is_closing():
            host = self.client[0] if self.client else "?"
            log.warning("closing connection from %s: %s not received in time", host,
                        self._awaiting)
            # abort, not close: close would start a polite TLS shutdown that waits for
            # the very client that is not answering, and keep the socket meanwhile.
            self.transport.abort()
