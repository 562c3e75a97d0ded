"""xapi's `chunked` raw upload (vhd-tool's chunked.ml): records of
[offset: u64 LE][length: u32 LE][length bytes], ended by a record of offset 0 and
length 0. Parsed as it arrives, one bounded piece at a time."""
from __future__ import annotations

import struct
from typing import AsyncIterator

from .extents import FormatError, Truncated
from .vhd import Read

_RECORD = struct.Struct("<QI")
PIECE = 4 << 20


async def _exact(read: Read, n: int) -> bytes:
    parts, need = [], n
    while need:
        data = await read(need)
        if not data:
            raise Truncated("the chunked upload ended inside a record")
        parts.append(data)
        need -= len(data)
    return b"".join(parts)


async def read_chunked(read: Read, size: int) -> AsyncIterator[tuple[int, bytes]]:
    """(offset, data) pieces of the records, each inside a disk of `size` bytes."""
    while True:
        offset, length = _RECORD.unpack(await _exact(read, _RECORD.size))
        if offset == 0 and length == 0:
            return
        if offset + length > size:
            raise FormatError(f"chunk at {offset} of {length} bytes lies beyond the "
                              f"disk's {size} bytes")
        while length:
            step = min(PIECE, length)
            yield offset, await _exact(read, step)
            offset += step
            length -= step
