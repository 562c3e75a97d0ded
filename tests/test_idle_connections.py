"""Idle keep-alive connections on a real server: an XenAPI SDK session that sits idle
for longer than the old 30 s keep-alive still works on its next call (the server keeps
idle connections for hours, as xapi behind stunnel does), and when the connection budget
is reached by idle connections a new client is served and the connection idle longest
is the one closed; its SDK client reconnects by itself on its next call. Connections
that never send a request are still cut by the header deadline (test_limits.py)."""
import ssl
import time

import pytest
from serverproc import ServerProcess, tls_connect

OLD_KEEP_ALIVE = 30.0
MAX_CONNECTIONS = 4


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    p = ServerProcess(str(tmp_path_factory.mktemp("idle")),
                      env={"XAPI_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                           "XAPI_HEADER_TIMEOUT": "2"}).start()
    yield p
    p.stop()


def request(sock) -> int:
    """GET / on the connection, the whole response read; its status."""
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError(f"closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")][0])
    while len(body) < length:
        body += sock.recv(4096)
    return int(head.split(b" ", 2)[1])


def closed_by_server(sock) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def still_open(sock) -> bool:
    sock.settimeout(0.2)
    try:
        return sock.recv(1) != b""
    except TimeoutError:
        return True                 # nothing to read, and not closed
    except OSError:
        return False
    finally:
        sock.settimeout(10)


def test_an_sdk_session_idle_past_the_old_keep_alive_still_works(proc):
    session = proc.session()
    assert session.xenapi.pool.get_all()
    raw = tls_connect(proc.port)
    raw.settimeout(10)
    assert request(raw) == 200
    time.sleep(OLD_KEEP_ALIVE + 2)
    assert still_open(raw)               # the very same connection, not a new one
    assert request(raw) == 200
    assert session.xenapi.pool.get_all()  # the SDK reuses its idle connection
    raw.close()
    session.xenapi.session.logout()


def test_at_the_budget_the_connection_idle_longest_makes_room(proc):
    conns = []
    for _ in range(MAX_CONNECTIONS):
        sock = tls_connect(proc.port)
        sock.settimeout(10)
        assert request(sock) == 200       # served once, then idle
        conns.append(sock)
        time.sleep(0.05)
    time.sleep(0.1)
    assert request(conns[0]) == 200       # the first accepted is now the latest used:
    time.sleep(0.1)                       # conns[1] has been idle longest
    newcomer = tls_connect(proc.port)
    newcomer.settimeout(10)
    assert request(newcomer) == 200       # served, not HTTP 503
    assert closed_by_server(conns[1])
    for sock in (conns[0], conns[2], conns[3]):
        assert request(sock) == 200       # the others are untouched
    for sock in conns + [newcomer]:
        sock.close()


def test_an_evicted_sdk_session_reconnects_on_its_next_call(proc):
    time.sleep(0.5)                       # the previous test's sockets are gone
    session = proc.session()
    assert session.xenapi.pool.get_all()  # its connection is now idle, and oldest
    time.sleep(0.1)
    others = []
    for _ in range(MAX_CONNECTIONS):
        sock = tls_connect(proc.port)
        sock.settimeout(10)
        assert request(sock) == 200
        others.append(sock)
    time.sleep(0.3)
    assert session.xenapi.pool.get_all()  # its connection was closed: a new one
    for sock in others:
        sock.close()
    session.xenapi.session.logout()
