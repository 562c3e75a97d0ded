"""A small blocking NBD client (the protocol's fixed newstyle handshake, NBD_OPT_GO,
simple replies) for qemu-storage-daemon's NBD exports on a UNIX socket.

Why not the FUSE view for bulk transfers: QEMU serves FUSE requests one at a time,
128 KiB each, where an NBD client may keep several multi-MiB requests in flight, and
QEMU works on them concurrently (about 4x the write rate here).

Every call blocks and is thread-safe: several worker threads may each have a request
in flight. Requests go out under a lock (header and payload in one sendmsg loop, no
copy); one reader thread matches the replies to their callers by handle, never waiting
for that lock (a sender blocked on a full socket must not hold up the replies).
"""
from __future__ import annotations

import socket
import struct
import threading
from concurrent.futures import Future

MAX_REQUEST = 32 << 20            # QEMU's NBD server refuses larger requests

_INIT_MAGIC = b"NBDMAGIC"
_OPT_MAGIC = b"IHAVEOPT"
_REPLY_MAGIC_OPT = 0x3e889045565a9
_REQUEST_MAGIC = 0x25609513
_SIMPLE_REPLY_MAGIC = 0x67446698
_FLAG_FIXED_NEWSTYLE, _FLAG_NO_ZEROES = 1, 2
_OPT_GO = 7
_REP_ACK, _REP_INFO = 1, 3
_INFO_EXPORT = 0
_FLAG_READ_ONLY = 1 << 1
_CMD_READ, _CMD_WRITE, _CMD_DISC, _CMD_FLUSH, _CMD_WRITE_ZEROES = 0, 1, 2, 3, 6
_REQUEST = struct.Struct(">IHHQQI")
_REPLY = struct.Struct(">IIQ")


class NbdError(OSError):
    """The server refused a request (errno from the reply) or the connection broke."""


def _recv_exact(sock, n: int) -> bytearray:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        k = sock.recv_into(view[got:])
        if not k:
            raise NbdError("the NBD server closed the connection")
        got += k
    return buf


