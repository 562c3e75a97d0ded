"""Deadlines uvicorn does not have: a client must send its request line and headers
within `header_timeout` seconds and its body within `body_timeout`, or the connection
is closed. Without them a client that trickles a header byte every few seconds
(slowloris), or connects and says nothing, holds a connection for ever.

Idle keep-alive connections between requests stay uvicorn's business
(timeout_keep_alive); the header deadline starts with the first byte of a request
and, on a new connection, when the TLS handshake is done (the handshake itself has
asyncio's own 60 s limit).
"""
from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .._logging import log


def guarded_protocol(header_timeout: float, body_timeout: float) -> type:
    """The HTTP protocol class for uvicorn.Config(http=...), with these deadlines."""
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout})


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 60.0
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport):
        super().connection_made(transport)
        self._arm(self.header_timeout, "request headers")

    def connection_lost(self, exc):
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self):
        super().on_message_begin()
        self._arm(self.header_timeout, "request headers")

    def on_headers_complete(self):
        super().on_headers_complete()
        self._arm(self.body_timeout, "request body")

    def on_message_complete(self):
        super().on_message_complete()
        self._disarm()

    def _arm(self, seconds: float, what: str):
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._expire, what)

    def _disarm(self):
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self, what: str):
        self._deadline = None
        if not self.transport.is_closing():
            host = self.client[0] if self.client else "?"
            log.warning("closing connection from %s: %s not received in time", host, what)
            # abort, not close: close would start a polite TLS shutdown that waits for
            # the very client that is not answering, and keep the socket meanwhile.
            self.transport.abort()
