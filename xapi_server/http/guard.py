"""Deadlines uvicorn does not have: a client must send its request line and headers
within `header_timeout` seconds and its body within `body_timeout`, or the connection
is closed. Without them a client that trickles a header byte every few seconds
(slowloris), or connects and says nothing, holds a connection for ever.

Idle keep-alive connections between requests stay uvicorn's business
(timeout_keep_alive, hours: an idle one gives way to a new connection when the
budget is reached, see sockets.py); the header deadline starts with the first byte
of a request and, on a new connection, when the TLS handshake is done (the handshake
has its own deadline, tls_timeout: see sockets.py), so a connection that never sends
a request is cut after header_timeout whatever the keep-alive.

A request line and headers larger than `max_header_bytes` get HTTP 431. httptools
buffers a header until it is complete, so the bytes are counted as they arrive, not
only in its callbacks: a 64 MB header is refused after its first few kilobytes.

A request only writes a number (its deadline); one sweep per event loop, a few times a
second while connections exist, closes the late ones. Timers per request cost more
than the rest of this layer put together.
"""
from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import (STATUS_LINE, HttpToolsProtocol,
                                                   RequestResponseCycle)

from .corked import CorkedTransport
from .responses import OwnHeaders

log = logging.getLogger(__name__)

_TOO_LARGE = b"request header fields too large\n"
_431 = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: text/plain\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_TOO_LARGE), _TOO_LARGE))
DRAIN_SECONDS = 2.0   # after a 431, what the client still sends is read and dropped this
                      # long: closing with unread input would reset the 431 away


class HeadTooLarge(Exception):
    pass


def guarded_protocol(header_timeout: float, body_timeout: float,
                     max_header_bytes: int = 32 * 1024) -> type:
    """The HTTP protocol class for uvicorn, with these deadlines and this header cap."""
    sweep = min(1.0, max(0.05, min(header_timeout, body_timeout) / 4))
    return type("GuardedHttpProtocol", (GuardedHttpProtocol,),
                {"header_timeout": header_timeout, "body_timeout": body_timeout,
                 "sweep_interval": sweep, "max_header_bytes": max_header_bytes})


class OwnHeadCycle(RequestResponseCycle):
    """uvicorn's request cycle, except that a head of OwnHeaders (http/responses.py:
    constants and a length) is written as uvicorn writes it but without matching each
    name and value against its two regular expressions, which were a sixth of
    host.get_record's time in the app and the cycle; and that a reply whose body is
    all known at once can be given whole (send_whole): one write, no ASGI messages."""

    def _own_head(self, status: int, headers: OwnHeaders) -> list:
        self.response_started, self.waiting_for_100_continue = True, False
        head = [STATUS_LINE[status]]
        for name, value in (*self.default_headers, *headers):
            head += (name, b": ", value, b"\r\n")
        if not self.keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        return head

    def _can_write_own(self) -> bool:
        return not (self.response_started or self.disconnected or self.flow.write_paused
                    or self.access_log)

    async def send(self, message):
        headers = message.get("headers")
        if type(headers) is not OwnHeaders or not self._can_write_own():
            return await RequestResponseCycle.send(self, message)
        head = self._own_head(message["status"], headers)
        self.expected_content_length, self.chunked_encoding = headers.length, False
        self.transport.write(b"".join(head))

    def send_whole(self, status: int, headers: OwnHeaders, body: bytes) -> bool:
        """Write the whole response, as send() would for its start and one body message,
        and end it; False (nothing done) where send() must be used (HEAD, a paused or
        lost connection, a response already begun)."""
        if not self._can_write_own() or self.scope["method"] == "HEAD":
            return False
        head = self._own_head(status, headers)
        head.append(body)
        self.transport.write_whole(b"".join(head))
        self.response_complete = True
        self.message_event.set()
        if not self.keep_alive:
            self.transport.close()
        self.on_response()
        return True


