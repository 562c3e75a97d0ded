"""Scale (issue 19): what keeps small calls quick beside big readers and many VMs.

- a big reply is written in pieces, with the event loop given back between them once
  writing has taken a slice of time (http/rpc.py);
- a response's head leaves with its body in one write, and the whole replies made in
  one turn of the event loop leave together at its end (http/corked.py), in order,
  pipelined or not;
- the VM poll compares only the VMs that can differ from libvirt (api/vm_sync.py);
- psycopg is not imported by a server that does not use PostgreSQL."""
import asyncio
import http.client
import json
import ssl
import subprocess
import sys
import time

from xapi_server.datamodel import NULL_REF
from xapi_server.http import rpc
from serverproc import tls_connect
from xapi_server.http.corked import CorkedTransport
from xapi_server.http.responses import CORS, GZIP_ENCODED, VARY_ENCODING, respond


def test_a_big_reply_lets_other_tasks_run_between_its_pieces():
    pieces = [bytes([65 + i % 26]) * 100_000 for i in range(30)]   # 3 MB: 12 writes
    sent, turns_at_send = [], []
    turns = [0]

    async def send(message):
        sent.append(message)
        turns_at_send.append(turns[0])
        if message["type"] == "http.response.body":
            time.sleep(rpc.SLICE_SECONDS * 1.5)   # a slow write: each one fills a slice

    async def ticker(done: asyncio.Event):
        while not done.is_set():
            turns[0] += 1
            await asyncio.sleep(0)

    async def main():
        done = asyncio.Event()
        other = asyncio.create_task(ticker(done))
        await asyncio.sleep(0)
        await rpc._send_success(send, iter(pieces), b"application/json")
        done.set()
        await other

    asyncio.run(main())
    bodies = sent[1:]
    assert b"".join(m["body"] for m in bodies) == b"".join(pieces)   # byte-identical
    assert len(bodies) >= 10 and not bodies[-1]["more_body"]
    # The other task ran between every two pieces (each piece took over a slice).
    steps = turns_at_send[1:]
    assert all(later > earlier for earlier, later in zip(steps, steps[1:]))


class _Transport:
    def __init__(self):
        self.writes, self.closed, self.aborted = [], False, False

    def write(self, data):
        self.writes.append(bytes(data))

    def is_closing(self):
        return self.closed or self.aborted

    def close(self):
        self.closed = True

    def abort(self):
        self.aborted = True

    def get_write_buffer_size(self):
        return 7


def test_head_and_body_leave_in_one_write():
    async def main():
        real = _Transport()
        corked = CorkedTransport(real, asyncio.get_running_loop())
        corked.hold_next_write()
        corked.write(b"HTTP/1.1 200 OK\r\n\r\n")
        assert real.writes == []
        corked.write(b"body")
        corked.write(b"more")
        assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody", b"more"]
        # A head with no body after it (HEAD, 100 Continue) goes at the loop's next turn.
        corked.hold_next_write()
        corked.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await asyncio.sleep(0)
        assert real.writes[-1] == b"HTTP/1.1 204 No Content\r\n\r\n"
        await asyncio.sleep(0)
        assert len(real.writes) == 3            # sent once, not again
        # close sends what is held first; abort drops it
        corked.hold_next_write()
        corked.write(b"last")
        corked.close()
        assert real.writes[-1] == b"last" and real.closed
        assert corked.get_write_buffer_size() == 7   # the rest is the transport's own

    asyncio.run(main())


def test_whole_replies_leave_at_the_end_of_the_turn():
    async def main():
        first, second = _Transport(), _Transport()
        a = CorkedTransport(first, asyncio.get_running_loop())
        b = CorkedTransport(second, asyncio.get_running_loop())
        a.hold_next_write()
        a.write_whole(b"reply-a")
        b.hold_next_write()
        b.write(b"head-b ")            # a head held, then its reply given whole
        b.write_whole(b"reply-b")
        b.write_whole(b" next-b")      # a pipelined request's reply, same turn
        assert first.writes == [] and second.writes == [] and a.holding and b.holding
        await asyncio.sleep(0)
        assert first.writes == [b"reply-a"]
        assert second.writes == [b"head-b reply-b next-b"]   # in order, one write
        assert not a.holding and not b.holding
        await asyncio.sleep(0)
        assert len(first.writes) == len(second.writes) == 1   # sent once
        # close sends a held reply first; a closing transport gets nothing more
        a.write_whole(b"bye")
        a.close()
        assert first.writes[-1] == b"bye" and first.closed
        b.write_whole(b"lost")
        second.closed = True
        await asyncio.sleep(0)
        assert second.writes[-1] == b"head-b reply-b next-b"

    asyncio.run(main())


def test_respond_gives_our_own_replies_whole_and_the_rest_as_asgi_messages():
    class Cycle:
        def __init__(self):
            self.whole, self.messages = [], []

        def send_whole(self, status, headers, body):
            self.whole.append((status, list(headers), body))
            return True

        async def send(self, message):
            self.messages.append(message)

    async def main():
        own, vary, other, listed = Cycle(), Cycle(), Cycle(), Cycle()
        await respond(own.send, 200, b"{}", b"application/json")
        await respond(vary.send, 200, b"<x/>", b"text/xml", [VARY_ENCODING, GZIP_ENCODED])
        await respond(other.send, 302, b"", b"text/plain", [(b"location", b"/elsewhere")])
        await respond(listed.send, 200, b"", b"text/plain", [[b"vary", b"Accept-Encoding"]])
        return own, vary, other, listed

    own, vary, other, listed = asyncio.run(main())
    assert own.whole == [(200, [(b"content-type", b"application/json"),
                                (b"content-length", b"2"), *CORS], b"{}")]
    assert vary.whole[0][1][-2:] == [VARY_ENCODING, GZIP_ENCODED] and not vary.messages
    for cycle in (other, listed):   # not only our constants: uvicorn's checked way
        assert cycle.whole == [] and [m["type"] for m in cycle.messages] == [
            "http.response.start", "http.response.body"]


