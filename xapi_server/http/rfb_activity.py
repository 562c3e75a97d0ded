"""Is a VNC client still being used? The client->server half of an RFB session, parsed
just enough to tell a person's input from a viewer's routine traffic, for
pool.vm_console_idle_timeout (xapi's Console_idle_monitor and its RFB client message
parser).

Activity is a KeyEvent, a PointerEvent or a QEMU client message (extended key events);
a viewer asking for screen updates, or setting encodings, is not. A stream this parser
cannot follow (an unknown message, a security type with a client answer we do not
know) switches it off: like xapi, that session is then never closed for idleness.
"""
from __future__ import annotations

import struct

KEY_EVENT, POINTER_EVENT, QEMU_MESSAGE = 4, 5, 255
_ACTIVE = {KEY_EVENT, POINTER_EVENT, QEMU_MESSAGE}
# Client messages of a fixed length (type byte included).
_FIXED = {0: 20, 3: 10, KEY_EVENT: 8, POINTER_EVENT: 6, 150: 10, 248: 4}
_NONE, _VNC_AUTH = 1, 2
MAX_MESSAGE = 1 << 20     # a longer one (a huge cut text) is not followed, not buffered


class RfbActivity:
    def __init__(self):
        self._buffer = bytearray()
        self._stage = "version"
        self._version = (3, 3)
        self.broken = False        # could not follow the stream: never idle

    def feed(self, data: bytes) -> bool:
        """True when `data` completes at least one message that shows activity."""
        if self.broken:
            return False
        self._buffer += data
        active = False
        try:
            while (kind := self._next()) is not None:
                active |= kind in _ACTIVE
        except ValueError:
            self.broken = True
            self._buffer.clear()
        return active

    def _take(self, n: int) -> bytes | None:
        if len(self._buffer) < n:
            return None
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    def _next(self):
        """Consume one handshake step or message; its type (-1 for handshake steps),
        or None when more bytes are needed."""
        buf = self._buffer
        if self._stage == "version":
            line = self._take(12)
            if line is None:
                return None
            if not line.startswith(b"RFB ") or line[7:8] != b".":
                raise ValueError("no RFB version")
            self._version = (int(line[4:7]), int(line[8:11]))
            # 3.3: the server picks the security type and the client says nothing.
            self._stage = "security" if self._version >= (3, 7) else "init"
            return -1
        if self._stage == "security":
            choice = self._take(1)
            if choice is None:
                return None
            if choice[0] == _VNC_AUTH:
                self._stage = "vnc-auth"
            elif choice[0] == _NONE:
                self._stage = "init"
            else:
                raise ValueError(f"security type {choice[0]}")
            return -1
        if self._stage == "vnc-auth":
            if self._take(16) is None:
                return None
            self._stage = "init"
            return -1
        if self._stage == "init":          # ClientInit: the shared flag
            if self._take(1) is None:
                return None
            self._stage = "messages"
            return -1
        if not buf:
            return None
        kind = buf[0]
        length = self._length(kind)
        if length is not None and length > MAX_MESSAGE:
            raise ValueError(f"a client message of {length} bytes")
        if length is None or self._take(length) is None:
            return None
        return kind

    def _length(self, kind: int) -> int | None:
        """The whole message's length, or None until enough of it is there to know."""
        buf = self._buffer
        if kind in _FIXED:
            return _FIXED[kind]
        if kind == 2:                                  # SetEncodings
            return None if len(buf) < 4 else 4 + 4 * struct.unpack_from("!H", buf, 2)[0]
        if kind == 6:                                  # ClientCutText
            return None if len(buf) < 8 else 8 + struct.unpack_from("!I", buf, 4)[0]
        if kind == 250:                                # Fence
            return None if len(buf) < 9 else 9 + buf[8]
        if kind == 251:                                # SetDesktopSize
            return None if len(buf) < 8 else 8 + 16 * buf[6]
        if kind == QEMU_MESSAGE:
            if len(buf) < 2:
                return None
            if buf[1] == 0:                            # extended key event
                return 12
            if buf[1] == 1:                            # audio: enable, disable, format
                if len(buf) < 4:
                    return None
                return 10 if struct.unpack_from("!H", buf, 2)[0] == 2 else 4
            raise ValueError(f"QEMU client message {buf[1]}")
        raise ValueError(f"client message type {kind}")
