"""VHD (Microsoft Virtual Hard Disk 1.0), as XenServer's vhd-tool, XO and XenCenter
move disks: a streaming writer of dynamic VHDs and a streaming reader of fixed and
dynamic ones.

Layout the writer produces, in this order, so it never seeks:
    footer copy (512) | dynamic header (1024) | BAT | blocks | footer (512)
each block = its sector bitmap (one sector for 2 MiB blocks, every bit set) + 2 MiB
of data. The header sits at 512 and the blocks follow the BAT in BAT order, which is
what XO's stream parser (vhd-lib) insists on, and the closing footer is the opening
one byte for byte (XO compares them). The creator is "tap\\0", XenServer's blktap:
qemu's vpc driver then takes the size from the footer's current_size instead of the
CHS geometry, which would round the disk down.

All fields are big-endian; footer and header checksums are the one's complement of
the byte sum with the checksum field zero (the specification's rule).
"""
from __future__ import annotations

import array
import struct
import sys
import time
import uuid as uuidlib
from typing import AsyncIterator, Awaitable, Callable, Iterator

from .extents import Extent, FormatError, Truncated, block_runs, count, read_plan

SECTOR = 512
BLOCK = 2 << 20                          # the block size every VHD tool writes
FOOTER_COOKIE, HEADER_COOKIE = b"conectix", b"cxsparse"
FIXED, DYNAMIC, DIFFERENCING = 2, 3, 4
UNUSED = 0xFFFFFFFF
VERSION = 0x00010000
NO_OFFSET = 0xFFFFFFFFFFFFFFFF
MAX_SIZE = 2040 << 30                    # VHD's limit as XenServer states it (2040 GiB)
MAX_BAT_ENTRIES = 4 << 20                # a 16 MiB BAT: far beyond any 2 TiB disk's
EPOCH_2000 = 946684800

_FOOTER = struct.Struct(">8sIIQI4sI4sQQHBBII16sB427x")
_HEADER = struct.Struct(">8sQQIIII16sII512s192s256x")
_CHECKSUM_AT = {_FOOTER: 64, _HEADER: 36}
PIECE = 4 << 20                          # largest read the writer asks of its caller


def checksum(raw: bytes, at: int) -> int:
    total = sum(raw[:at]) + sum(raw[at + 4:])
    return ~total & 0xFFFFFFFF


def _sealed(layout: struct.Struct, *fields) -> bytes:
    raw = layout.pack(*fields)
    at = _CHECKSUM_AT[layout]
    return raw[:at] + struct.pack(">I", checksum(raw, at)) + raw[at + 4:]