def _read_reply(sock, pending: bytearray) -> tuple[bytes, bytes]:
    """One HTTP response (head, body) from `sock`, by its Content-Length."""
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a whole head: {bytes(pending)!r}"
        pending += chunk
    head, _, rest = bytes(pending).partition(b"\r\n\r\n")
    length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    pending[:] = rest
    while len(pending) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside a body"
        pending += chunk
    body = bytes(pending[:length])
    del pending[:length]
    return head, body


def test_pipelined_and_closing_requests_are_answered_in_order(server):
    """Three calls sent in one write are answered in their order, each whole; a call
    that asks for the connection to close gets its reply before the close."""
    sdk = server.session()
    host, session = sdk.xenapi.host.get_all()[0], sdk._session

    def call(n: int, method: str, params: list, close: bool = False) -> bytes:
        body = json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                           "id": n}).encode()
        return (b"POST /jsonrpc HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + (b"Connection: close\r\n" if close else b"")
                + b"Content-Length: %d\r\n\r\n" % len(body) + body)

    with tls_connect(server.port, timeout=30) as sock:
        sock.sendall(call(1, "host.get_record", [session, host])
                     + call(2, "host.get_name_label", [session, host])
                     + call(3, "system.listMethods", [])
                     + call(4, "host.get_uuid", [session, host], close=True))
        pending = bytearray()
        replies = [_read_reply(sock, pending) for _ in range(4)]
        assert sock.recv(65536) == b""   # closed after the fourth, nothing more
    ids = [json.loads(body)["id"] for _, body in replies]
    assert ids == [1, 2, 3, 4]
    assert all(head.startswith(b"HTTP/1.1 200 ") for head, _ in replies)
    results = [json.loads(body)["result"] for _, body in replies]
    assert results[0]["uuid"] == results[3]
    assert results[1] == results[0]["name_label"]
    assert "host.get_record" in results[2]
    assert b"connection: close" in replies[3][0].lower()
    sdk.xenapi.session.logout()


def test_head_and_body_on_the_wire(server):
    """Through the real server (TLS, uvicorn): replies small and big, a HEAD-less
    error page, and keep-alive requests one after the other are answered whole."""
    conn = http.client.HTTPSConnection("127.0.0.1", server.port, timeout=30,
                                       context=ssl._create_unverified_context())
    for _ in range(3):
        conn.request("POST", "/jsonrpc", b'{"jsonrpc":"2.0","method":"system.listMethods",'
                     b'"params":[],"id":7}', {"Content-Type": "application/json"})
        reply = conn.getresponse()
        body = reply.read()
        assert reply.status == 200 and body.endswith(b',"id":7}')
        assert int(reply.getheader("content-length")) == len(body)
    conn.request("GET", "/no-such-handler")
    reply = conn.getresponse()
    assert reply.status in (403, 404) and len(reply.read()) == int(
        reply.getheader("content-length") or 0)
    conn.close()


def test_the_poll_compares_only_vms_that_can_differ(api, inprocess):
    x, server = api, inprocess.server
    vms = server.runtime(server.host_ref).vms
    template = x.VM.get_by_name_label("Other install media")[0]
    made = []
    try:
        for i in range(3):
            vm = x.VM.clone(template, f"poll-{i}")
            x.VM.set_is_a_template(vm, False)
            made.append(vm)
        quiet, running, stale = made
        x.VM.start(running, False, False)
        # A record that says Running with no domain behind it (what a missed event
        # would leave): the poll must find and correct it.
        server.store.update("VM", stale, power_state="Running", domid=5,
                            resident_on=server.host_ref)
        domains = inprocess.loop.run_until_complete(vms.hv.list())
        candidates = vms._maybe_out_of_date(domains)
        assert running in candidates and stale in candidates
        assert quiet not in candidates and template not in candidates
        inprocess.loop.run_until_complete(vms.resync(every_vm=False))
        assert x.VM.get_power_state(stale) == "Halted"
        assert x.VM.get_resident_on(stale) == NULL_REF
        assert x.VM.get_power_state(running) == "Running"
        assert stale not in vms._maybe_out_of_date(
            inprocess.loop.run_until_complete(vms.hv.list()))
    finally:
        for vm in made:
            if x.VM.get_power_state(vm) != "Halted":
                x.VM.hard_shutdown(vm)
            x.VM.destroy(vm)


def test_psycopg_is_imported_only_for_postgresql():
    code = ("import sys, xapi_server.main, xapi_server.store.handover, "
            "xapi_server.store.pool_read; print('psycopg' in sys.modules); "
            "print(xapi_server.store.display_name('postgresql://u:pw@db.example:5433/xapi'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out == ["False", "PostgreSQL database 'xapi' on db.example:5433"]
