"""Taking a connection over from the HTTP layer: raw bytes both ways, for the routes
xapi answers outside plain HTTP request/response.

xapi's /cli talks its own protocol right after the request; its PUT handlers send
`200 OK` before they read the body and its GET handlers stream until they close; a
console CONNECT or WebSocket upgrade splices bytes both ways. ASGI has none of this, so
(as uvicorn does for its own WebSocket upgrades) the handler takes the request cycle's
transport and gives it a protocol object of its own, a RawStream.

Once taken, the connection is outside the HTTP layer's deadlines: every wait on the
client (data to read, room to write) has the stream's own `idle_timeout`, after which
the connection is aborted and the waiter gets ClientGone. Reads are bounded: past
READ_BUFFER unread bytes the transport stops reading until the handler catches up, so
a fast uploader costs the same memory as a slow one.
"""
from __future__ import annotations

import asyncio

READ_BUFFER = 4 * 1024 * 1024     # unread bytes held before reading pauses
MIN_ROOM = 64 * 1024              # least free room offered to the TLS layer per read
WRITE_BUFFER = 4 * 1024 * 1024    # unsent bytes the transport may hold before write waits


class ClientGone(ConnectionError):
    """The client closed the connection, or was silent for longer than the deadline."""


class RawStream(asyncio.BufferedProtocol):
    """A taken-over connection: buffered reads with flow control, writes that wait for
    room, and a deadline on every wait for the client.

    A BufferedProtocol: the TLS layer decrypts straight into this stream's buffer. A
    plain Protocol is handed a new bytes object per TLS record (16 KiB), joined and then
    copied again into the buffer; that cost the server a third of its CPU on uploads.
    Unread bytes are _buf[_start:_end]; the buffer is replaced (never resized in place:
    the TLS layer may still hold a view of it) when it has too little room at its end.
    While read_into waits with nothing unread, the TLS layer is given the caller's
    buffer instead (_target), so a bulk upload is decrypted where it will be used and
    never copied on the event loop. A bulk reader also lowers `read_buffer`: while it
    is busy elsewhere (its disk is slower than the network), the kernel's socket
    buffer holds what comes instead of ours, and read_into finds little to copy."""

    def __init__(self, transport, idle_timeout: float, already_read: bytes = b""):
        self.transport = transport
        self.idle_timeout = idle_timeout
        self._buf = bytearray(max(MIN_ROOM, len(already_read) + MIN_ROOM))
        self._buf[:len(already_read)] = already_read
        self._start, self._end = 0, len(already_read)
        self._more = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._reading_paused = False
        self.read_buffer = READ_BUFFER            # unread bytes held before reading pauses
        self._target: memoryview | None = None   # read_into's buffer, while it waits
        self._target_got = 0                      # bytes of it already filled
        self.closed = False       # no more input will come (EOF, lost or dropped)
        self.lost = False         # the connection is gone: nothing can be written either
        self.timed_out = False
        try:
            transport.set_write_buffer_limits(high=WRITE_BUFFER)
        except (AttributeError, NotImplementedError):
            pass

    @property
    def unread(self) -> int:
        return self._end - self._start

    # -- asyncio.BufferedProtocol -----------------------------------------------------
    def get_buffer(self, sizehint: int):
        if self._target is not None:
            return self._target[self._target_got:]
        want = max(sizehint, MIN_ROOM) if sizehint > 0 else MIN_ROOM
        if len(self._buf) - self._end < MIN_ROOM:
            unread = self.unread
            if unread == 0:
                self._start = self._end = 0
            if len(self._buf) - self._end < MIN_ROOM:
                # a new buffer with room for the unread bytes and what comes next
                fresh = bytearray(max(len(self._buf), unread + want))
                fresh[:unread] = memoryview(self._buf)[self._start:self._end]
                self._buf, self._start, self._end = fresh, 0, unread
        return memoryview(self._buf)[self._end:]

    def buffer_updated(self, nbytes: int):
        if self._target is not None:
            self._target_got += nbytes
            if self._target_got == len(self._target):
                self._target = None        # full: what comes next goes to our buffer
            self._more.set()
            return
        self._end += nbytes
        self._more.set()
        if self.unread > self.read_buffer and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def eof_received(self):
        self.closed = True
        self._more.set()
        return True   # keep the write side open: the answer may still be going out

    def connection_lost(self, exc):
        self.closed = self.lost = True
        self._more.set()
        self._writable.set()

    def pause_writing(self):
        self._writable.clear()

    def resume_writing(self):
        self._writable.set()

    # -- for handlers -----------------------------------------------------------------
    async def _wait_for_client(self, event: asyncio.Event, deadline: bool = True):
        # asyncio.timeout, not wait_for: in Python 3.11 wait_for runs the wait as a
        # Task of its own (one per wake-up of a bulk reader) and, when a cancel lands
        # in the loop turn where the event is set, returns normally and drops the
        # cancel: a cancelled import went on reading.
        try:
            async with asyncio.timeout(self.idle_timeout if deadline else None):
                await event.wait()
        except TimeoutError:
            self.timed_out, self.closed, self.lost = True, True, True
            self.transport.abort()     # close would wait for the silent client
            raise ClientGone(f"the client was silent for {self.idle_timeout:g} s") from None

    def _take(self, n: int, into=None) -> bytes | int:
        n = min(n, self.unread)
        start = self._start
        if into is None:
            data = bytes(memoryview(self._buf)[start:start + n])
        else:
            into[:n] = memoryview(self._buf)[start:start + n]
            data = n
        self._start = start + n
        if self._start == self._end:
            self._start = self._end = 0
        if self._reading_paused and self.unread <= self.read_buffer // 2 and not self.lost:
            self._reading_paused = False
            self.transport.resume_reading()
        return data

    async def _fill(self, deadline: bool = True):
        """Wait for more input; ClientGone when none will come."""
        if self.closed:
            raise ClientGone("the client closed the connection")
        self._more.clear()
        await self._wait_for_client(self._more, deadline)

    async def read_some(self, limit: int = 1 << 20, deadline: bool = True) -> bytes:
        """Up to `limit` bytes as soon as there are any; b"" at the end of input."""
        while not self.unread:
            if self.closed:
                return b""
            await self._fill(deadline)
        return self._take(limit)

    async def read_into(self, into: memoryview, deadline: bool = True) -> int:
        """Fill `into` (a writable memoryview of bytes); fewer bytes only at the end of
        input. Returns how many bytes came."""
        got = 0
        while got < len(into):
            if self.unread:
                got += self._take(len(into) - got, into[got:])
                continue
            if self.closed:
                break
            # nothing buffered: what arrives now is decrypted straight into `into`
            self._target, self._target_got = into, got
            try:
                await self._fill(deadline)
            finally:
                got, self._target = self._target_got, None
        return got

    async def read_exact(self, n: int, deadline: bool = True) -> bytes:
        while self.unread < n:
            await self._fill(deadline)
        return self._take(n)

    async def write(self, data: bytes):
        if self.lost:
            raise ClientGone("the client closed the connection")
        self.transport.write(data)
        await self._wait_for_client(self._writable)
        if self.lost:
            raise ClientGone("the client closed the connection")

    def close(self):
        """Close once what was written has gone out."""
        if not self.lost:
            self.transport.close()


def take_over(send, idle_timeout: float) -> RawStream | None:
    """The request's connection as a RawStream (with any body bytes the HTTP parser had
    already read), or None where the transport is not reachable (another ASGI server,
    in-memory tests)."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None or not hasattr(transport, "set_protocol"):
        return None
    http_protocol = transport.get_protocol()
    stream = RawStream(transport, idle_timeout, bytes(getattr(cycle, "body", b"")))
    cycle.body = b""
    transport.set_protocol(stream)
    # The HTTP protocol object must forget this connection: no keep-alive timer, no
    # waiting for it at shutdown, no "response not completed" complaint.
    getattr(http_protocol, "connections", set()).discard(http_protocol)
    flow = getattr(http_protocol, "flow", None)
    if flow is not None:
        flow.resume_reading()
    cycle.disconnected = True
    return stream
