"""`GET /export_raw_vdi`: a disk's bytes out, as xapi's export_raw_vdi.ml (raw, vhd,
qcow2, tar; base= for a differential vhd/qcow2). Everything is checked before the 200
header block; an export reads one piece at a time, the next ones while the current
one is sent, so disk and network overlap in bounded memory. Parameters and what the
import shares: vdi_transfer.py.
"""
from __future__ import annotations

import asyncio
import collections
import logging

from ..errors import ApiError
from ..formats import Extent
from ..formats import vhd as vhdfmt
from ..formats import xva_chunks
from ..formats.qcow2 import Qcow2Writer
from .dataplane import Refusal, Request
from .vdi_transfer import (FORMATS, NULL, PIECE, READ_AHEAD, ZEROS, format_of, header_lines,
                           in_thread, io_error, settled, storage_of, vdi_of)

log = logging.getLogger(__name__)

_ZERO_VIEW = memoryview(ZEROS)


async def export_raw_vdi(req: Request):
    fmt = format_of(req)
    vdi = vdi_of(req)
    if vdi is None:
        raise Refusal(500, ApiError("VDI_MISSING", NULL, NULL))
    base = vdi_of(req, "base")
    if base is not None and fmt not in ("vhd", "qcow2"):
        raise Refusal(400, ApiError("INTERNAL_ERROR",
                                    f"a differential export (base) needs format vhd or qcow2, "
                                    f"not {fmt}"))
    store = req.server.store
    size = store.get("VDI", vdi, "virtual_size")
    if fmt == "vhd" and size > vhdfmt.MAX_SIZE:
        raise Refusal(500, ApiError("VDI_TOO_LARGE", vdi, str(vhdfmt.MAX_SIZE)))
    sr = store.get("VDI", vdi, "SR")
    content_type, ext = FORMATS[fmt]
    lines = header_lines(req, [f"content-type:{content_type}",
                                f'content-disposition: attachment; filename="'
                                f'{store.get("VDI", vdi, "uuid")}.{ext}"'])
    try:
        async with storage_of(req, sr).raw_view(vdi, writable=False, bulk=True) as view:
            if base is None:
                ranges = await view.allocated()
                return await _export(req, fmt, view, ranges, lines, vdi)
            async with storage_of(req, store.get("VDI", base, "SR")).raw_view(
                    base, writable=False) as base_view:
                ranges = await view.allocated(base=base_view)
            return await _export(req, fmt, view, ranges, lines, vdi,
                                 parent=store.get("VDI", base, "uuid"))
    except ApiError as exc:
        if req.conn is None:
            raise Refusal(500, exc) from None
        raise


async def _export(req: Request, fmt: str, view, ranges, lines, vdi: str,
                  parent: str | None = None):
    """`parent`: the base's uuid for a differential export (a differencing VHD names
    it as its parent, as XO's delta chains expect)."""
    try:
        disk = await view.open_disk()
    except OSError as exc:
        raise io_error(f"opening the disk failed: {exc}") from None
    try:
        conn = await req.start_stream(lines)
        if fmt == "tar":
            await _export_tar(req, conn, disk, view.size, ranges)
            return vdi
        if fmt == "raw":
            pieces, total = _raw_pieces(view.size, ranges), view.size
        else:
            writer = (vhdfmt.VhdWriter(view.size, ranges, parent=parent and (
                parent, f"{parent}.vhd")) if fmt == "vhd" else Qcow2Writer(view.size, ranges))
            pieces, total = writer.pieces(), writer.length
        await send_pieces(conn, pieces, disk, lambda done: req.progress(done / max(1, total)))
        return vdi
    finally:
        await asyncio.to_thread(disk.close)


def _raw_pieces(size: int, ranges):
    """The whole disk: ranges that may hold data are read, the holes are sent as zeros
    without reading them (an int n: n zero bytes)."""
    at = 0
    for offset, length in _merged(ranges, size):
        if offset > at:
            yield from _zero_run(offset - at)
        yield from _extents(offset, length)
        at = offset + length
    if at < size:
        yield from _zero_run(size - at)


def _merged(ranges, size: int):
    out: list[list[int]] = []
    for offset, length in sorted(ranges):
        end = min(size, offset + length)
        if end <= offset:
            continue
        if out and offset <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([offset, end])
    return [(a, b - a) for a, b in out]


def _zero_run(n: int):
    while n:
        step = min(n, PIECE)
        yield step
        n -= step


def _extents(offset: int, length: int):
    end = offset + length
    while offset < end:
        step = min(PIECE, end - offset)
        yield Extent(offset, step)
        offset += step


def _pread(disk, offset: int, length: int) -> bytes:
    data = disk.pread(length, offset)
    if len(data) != length:
        raise io_error(f"the disk read short at {offset}")
    return data


async def send_pieces(conn, pieces, disk, progress, ahead: int = READ_AHEAD):
    """Send bytes, Extents (read from the disk) and ints (that many zeros) in order. Up
    to `ahead` extents are being read by worker threads while the current piece is
    written: the disk then has several requests at once."""
    def start(item):
        if isinstance(item, Extent):
            return asyncio.ensure_future(asyncio.to_thread(_pread, disk, item.offset,
                                                           item.length))
        return item

    it = iter(pieces)
    queue = collections.deque()
    sent = 0
    try:
        while True:
            while len(queue) < ahead:
                item = next(it, None)
                if item is None:
                    break
                queue.append(start(item))
            if not queue:
                break
            pending = queue.popleft()
            if isinstance(pending, asyncio.Future):
                data = await pending
            elif isinstance(pending, int):
                data = _ZERO_VIEW[:pending]
            else:
                data = pending
            await conn.write(data)
            sent += len(data)
            progress(sent)
    finally:
        for pending in queue:
            if isinstance(pending, asyncio.Future):
                await settled(pending)       # the fd closes after: no read left on it


async def _export_tar(req: Request, conn, disk, size: int, ranges):
    """format=tar: xapi's chunk stream with prefix `vdi` (formats/xva_chunks), written
    by a worker thread (hashing is CPU work) through a bridge to the connection."""
    loop = asyncio.get_running_loop()
    bridge = xva_chunks.LoopBridge(loop, write=conn.write)

    def produce():
        tar = xva_chunks.TarWriter(bridge)
        xva_chunks.write_disk(tar, "vdi", lambda off, n: disk.pread(n, off), size,
                              allocated=ranges,
                              progress=lambda done: loop.call_soon_threadsafe(
                                  req.progress, done / max(1, size)))
        tar.finish()
    await in_thread(produce, bridge, conn)

