"""HttpConnect orders (`xe console`): attach this terminal to a console the server names.

As xapi's xe: `CONNECT <path> HTTP/1.0` with `content-length: 0` on a new connection to
the server (the session is in the URL's query), or where its redirect points; on 200
the connection is a raw byte stream both ways, the terminal is put in raw mode (when
stdin is one) so every key, Ctrl-C included, goes to the guest, and Ctrl-] (0x1d)
leaves; 404 means the console is not available. Stdin that is no terminal (a pipe, a file) is sent as it is; at its
end the console's output is still shown until it has been quiet for LINGER seconds
(LINGER_MAX at most).
"""
import os
import select
import sys
import time

from .connect import ConnectError
from .transfer import _open, _read_head    # the same URL and reply handling as HttpGet

ESCAPE = b"\x1d"          # Ctrl-]
LINGER = 2.0              # seconds of console silence after stdin ended
LINGER_MAX = 30.0         # ... but no longer than this after it ended (a chatty guest)
HEARTBEAT = 300.0         # seconds between the Wait messages that keep /cli alive
CHUNK = 64 * 1024


def _fileno(sock) -> int:
    raw = getattr(sock, "raw", sock)      # connect._TlsConn keeps the socket as .raw
    return raw.fileno()


def _pending(sock) -> int:
    """Bytes TLS has already decrypted (select() cannot see them)."""
    tls = getattr(sock, "tls", sock)
    pending = getattr(tls, "pending", None)
    return pending() if pending else 0


def _write_all(fd: int, data: bytes):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def attach(target, url: str, err, heartbeat=None, hops=5) -> bool:
    """Run the console session; True when it was attached (and then left). A redirect
    (a pool's coordinator sending us to the member running the VM) is followed."""
    try:
        sock, _, path = _open(target, url)
    except (ConnectError, OSError) as exc:
        err.write(f"Failed to connect to the console: {exc}\n")
        return False
    try:
        sock.sendall(f"CONNECT {path} HTTP/1.0\r\ncontent-length: 0\r\n\r\n".encode())
        status, headers, rest = _read_head(sock)
        if status in (301, 302) and hops and "location" in headers:
            sock.close()
            return attach(target, headers["location"], err, heartbeat, hops - 1)
        if status == 404:
            err.write("Server replied with HTTP 404: the console is not available\n")
            return False
        if status != 200:
            err.write(f"Server said: HTTP {status}\n")
            return False
        _session(sock, rest, heartbeat)
        return True
    except (OSError, ValueError, IndexError) as exc:   # gone, or a reply that is no HTTP
        err.write(f"Console connection failed: {exc}\n")
        return False
    finally:
        sock.close()


def _session(sock, first: bytes, heartbeat):
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout.flush()
    saved = None
    if os.isatty(stdin):
        import termios
        import tty
        saved = termios.tcgetattr(stdin)
        tty.setraw(stdin)
    try:
        _write_all(stdout, first)
        _relay(sock, stdin, stdout, heartbeat)
    finally:
        if saved is not None:
            import termios
            termios.tcsetattr(stdin, termios.TCSANOW, saved)
            _write_all(stdout, b"\r\n")


def _relay(sock, stdin, stdout, heartbeat):
    sock_fd = _fileno(sock)
    stdin_open, quiet_since, ended_at, beat = True, None, None, time.monotonic()
    while True:
        now = time.monotonic()
        if heartbeat and now - beat >= HEARTBEAT:
            heartbeat()
            beat = now
        if not stdin_open and (now - quiet_since >= LINGER or now - ended_at >= LINGER_MAX):
            return
        watch = [sock_fd] + ([stdin] if stdin_open else [])
        wait = 0 if _pending(sock) else (0.5 if stdin_open else LINGER)
        readable, _, _ = select.select(watch, [], [], wait)
        if sock_fd in readable or _pending(sock):
            data = sock.recv(CHUNK)
            if not data:
                return                      # the console went away
            _write_all(stdout, data)
            if not stdin_open:
                quiet_since = time.monotonic()
        if stdin in readable:
            data = os.read(stdin, CHUNK)
            if not data:
                stdin_open = False
                quiet_since = ended_at = time.monotonic()
                continue
            escape = data.find(ESCAPE)
            if escape >= 0:
                if escape:
                    sock.sendall(data[:escape])
                return
            sock.sendall(data)
