"""A reply as one gzip member, made mostly of pieces compressed once and kept.

A codec's reply is a list of pieces; the big ones are the cached encodings of Records
(EncodingCache.holds tells them). Each of those is compressed on its own, with a fresh
compressor flushed with Z_SYNC_FLUSH: the result ends on a byte boundary, is not a final
block, and refers to nothing before it, so any sequence of such pieces is one valid
deflate stream. What lies between them (map keys, tags), made per reply, goes as
stored blocks, or compressed on its own where a run is long. An empty final block, the
gzip header and the CRC-32/length trailer close it: a single member, which every gzip
reader takes (Python's xmlrpc.client and so the XenAPI SDK, browsers, curl).

A changed Record has a new encoding (a new bytes object), hence a new compressed
piece; the compressed piece of an encoding its codec no longer keeps is dropped at
the next sweep of this cache, like any entry whose key nothing else holds."""
from __future__ import annotations

import zlib

from . import EncodingCache

# Level 6 (zlib's default): measured on the XML of 10,000 VM records, it made 12 %
# less than level 1 and the client inflated it faster; a piece is compressed once.
LEVEL = 6
# Smaller cached pieces (an event's head) go with the reply's own pieces: a
# compressor per piece costs more than it saves below this.
MIN_KEPT = 1024
# The reply's own pieces are gathered up to this much before they go out (a stored
# block holds at most 64 KiB).
RUN_MAX = 32 * 1024
HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"   # no name, no mtime, OS unknown
FINAL_BLOCK = b"\x03\x00"      # an empty fixed-Huffman block with BFINAL set


def deflate_piece(piece: bytes) -> bytes:
    compressor = zlib.compressobj(LEVEL, zlib.DEFLATED, -15)
    return compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH)


_deflated = EncodingCache(deflate_piece)


def trailer(crc: int, size: int) -> bytes:
    return FINAL_BLOCK + crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little")


def stored_block(data: bytes) -> bytes:
    """`data` (at most 65,535 bytes) as a non-final stored block, which starts and ends
    on a byte boundary like the compressed pieces."""
    size = len(data)
    return b"\x00" + size.to_bytes(2, "little") + (size ^ 0xFFFF).to_bytes(2, "little") + data


def _loose(run: list) -> bytes:
    """The pieces made for this reply alone (map keys, tags): a short run is stored as
    it is (mostly refs, which do not compress; a compressor per run cost more than the
    bytes it saved), a long one compressed on its own."""
    data = b"".join(run)
    run.clear()
    if len(data) >= MIN_KEPT:
        return deflate_piece(data)
    return stored_block(data)


def gzip_chunks(pieces, caches):
    """`pieces` (bytes) as one gzip member, in pieces: the kept compression of each
    piece one of `caches` holds, the rest compressed here. A generator, so the caller
    can give the event loop back between pieces (a cold cache costs ~0.1 ms a record)."""
    run: list = []
    crc = size = run_size = 0
    yield HEADER
    for piece in pieces:
        crc = zlib.crc32(piece, crc)
        size += len(piece)
        if len(piece) >= MIN_KEPT and any(cache.holds(piece) for cache in caches):
            if run:
                yield _loose(run)
                run_size = 0
            yield _deflated.get(piece)
        else:
            run.append(piece)
            run_size += len(piece)
            if run_size >= RUN_MAX:
                yield _loose(run)
                run_size = 0
    if run:
        yield _loose(run)
    yield trailer(crc, size)