def geometry(size: int) -> tuple[int, int, int]:
    """(cylinders, heads, sectors per track), the specification's algorithm."""
    total = min(size // SECTOR, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cyl_heads = total // spt
    else:
        spt = 17
        cyl_heads = total // spt
        heads = max(4, (cyl_heads + 1023) // 1024)
        if cyl_heads >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cyl_heads = total // spt
        if cyl_heads >= heads * 1024:
            spt, heads = 63, 16
            cyl_heads = total // spt
    return cyl_heads // heads, heads, spt


def footer(size: int, disk_type: int, data_offset: int, disk_uuid: bytes,
           timestamp: int) -> bytes:
    cyl, heads, spt = geometry(size)
    return _sealed(_FOOTER, FOOTER_COOKIE, 2, VERSION, data_offset, timestamp, b"tap\0",
                   VERSION, b"Wi2k", size, size, cyl, heads, spt, disk_type, 0, disk_uuid, 0)


def dynamic_header(table_offset: int, entries: int, block: int = BLOCK,
                   parent: tuple[str, str] | None = None) -> bytes:
    """`parent` (uuid, file name): a differencing disk's header names its parent."""
    parent_uuid, parent_name = bytes(16), b""
    if parent:
        parent_uuid = uuidlib.UUID(parent[0]).bytes
        parent_name = parent[1].encode("utf-16-be")[:512]
    return _sealed(_HEADER, HEADER_COOKIE, NO_OFFSET, table_offset, VERSION, entries, block,
                   0, parent_uuid, 0, 0, parent_name.ljust(512, b"\0"), bytes(192))


class VhdWriter:
    """A dynamic VHD of a disk of `size` bytes holding the 2 MiB blocks that
    `ranges` [(offset, length)] touch; iterate `pieces()` for the file in order.
    With `parent` (uuid, file name) it is a differencing VHD instead, as xapi exports
    a disk relative to a base and as XO chains its delta backups: the blocks that may
    differ from the parent, whole (every sector bit set), and nothing else."""

    def __init__(self, size: int, ranges, disk_uuid: str | None = None,
                 timestamp: float | None = None, parent: tuple[str, str] | None = None):
        if size > MAX_SIZE:
            raise FormatError(f"a VHD holds at most {MAX_SIZE} bytes")
        self.virtual_size = size
        self.size = -(-size // SECTOR) * SECTOR        # the footer counts whole sectors
        self.entries = max(1, -(-self.size // BLOCK))
        self.runs = block_runs(ranges, BLOCK, self.size)
        self.blocks = count(self.runs)
        self.bat_at = SECTOR + 1024
        self.bat_bytes = -(-self.entries * 4 // SECTOR) * SECTOR
        self.first_block = self.bat_at + self.bat_bytes
        stamp = int(timestamp if timestamp is not None else time.time()) - EPOCH_2000
        ident = uuidlib.UUID(disk_uuid).bytes if disk_uuid else uuidlib.uuid4().bytes
        self.parent = parent
        self.footer = footer(self.size, DIFFERENCING if parent else DYNAMIC, SECTOR, ident,
                             max(0, stamp))

    @property
    def length(self) -> int:
        return self.first_block + self.blocks * (SECTOR + BLOCK) + SECTOR

    def pieces(self) -> Iterator[bytes | Extent]:
        yield self.footer
        yield dynamic_header(self.bat_at, self.entries, parent=self.parent)
        yield from self._bat()
        bitmap = b"\xff" * SECTOR
        for first, end in self.runs:
            for index in range(first, end):
                yield bitmap
                offset = index * BLOCK
                data = min(BLOCK, self.virtual_size - offset)
                yield from read_plan(offset, data, PIECE)
                if data < BLOCK:
                    yield bytes(BLOCK - data)   # a block is always whole in the file
        yield self.footer

    def _bat(self, per_piece: int = 1 << 16) -> Iterator[bytes]:
        """The BAT in pieces of `per_piece` entries: block i of the runs' order sits at
        sector first_block/512 + i * (1 + 4096)."""
        stride = (SECTOR + BLOCK) // SECTOR
        sector = self.first_block // SECTOR
        runs = iter(self.runs)
        run = next(runs, None)
        for start in range(0, self.entries, per_piece):
            end = min(self.entries, start + per_piece)
            table = array.array("I", [UNUSED]) * (end - start)
            while run is not None and run[0] < end:
                lo, hi = max(run[0], start), min(run[1], end)
                for index in range(lo, hi):
                    table[index - start] = sector
                    sector += stride
                if run[1] <= end:
                    run = next(runs, None)
                else:
                    run = (end, run[1])
                    break
            if sys.byteorder == "little":
                table.byteswap()
            raw = table.tobytes()
            if end == self.entries:
                raw += b"\xff" * (self.bat_bytes - self.entries * 4)
            yield raw


# -- reading ------------------------------------------------------------------------------

Read = Callable[[int], Awaitable[bytes]]     # up to n bytes; b"" only at the end


class _Source:
    def __init__(self, read: Read):
        self.read, self.position = read, 0

    async def exact(self, n: int) -> bytes:
        parts, need = [], n
        while need:
            data = await self.read(need)
            if not data:
                raise Truncated(f"the stream ended at byte {self.position + n - need}, "
                                f"inside the VHD")
            parts.append(data)
            need -= len(data)
        self.position += n
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def skip_to(self, offset: int):
        if offset < self.position:
            raise FormatError(f"VHD structures overlap or are out of order at {offset}")
        while self.position < offset:
            await self.exact(min(PIECE, offset - self.position))


def parse_footer(raw: bytes, differencing: bool = False) -> dict:
    (cookie, _features, version, data_offset, _stamp, _creator, _cv, _os, _orig, size,
     _cyl, _heads, _spt, disk_type, check, disk_uuid, _saved) = _FOOTER.unpack(raw)
    if cookie != FOOTER_COOKIE:
        raise FormatError("not a VHD: no 'conectix' footer")
    if checksum(raw, 64) != check:
        raise FormatError("VHD footer checksum mismatch")
    if version >> 16 != 1:
        raise FormatError(f"unsupported VHD version {version:#x}")
    if disk_type == DIFFERENCING and not differencing:
        raise FormatError("a differencing VHD needs the disk it was made from: import it "
                          "into a copy of its parent, or upload a dynamic or fixed VHD")
    if disk_type not in (FIXED, DYNAMIC, DIFFERENCING):
        raise FormatError(f"unknown VHD disk type {disk_type}")
    if size > MAX_SIZE or size % SECTOR:
        raise FormatError(f"VHD size {size} is not a whole number of sectors up to "
                          f"{MAX_SIZE}")
    return {"type": disk_type, "size": size, "data_offset": data_offset, "uuid": disk_uuid}


def parse_header(raw: bytes, size: int) -> dict:
    (cookie, _data, table, version, entries, block, check, _puuid, _pstamp, _r, _name,
     _locators) = _HEADER.unpack(raw)
    if cookie != HEADER_COOKIE:
        raise FormatError("VHD dynamic header has no 'cxsparse' cookie")
    if checksum(raw, 36) != check:
        raise FormatError("VHD dynamic header checksum mismatch")
    if version >> 16 != 1:
        raise FormatError(f"unsupported VHD header version {version:#x}")
    if block < SECTOR or block > 16 << 20 or block & (block - 1):
        raise FormatError(f"VHD block size {block} is not a power of two from 512 B to 16 MiB")
    if entries > MAX_BAT_ENTRIES or entries * block < size:
        raise FormatError(f"VHD BAT of {entries} entries does not fit a {size}-byte disk")
    return {"table": table, "entries": entries, "block": block}


async def read_vhd(read: Read, length: int | None = None, differencing: bool = False
                   ) -> AsyncIterator[tuple[int, bytes | None, int]]:
    """Parse a VHD upload as it arrives, holding one block at a time. The first item is
    (-1, None, virtual size); then (offset, data, len(data)) to write and
    (offset, None, length) runs that read as zeros (unallocated blocks, sectors a
    block's bitmap leaves out). `length` is the upload's Content-Length: a fixed VHD
    (the raw data, then its footer) needs it to know where the data ends.
    `differencing`: a differencing VHD is accepted too, as a delta to lay over the disk
    it was made from (XO's incremental restore): what it leaves out is its parent's,
    so no zero runs are yielded for it."""
    src = _Source(read)
    first = await src.exact(SECTOR)
    if first[:8] != FOOTER_COOKIE:
        async for item in _read_fixed(src, first, length):
            yield item
        return
    foot = parse_footer(first, differencing)
    if foot["type"] == FIXED:
        raise FormatError("a VHD that starts with its footer must be dynamic")
    delta = foot["type"] == DIFFERENCING
    size = foot["size"]
    yield -1, None, size
    if foot["data_offset"] < SECTOR or foot["data_offset"] % SECTOR:
        raise FormatError("VHD footer's header offset is invalid")
    await src.skip_to(foot["data_offset"])
    head = parse_header(await src.exact(1024), size)
    if head["table"] < src.position or head["table"] % SECTOR:
        raise FormatError("VHD BAT offset is invalid")
    await src.skip_to(head["table"])
    table = array.array("I")
    table.frombytes(await src.exact(head["entries"] * 4))
    if sys.byteorder == "little":
        table.byteswap()
    block = head["block"]
    bitmap_bytes = -(-(block // SECTOR) // 8 // SECTOR) * SECTOR
    blocks_end = src.position
    used = [i for i in range(len(table)) if table[i] != UNUSED and i * block < size]
    used.sort(key=table.__getitem__)
    for index in used:
        at = table[index] * SECTOR
        if at < blocks_end:
            raise FormatError(f"VHD block {index} overlaps the metadata or another block")
        if length is not None and at + bitmap_bytes + block > length:
            raise FormatError(f"VHD block {index} lies beyond the end of the upload")
        blocks_end = at + bitmap_bytes + block
    for index in used:
        await src.skip_to(table[index] * SECTOR)
        bitmap = await src.exact(bitmap_bytes)
        data = await src.exact(block)
        offset = index * block
        keep = min(block, size - offset)
        for start, end, present in _sector_runs(bitmap, keep // SECTOR):
            if present:
                piece = data[start * SECTOR:end * SECTOR]
                yield offset + start * SECTOR, piece, len(piece)
            elif not delta:
                yield offset + start * SECTOR, None, (end - start) * SECTOR
        del data
    for first_zero, end in (() if delta else _unused_runs(table, size, block)):
        yield first_zero * block, None, min(end * block, size) - first_zero * block
    tail = b""
    while True:
        data = await src.read(PIECE)
        if not data:
            break
        tail = (tail + data)[-SECTOR:]
    if len(tail) < SECTOR or tail[:8] != FOOTER_COOKIE:
        raise Truncated("the VHD ended without its closing footer")
    parse_footer(tail, differencing)


def _sector_runs(bitmap: bytes, sectors: int) -> Iterator[tuple[int, int, bool]]:
    """Runs (first, end, present) of the sectors a block's bitmap marks (MSB first)."""
    start, state = 0, None
    for sector in range(sectors):
        present = bool(bitmap[sector >> 3] & (0x80 >> (sector & 7)))
        if present is not state:
            if state is not None:
                yield start, sector, state
            start, state = sector, present
    if state is not None:
        yield start, sectors, state


def _unused_runs(table, size: int, block: int) -> Iterator[tuple[int, int]]:
    last = -(-size // block)
    start = None
    for index in range(last):
        unused = table[index] == UNUSED
        if unused and start is None:
            start = index
        elif not unused and start is not None:
            yield start, index
            start = None
    if start is not None:
        yield start, last


async def _read_fixed(src: _Source, first: bytes, length: int | None):
    if length is None:
        raise FormatError("a fixed VHD can only be read with a Content-Length")
    size = length - SECTOR
    if size < 0 or size % SECTOR:
        raise FormatError("not a VHD: no footer at the start, and the length is not "
                          "a fixed VHD's")
    yield -1, None, size
    offset = 0
    pending = first if size else b""
    while offset < size:
        if not pending:
            pending = await src.exact(min(PIECE, size - offset))
        piece = pending[:size - offset]
        yield offset, piece, len(piece)
        offset += len(piece)
        pending = b""
    tail = first if size == 0 else await src.exact(SECTOR)
    foot = parse_footer(tail)
    if foot["type"] != FIXED or foot["size"] != size:
        raise FormatError("the VHD's closing footer does not describe this fixed disk")