class GuardedHttpProtocol(HttpToolsProtocol):
    header_timeout = 10.0
    body_timeout = 60.0
    sweep_interval = 1.0
    max_header_bytes = 32 * 1024
    _deadline: float | None = None      # loop time by which `_awaiting` must have arrived
    _awaiting = ""
    _in_head = True       # between requests or inside a request line / headers
    _head_bytes = 0       # bytes received since the request head began
    _head_size = 0        # URL and header bytes the parser handed over for this head
    _refused = False      # a 431 was sent: input is dropped until the connection closes
    idle_since = 0.0      # loop time since which no request has been running

    def connection_made(self, transport):
        super().connection_made(transport)
        self._corked = CorkedTransport(transport, self.loop)
        self.idle_since = self.loop.time()
        self._arm(self.header_timeout, "request headers")
        self._start_head()
        state = self.server_state
        if not getattr(state, "xapi_sweeping", False):
            state.xapi_sweeping = True
            self.loop.call_later(self.sweep_interval, self._sweep, self.loop, state,
                                 self.sweep_interval)

    def _unsupported_upgrade_warning(self):
        """An upgrade (WebSocket, CONNECT) is no warning here: uvicorn runs with ws="none"
        and the route takes the connection over (http/raw.py)."""

    def awaiting_request(self) -> bool:
        """No request is being answered and no reply waits to be sent (sockets.py may
        drop such a connection)."""
        return self._answered() and not self._corked.holding

    def _answered(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def shutdown(self):
        self._corked.flush()   # a reply held for the loop's turn (corked.py) goes first
        super().shutdown()

    def timeout_keep_alive_handler(self):
        self._corked.flush()
        super().timeout_keep_alive_handler()

    def data_received(self, data):
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > self.max_header_bytes:
            self._refuse_head()

    # on_url and on_header count the head for one that arrived in one piece with what
    # came before it (pipelining). They run for every header of every request: the
    # count is written out in each and the base class named, no helper call, no super().
    def on_url(self, url):
        self._head_size += len(url)
        if self._head_size > self.max_header_bytes:
            self._head_over()
        HttpToolsProtocol.on_url(self, url)

    def on_header(self, name, value):
        self._head_size += len(name) + len(value) + 4
        if self._head_size > self.max_header_bytes:
            self._head_over()
        HttpToolsProtocol.on_header(self, name, value)

    def _head_over(self):
        self._refuse_head()
        raise HeadTooLarge()   # stops the parser; uvicorn's 400 is suppressed below

    def _start_head(self):
        self._in_head, self._head_bytes, self._head_size = True, 0, 0

    def _refuse_head(self):
        if self._refused:
            return
        self._refused, self._deadline = True, None
        host = self.client[0] if self.client else "?"
        log.warning("closing connection from %s: request headers over %d bytes", host,
                    self.max_header_bytes)
        if self._answered():   # else a response is being written: no 431 inside it
            self._corked.write(_431)   # after a held head, if any
        self.loop.call_later(DRAIN_SECONDS, self.transport.close)

    def send_400_response(self, msg: str):
        if not self._refused:
            super().send_400_response(msg)

    def on_headers_complete(self):
        self._in_head = False
        super().on_headers_complete()
        if self.cycle is not None:
            self._corked.hold_next_write()
            self.cycle.transport = self._corked
            self.cycle.__class__ = OwnHeadCycle   # uvicorn makes the cycle: its class named there
        self._arm(self.body_timeout, "request body")

    def on_message_complete(self):
        self._start_head()
        super().on_message_complete()
        # No deadline while the request is answered (a VM.start may take minutes).
        self._deadline = None

    def on_response_complete(self):
        self.idle_since = self.loop.time()
        super().on_response_complete()
        # The next request's headers: counted from the answer, not from the request (a
        # long call must not cost the client its kept-alive connection); an idle
        # connection is closed by uvicorn's keep-alive timeout first.
        if not self._refused:
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
