"""The XVA container: tar members, and a disk as a stream of checksummed 1 MiB chunks.

An XVA (xapi's VM export) is a plain tar: `ova.xml` first, then for each disk the
members `<prefix>/00000000`, `<prefix>/00000000.xxhash`, `<prefix>/00000001`, ...
(the data of chunk n and the XXH64 of that data as 16 uppercase hex digits), then two
zero blocks. All-zero chunks are left out, except the first and the last, so a reader
always learns where the disk ends. `/export_raw_vdi?format=tar` uses the same chunk
stream with the prefix `vdi` and no ova.xml.

Everything here is synchronous and works on small objects:
    sink.write(data)            where bytes go (a file, a socket bridge, a compressor)
    source.read(n) -> bytes     at most n bytes, b"" only at the end
so the server runs it in a worker thread (the CPU work, hashing and compression, then
leaves the event loop) and bridges to its connection with `LoopBridge`. Memory is
bounded by one chunk: nothing reads a member it has not checked the size of.

The reader follows xapi's rules (stream_vdi.ml recv_all_vdi), which define the format:
numbered members in increasing order, a gap of k numbers is k chunks of zeros as long as
the first chunk of the whole import, a 0-byte member advances nothing (xapi writes one
as a keep-alive), `.xxhash` or legacy `.checksum` (SHA-1, lowercase hex) after each
data member, and a disk ends as soon as its virtual size is reached. What it refuses it
refuses with an `XvaError` subclass saying what was wrong, before writing past the disk.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import re
import zlib
from dataclasses import dataclass, field

import xxhash
import zstandard

BLOCK = 512
CHUNK = 1024 * 1024                  # xapi's chunk size
MAX_CHUNK = 16 * CHUNK               # a bigger data member is no XVA we should buffer
MAX_OVA_XML = 32 * 1024 * 1024       # the metadata of a VM with many snapshots fits
MAX_CHECKSUM_MEMBER = 128
ZERO_BLOCK = bytes(BLOCK)
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
# "prefix/NNNNNNNN" numbers are 8 digits as xapi prints them; longer ones still sort right
_NUMBER = re.compile(r"[0-9]{1,20}")


class XvaError(Exception):
    """The stream is not an XVA this reader accepts; str() says why."""


class Truncated(XvaError):
    """The stream ended in the middle of the archive."""


class BadTar(XvaError):
    """A tar header that is corrupt, of a kind we refuse, or hostile."""


class UnexpectedMember(XvaError):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"expected {expected!r}, found {actual!r}")
        self.expected, self.actual = expected, actual


class ChecksumMismatch(XvaError):
    def __init__(self, member: str):
        super().__init__(f"checksum mismatch on {member}")
        self.member = member


# -- tar headers ---------------------------------------------------------------------

def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    """A ustar header block for a regular file (names up to 100 bytes, as xapi's)."""
    raw = name.encode()
    if len(raw) > 100:
        raise ValueError(f"tar member name too long: {name!r}")
    if size >= 8 ** 11:
        raise ValueError(f"tar member too big: {size}")
    head = bytearray(BLOCK)
    head[0:len(raw)] = raw
    head[100:108] = _octal(0o644, 8)
    head[108:116] = _octal(0, 8)
    head[116:124] = _octal(0, 8)
    head[124:136] = _octal(size, 12)
    head[136:148] = _octal(mtime, 12)
    head[148:156] = b" " * 8
    head[156:157] = b"0"
    head[257:265] = b"ustar\x0000"
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


@dataclass(frozen=True)
class Member:
    name: str
    size: int


def _field(block: bytes, start: int, end: int) -> bytes:
    return block[start:end].split(b"\0", 1)[0]


def _number(block: bytes, start: int, end: int, what: str) -> int:
    raw = block[start:end]
    if raw[:1] and raw[0] & 0x80:
        raise BadTar(f"{what} in base-256 form is not accepted")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise BadTar(f"{what} is not an octal number: {text[:16]!r}")
    return int(text, 8)


def check_name(name: str) -> str:
    """Refuse names a careless extractor would put outside its folder."""
    if not name or name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        raise BadTar(f"unsafe member name {name!r}")
    if any(part in ("..", ".") for part in name.split("/")):
        raise BadTar(f"unsafe member name {name!r}")
    return name


def parse_header(block: bytes) -> Member | None:
    """The member a 512-byte header announces (v7 or ustar), or None for a zero block."""
    if len(block) != BLOCK:
        raise Truncated("the archive ends inside a tar header")
    if block == ZERO_BLOCK:
        return None
    stored = _number(block, 148, 156, "header checksum")
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
    if stored not in (unsigned, signed):
        raise BadTar("tar header checksum mismatch")
    kind = block[156:157]
    if kind in (b"L", b"K"):
        raise BadTar("GNU long names are not accepted in an XVA")
    if kind not in (b"0", b"\0"):
        raise BadTar(f"tar member type {kind!r} is not a regular file")
    try:
        name = _field(block, 0, 100).decode()
        if block[257:262] == b"ustar":
            prefix = _field(block, 345, 500).decode()
            if prefix:
                name = f"{prefix}/{name}"
    except UnicodeDecodeError:
        raise BadTar("tar member name is not UTF-8") from None
    return Member(check_name(name), _number(block, 124, 136, "member size"))


# -- compression ---------------------------------------------------------------------

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


class _Prepend:
    """A source with bytes already read put back in front."""

    def __init__(self, head: bytes, source):
        self.head, self.source = head, source

    def read(self, n: int) -> bytes:
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
            return out
        return self.source.read(n)


class _GzipSource:
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


class _ZstdSource:
    def __init__(self, source):
        self._r = zstandard.ZstdDecompressor().stream_reader(
            source, read_size=64 * 1024, read_across_frames=True)

    def read(self, n: int) -> bytes:
        try:
            return self._r.read(n)
        except zstandard.ZstdError as exc:
            raise XvaError(f"corrupt zstd data: {exc}") from None


def _read_full(source, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = source.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def open_archive(source, first_member: str = "ova.xml"):
    """`source` as a tar stream, decompressed if it is zstd or gzip (as xapi: plain when
    the first header is a valid header of `first_member`, else the zstd magic, else
    gzip). Returns (TarReader, compression name or None)."""
    head = _read_full(source, BLOCK)
    try:
        member = parse_header(head)
        if member is not None and member.name == first_member:
            return TarReader(_Prepend(head, source)), None
    except XvaError:
        pass
    if head[:4] == ZSTD_MAGIC:
        return TarReader(_ZstdSource(_Prepend(head, source))), "zstd"
    if head[:2] == GZIP_MAGIC:
        return TarReader(_GzipSource(_Prepend(head, source))), "gzip"
    if len(head) < BLOCK:
        raise Truncated("the stream ends before the first tar header")
    return TarReader(_Prepend(head, source)), None   # its first header says what is wrong


# -- reading and writing tar members -----------------------------------------------

class TarReader:
    """Members of a tar stream, one at a time, bodies read only up to a cap."""

    def __init__(self, source):
        self.source = source
        self.ended = False
        self.consumed = 0           # bytes of tar read (for progress)

    def _exact(self, n: int) -> bytes:
        data = _read_full(self.source, n)
        self.consumed += len(data)
        if len(data) < n:
            raise Truncated("the archive ends early")
        return data

    def next(self) -> Member | None:
        """The next member's header, or None at the end-of-archive zero block."""
        if self.ended:
            return None
        block = _read_full(self.source, BLOCK)
        self.consumed += len(block)
        if not block:
            raise Truncated("the archive ends without its end-of-archive blocks")
        member = parse_header(block)
        if member is None:
            self.ended = True
        return member

    def body(self, member: Member, limit: int) -> bytes:
        if member.size > limit:
            raise BadTar(f"member {member.name} is {member.size} bytes, more than {limit}")
        data = self._exact(member.size)
        self._exact(-member.size % BLOCK)
        return data

    def skip(self, member: Member):
        left = member.size + (-member.size % BLOCK)
        while left:
            left -= len(self._exact(min(left, CHUNK)))

    def expect(self, name: str, limit: int) -> bytes:
        member = self.next()
        if member is None or member.name != name:
            raise UnexpectedMember(name, member.name if member else "end of archive")
        return self.body(member, limit)


class TarWriter:
    def __init__(self, sink):
        self.sink = sink
        self.written = 0            # uncompressed bytes (for progress)

    def add(self, name: str, data: bytes, mtime: int = 0):
        self.sink.write(tar_header(name, len(data), mtime))
        self.sink.write(data)
        pad = padding(len(data))
        if pad:
            self.sink.write(pad)
        self.written += BLOCK + len(data) + len(pad)

    def finish(self):
        self.sink.write(ZERO_BLOCK * 2)


# -- the chunk stream of one disk -----------------------------------------------------

def chunk_name(prefix: str, n: int) -> str:
    return f"{prefix}/{n:08d}"


def xxhash_text(data: bytes) -> bytes:
    return b"%016X" % xxhash.xxh64_intdigest(data)


def _touches(ranges, start: int, end: int) -> bool:
    return any(off < end and start < off + length for off, length in ranges)


def write_disk(tar: TarWriter, prefix: str, read_at, size: int, allocated=None,
               progress=None, chunk: int = CHUNK):
    """Write a disk of `size` bytes as chunk members. `read_at(offset, n)` gives its
    bytes; `allocated`, if known, lists the (offset, length) ranges that may hold data,
    so other chunks are known to be zero without reading them. `progress(done_bytes)`
    after each chunk."""
    last = max(0, (size - 1) // chunk)
    zero = bytes(chunk)
    for n in range(last + 1):
        start = n * chunk
        length = min(chunk, size - start)
        keep = n in (0, last)
        if allocated is not None and not keep and not _touches(allocated, start, start + length):
            data = None
        else:
            data = read_at(start, length)
            if len(data) != length:
                raise XvaError(f"disk read short at {start}: {len(data)} of {length}")
            if not keep and data == zero[:length]:
                data = None
        if data is not None:
            tar.add(chunk_name(prefix, n), data)
            tar.add(chunk_name(prefix, n) + ".xxhash", xxhash_text(data))
        if progress is not None:
            progress(start + length)


@dataclass
class ImportState:
    """What carries over from one disk to the next within one import."""
    force: bool = False
    verify: bool = True             # export_vsn > 0
    first_chunk: int | None = None  # the gap size: the first chunk of the whole import
    failed: list = field(default_factory=list)   # members whose checksum failed (force)


def _verify(name: str, data: bytes, member: Member, text: bytes, state: ImportState):
    if member.name == name + ".xxhash":
        good = text.strip().upper() == xxhash_text(data)
    elif member.name == name + ".checksum":
        good = text.strip().lower() == hashlib.sha1(data).hexdigest().encode()
    else:
        raise UnexpectedMember(name + ".xxhash", member.name)
    if not good and state.verify:
        if not state.force:
            raise ChecksumMismatch(member.name)
        state.failed.append(member.name)


def read_disk(tar: TarReader, prefix: str, virtual_size: int, write_at, state: ImportState,
              zeros_written=True, progress=None):
    """Read one disk's chunk members and `write_at(offset, data)` them, until the disk
    is full. Gaps are skipped when `zeros_written` (a fresh disk reads as zeros), else
    written as zeros. Stops exactly at `virtual_size`; data beyond it is refused."""
    offset, previous = 0, -1
    while offset < virtual_size:
        member = tar.next()
        if member is None:
            raise Truncated(f"the archive ends inside disk {prefix} at byte {offset}")
        head, _, number = member.name.rpartition("/")
        if head != prefix or not _NUMBER.fullmatch(number):
            raise UnexpectedMember(chunk_name(prefix, previous + 1), member.name)
        n = int(number)
        if n <= previous:
            raise UnexpectedMember(chunk_name(prefix, previous + 1), member.name)
        data = tar.body(member, MAX_CHUNK)
        if state.first_chunk is None and data:
            state.first_chunk = len(data)
        gap = (n - previous - 1) * (state.first_chunk or CHUNK)
        if offset + gap + len(data) > virtual_size:
            raise BadTar(f"{member.name} goes past the end of the disk ({virtual_size} bytes)")
        if gap and not zeros_written:
            _write_zeros(write_at, offset, gap)
        offset += gap
        check = tar.next()
        if check is None:
            raise Truncated(f"the archive ends before the checksum of {member.name}")
        text = tar.body(check, MAX_CHECKSUM_MEMBER)
        _verify(member.name, data, check, text, state)
        if data:
            write_at(offset, data)
        offset += len(data)
        previous = n
        if progress is not None:
            progress(offset)


def _write_zeros(write_at, offset: int, length: int):
    zero = bytes(min(length, CHUNK))
    while length:
        piece = min(length, CHUNK)
        write_at(offset, zero[:piece])
        offset += piece
        length -= piece


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
