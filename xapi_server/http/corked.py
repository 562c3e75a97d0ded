"""A response's status line and headers leave with its first body bytes, and a small
reply leaves when the event loop's turn ends.

uvicorn writes the head of a response as soon as the app starts it, then the body:
two writes, so over TLS two records, two encryptions and two socket sends for every
small reply. On a saturated event loop (32 clients calling host.get_record) the head's
write took as much of the loop as the body's. `CorkedTransport` stands between a
request's cycle and the connection's transport and holds the first write of each
response (the head) until the next write, which carries both, or until the event
loop's next turn (a reply with no body, HEAD, a 100 Continue), whichever comes first.

A reply given whole (http/guard.py send_whole: most RPC replies) is held the same way
until the loop's next turn, so the replies made in one turn leave one after the other
instead of one per request between the others' work. Each send to a client that
waits for its reply wakes it; sent apart, every reply paid that wake-up in the
kernel, sent together the client is still awake for the next ones. With 32 clients
calling host.get_record, holding them cut the server's CPU per call by more than a
third (README, Scale). A reply so waits for the rest of its turn of the loop (the other
requests that were ready with it), never for a timer.

The bytes and their order are unchanged, nothing waits longer than one turn."""
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

    def write_whole(self, data):
        """A whole response (its head and all its body): sent at the loop's next turn,
        after whatever is held, with the other replies of this turn."""
        self._hold_next = False
        if self._held is None:
            self._held = data
            self._loop.call_soon(self.flush)
        else:
            self._held += data

    @property
    def holding(self) -> bool:
        return self._held is not None

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
