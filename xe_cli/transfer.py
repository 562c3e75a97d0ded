"""HttpGet / HttpPut orders: stream a file to or from a URL the server names.

The URL is a path on the same server (`/export?session_id=...`) or `https://host/...`.
Only files named on the command line are touched; downloads never overwrite. When
stderr is a terminal, a progress bar shows how far the transfer is (an upload of a
file knows its size; a download shows what has come so far and the rate).
"""
import os
import socket
import sys
import time
from urllib.parse import urlsplit

CHUNK = 64 * 1024          # one receive (an _ssl read allocates what it is asked for)
FILE_CHUNK = 1024 * 1024   # one read of the file to send


def _open(target, url):
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port
    if parts.scheme == "http" or parts.scheme == "https":
        port = port or (443 if parts.scheme == "https" else 80)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return target.open(host, port), host or target.host, path


def _read_head(sock) -> tuple:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            raise OSError("connection closed before the reply")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    return status, headers, rest


class Progress:
    """`\\r[#####     ]  42%  118.3 MiB/s` on a terminal, redrawn at most 5 times a
    second; nothing at all when stderr is not a terminal (scripts, logs)."""

    def __init__(self, err, total=None):
        self.err, self.total = err, total
        self.shown = _isatty(err)
        self.done, self.start, self.drawn = 0, time.monotonic(), 0.0

    def add(self, n: int):
        self.done += n
        now = time.monotonic()
        if self.shown and now - self.drawn >= 0.2:
            self.drawn = now
            self._draw(now)

    def _draw(self, now):
        rate = self.done / max(now - self.start, 1e-6) / (1 << 20)
        if self.total:
            fraction = min(1.0, self.done / self.total)
            bar = "#" * int(fraction * 40)
            self.err.write(f"\r[{bar:<40}] {fraction * 100:3.0f}% {rate:8.1f} MiB/s")
        else:
            self.err.write(f"\r{self.done / (1 << 20):10.1f} MiB {rate:8.1f} MiB/s")
        self.err.flush()

    def finish(self):
        if self.shown and self.done:
            self._draw(time.monotonic())
            self.err.write("\n")
            self.err.flush()


def _isatty(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def transfer(target, put: bool, filename: str, url: str, permitted, err, hops=5) -> bool:
    if filename and os.path.realpath(filename) not in permitted:
        err.write(f"File not permitted: {filename}\n")
        return False
    try:
        sock, host, path = _open(target, url)
        with sock:
            if put:
                status, headers = _put(sock, host, path, filename, err)
            else:
                sock.sendall(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
                status, headers, rest = _read_head(sock)
                if status == 200:
                    _save(sock, filename, rest, err)
            if status in (301, 302) and hops and "location" in headers:
                return transfer(target, put, filename, headers["location"], permitted, err,
                                hops - 1)
            if status != 200:
                err.write(f"The server refused the transfer: HTTP {status}\n")
            return status == 200
    except OSError as exc:
        err.write(f"Transfer failed: {exc}\n")
        return False


def _put(sock, host, path, filename, err) -> tuple:
    """As xapi's thin client: the request head, then the server's answer, and the file
    only after a 200 (xapi's PUT handlers answer before they read: a client that sends
    first and reads later would deadlock on a large file)."""
    f = open(filename, "rb")
    with f:
        size = os.fstat(f.fileno()).st_size if os.path.isfile(filename) else None
        head = f"PUT {path} HTTP/1.0\r\nHost: {host}\r\n"
        head += f"Content-length: {size}\r\n" if size is not None else ""
        sock.sendall(head.encode() + b"\r\n")
        status, headers, _ = _read_head(sock)
        if status != 200:
            return status, headers
        progress = Progress(err, size)
        for data in iter(lambda: f.read(FILE_CHUNK), b""):
            sock.sendall(data)
            progress.add(len(data))
        progress.finish()
    if size is None:
        sock.shutdown(socket.SHUT_WR)    # the end of a body of unknown length
    # The server closes once it has taken the body in: only then is the transfer done.
    for _ in iter(lambda: sock.recv(CHUNK), b""):
        pass
    return status, headers


def _save(sock, filename, first: bytes, err):
    if filename:
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        out = os.fdopen(fd, "wb")
    else:
        out = sys.stdout.buffer
    progress = Progress(err if filename else None)    # stdout may be the terminal
    try:
        out.write(first)
        progress.add(len(first))
        for data in iter(lambda: sock.recv(CHUNK), b""):
            out.write(data)
            progress.add(len(data))
    finally:
        progress.finish()
        out.flush()
        if filename:
            out.close()
