"""The client side of the console tests (tests/test_console.py): raw HTTP requests over
TLS, a small RFB 3.3 client as XenCenter speaks it, WebSocket framing as noVNC sends it,
and screen comparisons. Only the test module uses them; kept apart so it reads as tests."""
import base64
import hashlib
import os
import re
import struct
import time

from guest.harness import wait_for
from serverproc import tls_connect

OK_200 = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nCache-Control: no-cache, no-store\r\n\r\n"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- talking to the server -------------------------------------------------------------

def read_head(sock) -> tuple[bytes, bytes]:
    """(the header block with its blank line, what came after it)."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        if not piece:
            break
        data += piece
    head, sep, rest = data.partition(b"\r\n\r\n")
    return head + sep, rest


class Buffered:
    """recv_exact over a socket, starting with bytes already read."""

    def __init__(self, sock, first=b""):
        self.sock, self.buf = sock, bytearray(first)

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            piece = self.sock.recv(65536)
            if not piece:
                raise EOFError(f"closed with {len(self.buf)} of {n} bytes")
            self.buf += piece
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def send(self, data: bytes):
        self.sock.sendall(data)


def connect(port, path, session=None, method="CONNECT", version="1.0", headers=()):
    sock = tls_connect(port, timeout=30)
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1"]
    if session:
        lines.append(f"Cookie: session_id={session}")
    lines += list(headers)
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head, rest = read_head(sock)
    return sock, head, rest


# -- a small RFB client (RFC 6143, protocol 3.3 as XenCenter speaks it) ----------------

class Rfb:
    def __init__(self, io):
        self.io = io
        version = io.recv_exact(12)
        assert re.fullmatch(rb"RFB 003\.00[378]\n", version), version
        io.send(b"RFB 003.003\n")
        (security,) = struct.unpack("!I", io.recv_exact(4))
        assert security == 1, f"security type {security}: expected None"
        io.send(b"\x01")                                   # ClientInit: shared
        self.width, self.height = struct.unpack("!HH", io.recv_exact(4))
        io.recv_exact(16)                                  # the server's pixel format
        (name_len,) = struct.unpack("!I", io.recv_exact(4))
        self.name = io.recv_exact(name_len)
        # 32 bits per pixel, depth 24, little endian, true colour, 8 bits per channel.
        io.send(struct.pack("!B3xBBBBHHHBBB3x", 0, 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        io.send(struct.pack("!BxHi", 2, 1, 0))             # SetEncodings: Raw only

    def screen(self) -> bytes:
        """The whole framebuffer, 4 bytes a pixel."""
        self.io.send(struct.pack("!BBHHHH", 3, 0, 0, 0, self.width, self.height))
        fb = bytearray(self.width * self.height * 4)
        covered = 0
        while covered < self.width * self.height:
            kind = self.io.recv_exact(1)[0]
            if kind == 2:                                  # Bell
                continue
            if kind == 3:                                  # ServerCutText
                self.io.recv_exact(3)
                self.io.recv_exact(struct.unpack("!I", self.io.recv_exact(4))[0])
                continue
            assert kind == 0, f"server message {kind}"
            _, rects = struct.unpack("!BH", self.io.recv_exact(3))
            for _ in range(rects):
                rx, ry, w, h, enc = struct.unpack("!HHHHi", self.io.recv_exact(12))
                assert enc == 0, f"encoding {enc}"
                pixels = self.io.recv_exact(w * h * 4)
                for row in range(h):
                    start = ((ry + row) * self.width + rx) * 4
                    fb[start:start + w * 4] = pixels[row * w * 4:(row + 1) * w * 4]
                covered += w * h
        return bytes(fb)

    def key(self, keysym: int):
        for down in (1, 0):
            self.io.send(struct.pack("!BBxxI", 4, down, keysym))


def colours(fb: bytes) -> int:
    return len({fb[i:i + 3] for i in range(0, len(fb), 4 * 7)})


def changed_pixels(a: bytes, b: bytes) -> int:
    return sum(a[i:i + 4] != b[i:i + 4] for i in range(0, len(a), 4))


def screens(rfb, count=4, pause=0.3) -> list:
    """A few screens a moment apart: the text cursor blinks, so 'before' is every
    state it was seen in."""
    seen = []
    for _ in range(count):
        seen.append(rfb.screen())
        time.sleep(pause)
    return seen


def wait_screen_shows_more_than_the_cursor(rfb, before: list):
    """Until the screen differs from every earlier state by more pixels than a blinking
    cursor covers (a line of printed text changes hundreds)."""
    assert max(changed_pixels(before[0], b) for b in before) < 100   # a cursor at most
    wait_for(lambda: min(changed_pixels(rfb.screen(), b) for b in before) > 300, 20,
             "the printed text on the screen")


class WsIO:
    """recv_exact/send of the RFB stream inside WebSocket frames, checking every server
    frame is an unmasked binary frame of at most 1024 bytes."""

    def __init__(self, sock, first=b"", mask=True):
        self.raw, self.mask, self.buf = Buffered(sock, first), mask, bytearray()
        self.largest = 0

    def _frame(self):
        b0, b1 = self.raw.recv_exact(2)
        assert b0 == 0x82, f"frame byte 0 {b0:#x}"
        assert not b1 & 0x80, "a masked server frame"
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", self.raw.recv_exact(2))
        assert n <= 1024, f"a server frame of {n} bytes"
        self.largest = max(self.largest, n)
        return self.raw.recv_exact(n)

    def recv_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.buf += self._frame()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def send(self, data: bytes):
        self.raw.send(client_frame(data, self.mask))


def client_frame(data: bytes, mask: bool, opcode: int = 2) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(data)
    length = bytes([n]) if n < 126 else bytes([126]) + struct.pack("!H", n)
    if not mask:
        return head + length + data
    key = os.urandom(4)
    length = bytes([length[0] | 0x80]) + length[1:]
    return head + length + key + bytes(b ^ key[i % 4] for i, b in enumerate(data))


def ws_open(port, path, session):
    key = base64.b64encode(os.urandom(16)).decode()
    sock, head, rest = connect(port, path, session, method="GET", version="1.1", headers=(
        "Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: binary"))
    accept = base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())
    assert head == (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept +
                    b"\r\nSec-WebSocket-Protocol: binary\r\n\r\n"), head
    return sock, rest


def png_size(png: bytes) -> tuple[int, int]:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png[12:16] == b"IHDR"
    return struct.unpack("!II", png[16:24])


def http_get(port, path, session=None, user=None):
    sock = tls_connect(port, timeout=30)
    auth = ""
    if user:
        auth = "Authorization: Basic " + base64.b64encode(user.encode()).decode() + "\r\n"
    cookie = f"Cookie: session_id={session}\r\n" if session else ""
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: x\r\n{cookie}{auth}\r\n".encode())
    data = b""
    while piece := sock.recv(65536):
        data += piece
    sock.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body
