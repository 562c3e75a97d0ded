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
bounded by one chunk: nothing reads a member it has not checked the size of. The tar
layer is tar.py, compression and the bridge streams.py; their names are importable
from here too.

The reader follows xapi's rules (stream_vdi.ml recv_all_vdi), which define the format:
numbered members in increasing order, a gap of k numbers is k chunks of zeros as long as
the first chunk of the whole import, a 0-byte member advances nothing (xapi writes one
as a keep-alive), `.xxhash` or legacy `.checksum` (SHA-1, lowercase hex) after each
data member, and a disk ends as soon as its virtual size is reached. What it refuses it
refuses with an `XvaError` subclass saying what was wrong, before writing past the disk.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import xxhash

# What the other modules of the format hold, importable from here as well
from .streams import (GZIP_MAGIC, ZSTD_MAGIC, ClientClosed, CompressingSink,  # noqa: F401
                      LoopBridge, compression_of, open_archive)
from .tar import (BLOCK, ZERO_BLOCK, BadTar, Member, TarReader, TarWriter,  # noqa: F401
                  Truncated, UnexpectedMember, XvaError, check_name, one_file_archive,
                  padding, parse_header, tar_header)

CHUNK = 1024 * 1024                  # xapi's chunk size
MAX_CHUNK = 16 * CHUNK               # a bigger data member is no XVA we should buffer
MAX_OVA_XML = 32 * 1024 * 1024       # the metadata of a VM with many snapshots fits
MAX_CHECKSUM_MEMBER = 128
# "prefix/NNNNNNNN" numbers are 8 digits as xapi prints them; longer ones still sort right
_NUMBER = re.compile(r"[0-9]{1,20}")


class ChecksumMismatch(XvaError):
    def __init__(self, member: str):
        super().__init__(f"checksum mismatch on {member}")
        self.member = member



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
