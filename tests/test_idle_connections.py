"""Idle keep-alive connections on a real server: an XenAPI SDK session that sits idle
for longer than the old 30 s keep-alive still works on its next call (the server keeps
idle connections for hours, as xapi behind stunnel does), and when the connection budget
is reached by idle connections a new client is served and the connection idle longest
is the one closed; its SDK client reconnects by itself on its next call. Connections
that never send a request are still cut by the header deadline (test_limits.py)."""
import ssl
import time

import idle_head_start
import pytest
from idle_head_start import MAX_CONNECTIONS, request
from serverproc import tls_connect

OLD_KEEP_ALIVE = 30.0


@pytest.fixture(scope="module")
def head_start():
    """The server, with an SDK session and a raw connection used once and idle since
    (tests/idle_head_start.py: begun when collection ended, if the first test is run)."""
    started = idle_head_start.take()
    yield started
    started.stop()


@pytest.fixture(scope="module")
def proc(head_start):
    return head_start.proc


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


def test_an_sdk_session_idle_past_the_old_keep_alive_still_works(head_start):
    # Opened and used once by the head start; this test's from now on (its connections
    # are gone after it, as the next tests count the open ones)
    session, raw = head_start.session, head_start.raw
    head_start.session = head_start.raw = None
    head_start.wait_idle(OLD_KEEP_ALIVE + 2)
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
