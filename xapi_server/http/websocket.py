"""The WebSocket dialect of xapi's console proxy (its wsproxy daemon, RFC 6455 "hybi10").

Written here rather than taken from a library on purpose: the handshake reply must be
xapi's exact header block (Sec-WebSocket-Protocol: binary whatever the client asked),
the connection is already a raw byte stream taken from the HTTP layer, and the dialect
differs from a strict RFC 6455 server in ways clients rely on or tolerate: client
frames may come unmasked (a strict server must close such a connection), text and
binary frames are both raw bytes, server frames carry at most 1024 bytes, and neither
side's end is announced with a close frame. A sans-IO library (wsproto) refuses
unmasked client frames and writes its own handshake, so it would have to be worked
around in exactly the places that matter, while the framing itself is short.

Beyond xapi: a ping is answered with a pong and neither reaches the console (xapi's
proxy forwarded a ping's payload into the RFB stream).
"""
from __future__ import annotations

import base64
import hashlib
import struct

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_SERVER_PAYLOAD = 1024          # as xapi's wsproxy: one read of the VNC socket
MAX_CLIENT_PAYLOAD = 1 << 20       # a bigger client frame ends the session
CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


class ProtocolError(Exception):
    """The client sent something that is no WebSocket frame we accept."""


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key.strip() + GUID).encode()).digest()).decode()


def handshake_lines(key: str) -> list[str]:
    """xapi's 101 reply, exactly."""
    return ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(key)}", "Sec-WebSocket-Protocol: binary"]


def frame(payload: bytes, opcode: int = BINARY) -> bytes:
    """One unfragmented, unmasked server frame."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return head + payload


def frames(data: bytes) -> bytes:
    """`data` as binary frames of at most MAX_SERVER_PAYLOAD bytes each."""
    return b"".join(frame(data[i:i + MAX_SERVER_PAYLOAD])
                    for i in range(0, len(data), MAX_SERVER_PAYLOAD))


class FrameReader:
    """Client frames in, (opcode, unmasked payload) out, whatever the read boundaries."""

    def __init__(self):
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        self._buffer += data
        out = []
        while (parsed := self._one()) is not None:
            out.append(parsed)
        return out

    def _one(self):
        buf = self._buffer
        if len(buf) < 2:
            return None
        opcode, masked, length = buf[0] & 0x0F, buf[1] & 0x80, buf[1] & 0x7F
        pos = 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, pos = struct.unpack_from("!H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, pos = struct.unpack_from("!Q", buf, 2)[0], 10
        if length > MAX_CLIENT_PAYLOAD:
            raise ProtocolError(f"a client frame of {length} bytes")
        mask = b""
        if masked:
            if len(buf) < pos + 4:
                return None
            mask, pos = bytes(buf[pos:pos + 4]), pos + 4
        if len(buf) < pos + length:
            return None
        payload = bytes(buf[pos:pos + length])
        del buf[:pos + length]
        if mask:
            payload = _unmask(payload, mask)
        return opcode, payload


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")
