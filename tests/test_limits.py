"""Connection limits on a real server: slowloris and silent clients are cut off, idle
keep-alive connections are not, and connections beyond the cap get HTTP 503 while the
server keeps answering everyone else."""
import ssl
import time

import pytest
from serverproc import ServerProcess, tls_connect

HEADER_TIMEOUT, BODY_TIMEOUT, MAX_CONNECTIONS = 1.0, 2.0, 6


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    p = ServerProcess(str(tmp_path_factory.mktemp("limits")),
                      env={"XAPI_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
                           "XAPI_BODY_TIMEOUT": str(BODY_TIMEOUT),
                           "XAPI_MAX_CONNECTIONS": str(MAX_CONNECTIONS)}).start()
    yield p
    p.stop()


def connect(proc) -> ssl.SSLSocket:
    return tls_connect(proc.port)


def closed_by_server(sock) -> bool:
    try:
        return sock.recv(1024) == b""
    except (ConnectionResetError, ssl.SSLError):
        return True


def request(sock, path="/"):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    status = int(head.split(b" ", 2)[1])
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")][0])
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += sock.recv(4096)
    return status


def dribble_until_closed(sock, payload: bytes, seconds: float) -> float | None:
    """Send one byte every 0.2 s; return when the server closed on us, or None."""
    started = time.monotonic()
    for byte in payload:
        if time.monotonic() - started > seconds:
            return None
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return time.monotonic() - started
        time.sleep(0.2)
    return None


def test_slow_headers_are_cut_off_and_others_are_served(proc):
    loris = [connect(proc) for _ in range(3)]
    for sock in loris:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    x = proc.session().xenapi           # a normal client meanwhile: served at once
    assert x.pool.get_all()
    cut = dribble_until_closed(loris[0], b"X-Slow: " + b"a" * 200, seconds=20)
    assert cut is not None, "a client trickling headers was never disconnected"
    assert time.monotonic() - started < HEADER_TIMEOUT + 10
    for sock in loris[1:]:
        assert closed_by_server(sock)
    x.session.logout()


def test_a_silent_connection_is_closed(proc):
    sock = connect(proc)
    started = time.monotonic()
    assert closed_by_server(sock)
    assert HEADER_TIMEOUT * 0.8 <= time.monotonic() - started < HEADER_TIMEOUT + 10


def test_a_slow_body_is_cut_off(proc):
    sock = connect(proc)
    sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml\r\n"
                 b"Content-Length: 5000\r\n\r\n<?xml version='1.0'?>")
    started = time.monotonic()
    assert closed_by_server(sock)
    assert BODY_TIMEOUT * 0.8 <= time.monotonic() - started < BODY_TIMEOUT + 10


def test_idle_keep_alive_between_requests_is_not_a_slowloris(proc):
    sock = connect(proc)
    assert request(sock) == 200
    time.sleep(HEADER_TIMEOUT * 2)       # idle, but under the 30 s keep-alive
    assert request(sock) == 200
    sock.close()


def test_connections_beyond_the_cap_get_503_then_service_returns(proc):
    held = [connect(proc) for _ in range(MAX_CONNECTIONS)]
    for sock in held:
        sock.settimeout(10)
    # The connections are open; one more request over the cap is refused with 503.
    extra = connect(proc)
    assert request(extra) == 503
    extra.close()
    for sock in held:
        sock.close()
    time.sleep(0.3)
    fresh = connect(proc)
    assert request(fresh) == 200
    fresh.close()
    assert proc.session().xenapi.pool.get_all()