class NbdClient:
    """One connection to one export. `size` is the export's size in bytes."""

    def __init__(self, socket_path: str, export: str, timeout: float = 60.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(socket_path)
            self.size, self.read_only = self._handshake(export.encode())
        except BaseException:
            self.sock.close()
            raise
        self.sock.settimeout(None)   # transfers may wait on a slow disk
        self._send_lock = threading.Lock()    # one request on the socket at a time
        self._state = threading.Lock()        # _waiting, _next, _broken (never held
                                              # while sending: replies keep flowing)
        self._waiting: dict[int, tuple[Future, object]] = {}
        self._next = 0
        self._broken: Exception | None = None
        self._reader = threading.Thread(target=self._read_replies, daemon=True,
                                        name="nbd-replies")
        self._reader.start()

    # -- handshake ----------------------------------------------------------------------
    def _handshake(self, export: bytes) -> tuple[int, bool]:
        sock = self.sock
        hello = _recv_exact(sock, 18)
        if hello[:8] != _INIT_MAGIC or hello[8:16] != _OPT_MAGIC:
            raise NbdError("not a newstyle NBD server")
        (flags,) = struct.unpack(">H", hello[16:])
        if not flags & _FLAG_FIXED_NEWSTYLE:
            raise NbdError("the NBD server does not speak fixed newstyle")
        sock.sendall(struct.pack(">I", _FLAG_FIXED_NEWSTYLE | (flags & _FLAG_NO_ZEROES)))
        data = struct.pack(">I", len(export)) + export + struct.pack(">H", 0)
        sock.sendall(_OPT_MAGIC + struct.pack(">II", _OPT_GO, len(data)) + data)
        size, transmission = None, 0
        while True:
            magic, option, reply, length = struct.unpack(">QIII", _recv_exact(sock, 20))
            body = bytes(_recv_exact(sock, length)) if length else b""
            if magic != _REPLY_MAGIC_OPT or option != _OPT_GO:
                raise NbdError("malformed NBD option reply")
            if reply & (1 << 31):
                raise NbdError(f"the NBD server refused export {export.decode()!r}: "
                               f"{body.decode(errors='replace') or hex(reply)}")
            if reply == _REP_INFO and len(body) >= 12 and \
                    struct.unpack(">H", body[:2])[0] == _INFO_EXPORT:
                size, transmission = struct.unpack(">QH", body[2:12])
            elif reply == _REP_ACK:
                break
        if size is None:
            raise NbdError("the NBD server did not say the export's size")
        return size, bool(transmission & _FLAG_READ_ONLY)

    # -- requests -----------------------------------------------------------------------
    def _request(self, command: int, offset: int, length: int, payload=None,
                 into=None) -> Future:
        future: Future = Future()
        with self._state:
            if self._broken is not None:
                raise NbdError(f"the NBD connection is broken: {self._broken}")
            handle = self._next = self._next + 1
            self._waiting[handle] = (future, into)
        header = _REQUEST.pack(_REQUEST_MAGIC, 0, command, handle, offset, length)
        try:
            with self._send_lock:
                self._send(header, payload)
        except OSError as exc:
            self._fail(exc)
            raise NbdError(f"sending to the NBD server failed: {exc}") from exc
        return future

    def _send(self, header: bytes, payload):
        parts = [memoryview(header)]
        if payload is not None and len(payload):
            parts.append(memoryview(payload).cast("B"))
        while parts:
            sent = self.sock.sendmsg(parts)
            while parts and sent >= len(parts[0]):
                sent -= len(parts[0])
                parts.pop(0)
            if parts and sent:
                parts[0] = parts[0][sent:]

    def _read_replies(self):
        try:
            while True:
                magic, error, handle = _REPLY.unpack(_recv_exact(self.sock, _REPLY.size))
                if magic != _SIMPLE_REPLY_MAGIC:
                    raise NbdError("malformed NBD reply")
                with self._state:
                    future, into = self._waiting.pop(handle, (None, None))
                if future is None:
                    raise NbdError(f"an NBD reply for no request ({handle})")
                if error:
                    future.set_exception(NbdError(error, f"NBD request failed: errno {error}"))
                    continue
                if into is not None:        # a read: its data follows the reply
                    view, got = memoryview(into), 0
                    while got < len(view):
                        k = self.sock.recv_into(view[got:])
                        if not k:
                            raise NbdError("the NBD server closed the connection")
                        got += k
                future.set_result(into)
        except OSError as exc:
            self._fail(exc)

    def _fail(self, exc: Exception):
        with self._state:
            self._broken = self._broken or exc
            waiting, self._waiting = self._waiting, {}
        for future, _ in waiting.values():
            if not future.done():
                future.set_exception(NbdError(f"the NBD connection broke: {exc}"))

    def _check(self, offset: int, length: int):
        if offset < 0 or length < 0 or offset + length > self.size:
            raise NbdError(f"{length} bytes at {offset} are outside the {self.size}-byte disk")
        if length > MAX_REQUEST:
            raise NbdError(f"an NBD request of {length} bytes is over {MAX_REQUEST}")

    # -- the disk -----------------------------------------------------------------------
    def pread(self, length: int, offset: int) -> bytearray:
        self._check(offset, length)
        if not length:
            return bytearray()
        return self._request(_CMD_READ, offset, length, into=bytearray(length)).result()

    def pwrite(self, data, offset: int) -> None:
        length = memoryview(data).nbytes
        self._check(offset, length)
        if length:
            self._request(_CMD_WRITE, offset, length, payload=data).result()

    def write_zeroes(self, offset: int, length: int) -> None:
        end = offset + length
        while offset < end:
            step = min(MAX_REQUEST, end - offset)
            self._check(offset, step)
            self._request(_CMD_WRITE_ZEROES, offset, step).result()
            offset += step

    def flush(self) -> None:
        self._request(_CMD_FLUSH, 0, 0).result()

    def close(self) -> None:
        """Say goodbye (the server then closes); pending requests fail."""
        with self._send_lock:
            if self._broken is None:
                try:
                    self._send(_REQUEST.pack(_REQUEST_MAGIC, 0, _CMD_DISC, 0, 0, 0), None)
                except OSError:
                    pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._reader.join(timeout=10)
        self.sock.close()
