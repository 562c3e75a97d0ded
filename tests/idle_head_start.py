"""A head start for test_idle_connections.py: its first test needs a connection that has
been idle for longer than the old 30 s keep-alive. Waiting those seconds inside the test
costs the suite half a minute of doing nothing; instead, when that test is selected, the
server starts and the connections are opened and used as soon as collection ends (a
background thread, conftest.py), and they sit idle while the files before it run. The test
then waits only for what is left of the idle time (nothing, in a whole-suite run), and
checks exactly what it checked before. Run alone, the file waits as long as it always did."""
from __future__ import annotations

import shutil
import tempfile
import threading
import time

from serverproc import ServerProcess, tls_connect
from vdi_server import read_head

MODULE = "test_idle_connections.py"
TEST = "test_an_sdk_session_idle_past_the_old_keep_alive_still_works"
MAX_CONNECTIONS = 4


class IdleStart:
    """The server, an SDK session and a raw TLS connection, each used once and then left
    idle; `idle_since` is when the last of them was used."""

    def __init__(self):
        self.data_dir = tempfile.mkdtemp(prefix="xapi-idle-")
        self.proc = ServerProcess(self.data_dir, env={"XAPI_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                                                 "XAPI_HEADER_TIMEOUT": "2"})
        self.session = self.raw = None
        self.idle_since = 0.0
        self.error: BaseException | None = None
        self._ready = threading.Event()

    def begin(self):
        """Start the server now; open and use the connections in the background."""
        self.proc.start_nowait()
        threading.Thread(target=self._open, daemon=True, name="idle-head-start").start()

    def _open(self):
        try:
            self.proc.wait_started(120)
            self.session = self.proc.session()
            assert self.session.xenapi.pool.get_all()
            self.raw = tls_connect(self.proc.port)
            self.raw.settimeout(10)
            assert request(self.raw) == 200
            self.idle_since = time.monotonic()
        except BaseException as exc:   # re-raised in the test's fixture
            self.error = exc
        finally:
            self._ready.set()

    def ready(self, timeout: float = 180) -> IdleStart:
        """Once the connections are open (the test's fixture); raises what went wrong."""
        if not self._ready.wait(timeout):
            raise TimeoutError("the head-started server did not answer")
        if self.error is not None:
            raise self.error
        return self

    def wait_idle(self, seconds: float):
        """Until the connections have been idle for `seconds` (what is left of it)."""
        time.sleep(max(0.0, self.idle_since + seconds - time.monotonic()))


    def stop(self):
        self.proc.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)


def request(sock) -> int:
    """GET / on the connection, the whole response read; its status."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    status, headers, body = read_head(sock)
    length = int(next(line.split(":", 1)[1] for line in headers
                      if line.lower().startswith("content-length")))
    while len(body) < length:
        body += sock.recv(4096)
    return int(status.split(" ", 2)[1])


_started: IdleStart | None = None


def maybe_begin(items):
    """From conftest's pytest_collection_finish: begin if the idle test is selected."""
    global _started
    if _started is None and any(item.nodeid.endswith(f"{MODULE}::{TEST}") for item in items):
        _started = IdleStart()
        _started.begin()


def take() -> IdleStart:
    """The head-started server for the test module (started now if nothing began it)."""
    global _started
    if _started is None:
        _started = IdleStart()
        _started.begin()
    return _started.ready()
