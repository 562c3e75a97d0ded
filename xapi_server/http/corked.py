"""A response's status line and headers leave with its first body bytes.

uvicorn writes the head of a response as soon as the app starts it, then the body:
two writes, so over TLS two records, two encryptions and two socket sends for every
small reply. On a saturated event loop (32 clients calling host.get_record) the head's
write took as much of the loop as the body's. `CorkedTransport` stands between a
request's cycle and the connection's transport and holds the first write of each
response (the head) until the next write, which carries both, or until the event
loop's next turn (a reply with no body, HEAD, a 100 Continue), whichever comes first:
the bytes and their order are unchanged, nothing waits longer than one turn."""
from __future__ import annotations


class CorkedTransport:
    def __init__(self, transport, loop):
        self._transport, self._loop = transport, loop
        self._held: bytes | None = None
        self._hold_next = False

    def hold_next_write(self):
        """Called when a request's headers are in: its response's head comes next."""
        self._hold_next = True

    def write(self, data):
        if self._hold_next:
            self._hold_next = False
            if self._held is None:
                self._held = bytes(data)
                self._loop.call_soon(self.flush)
                return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._transport.write(data)

    def flush(self):
        if self._held is not None:
            data, self._held = self._held, None
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self):
        self.flush()
        self._transport.close()

    def abort(self):
        self._held = None
        self._transport.abort()

    def __getattr__(self, name):        # everything else is the transport's own
        return getattr(self._transport, name)
