"""The byte streams around an XVA: gzip and zstd out (use_compression) and in (detected,
and decompressed in bounded pieces so a small bomb cannot fill the memory), and
LoopBridge, which lets the sync format code in a worker thread read from and write to
an asyncio connection.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import zlib

import zstandard

from .tar import BLOCK, TarReader, Truncated, XvaError, parse_header, read_full

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"


def compression_of(param: str | None) -> str | None:
    """use_compression= as xapi reads it: true|gzip -> gzip, zstd -> zstd, else none."""
    return {"true": "gzip", "gzip": "gzip", "zstd": "zstd"}.get(param or "")


class CompressingSink:
    """write() compresses into `sink`; close() flushes the compressor (not `sink`)."""

    def __init__(self, sink, method: str | None, level: int = 1):
        self.sink, self.method = sink, method
        if method == "gzip":
            self._c = zlib.compressobj(level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        elif method == "zstd":
            self._c = zstandard.ZstdCompressor(level=3, threads=0).compressobj()
        else:
            self._c = None

    def write(self, data: bytes):
        if self._c is None:
            self.sink.write(data)
        else:
            out = self._c.compress(data)
            if out:
                self.sink.write(out)

    def close(self):
        if self._c is not None:
            self.sink.write(self._c.flush())


class Prepend:
    """A source with bytes already read put back in front."""

    def __init__(self, head: bytes, source):
        self.head, self.source = head, source

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.source.read(n)


class GzipSource:
    """Decompress gzip members one after another, never more than `n` bytes at a time
    (a small input that inflates to gigabytes cannot fill the memory)."""

    def __init__(self, source):
        self.source = source
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._pending = b""

    def read(self, n: int) -> bytes:
        while True:
            try:
                out = self._step(n)
            except zlib.error as exc:
                raise XvaError(f"corrupt gzip data: {exc}") from None
            if out is None:
                return b""
            if out:
                return out

    def _step(self, n: int) -> bytes | None:
        if self._d.unconsumed_tail:
            return self._d.decompress(self._d.unconsumed_tail, n)
        if self._d.eof:            # another gzip member may follow (as `cat a.gz b.gz`)
            rest = self._d.unused_data or self.source.read(64 * 1024)
            if not rest:
                return None
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            return self._d.decompress(rest, n)
        data = self.source.read(64 * 1024)
        if not data:
            raise Truncated("the gzip stream ends early")
        return self._d.decompress(data, n)


class ZstdSource:
    def __init__(self, source):
        self._r = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=64 * 1024, read_across_frames=True)

    def read(self, n: int) -> bytes:
        try:
            return self._r.read(n)
        except zstandard.ZstdError as exc:
            raise XvaError(f"corrupt zstd data: {exc}") from None


def open_archive(source, first_member: str = "ova.xml"):
    """`source` as a tar stream, decompressed if it is zstd or gzip (as xapi: plain when
    the first header is a valid header of `first_member`, else the zstd magic, else
    gzip). Returns (TarReader, compression name or None)."""
    head = read_full(source, BLOCK)
    try:
        member = parse_header(head)
        if member is not None and member.name == first_member:
            return TarReader(Prepend(head, source)), None
    except XvaError:
        pass
    if head[:4] == ZSTD_MAGIC:
        return TarReader(ZstdSource(Prepend(head, source))), "zstd"
    if head[:2] == GZIP_MAGIC:
        return TarReader(GzipSource(Prepend(head, source))), "gzip"
    if len(head) < BLOCK:
        raise Truncated("the stream ends before the first tar header")
    return TarReader(Prepend(head, source)), None   # its first header says what is wrong



# -- bridging the blocking code to an asyncio connection -----------------------------

class ClientClosed(XvaError):
    """The other end of the connection went away (or the transfer was cancelled)."""


class LoopBridge:
    """Lets code in a worker thread read from and write to coroutines of the event loop:
    `read(n)` returns what `await read_some()` gives (kept for the next read when more
    than n); `write(data)` waits until `await write(data)` is done. `cancel()` makes every
    later call raise ClientClosed, so a cancelled transfer's thread ends promptly."""

    def __init__(self, loop, read_some=None, write=None):
        self.loop, self._read_some, self._write = loop, read_some, write
        self._rest = b""
        self._eof = False
        self._future = None
        self.cancelled = False

    def cancel(self):
        """From the loop's thread: stop the thread's current and later waits."""
        self.cancelled = True
        if self._future is not None:
            self._future.cancel()

    def _run(self, coro):
        if self.cancelled:
            coro.close()
            raise ClientClosed("the transfer was cancelled")
        self._future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return self._future.result()
        except XvaError:
            raise
        except (Exception, concurrent.futures.CancelledError) as exc:
            if self.cancelled:
                raise ClientClosed("the transfer was cancelled") from None
            raise ClientClosed(f"the connection failed: {exc}") from exc
        finally:
            self._future = None

    def read(self, n: int) -> bytes:
        if not self._rest and not self._eof:
            self._rest = self._run(self._read_some())
            self._eof = not self._rest
        out, self._rest = self._rest[:n], self._rest[n:]
        return out

    def write(self, data: bytes):
        self._run(self._write(data))
