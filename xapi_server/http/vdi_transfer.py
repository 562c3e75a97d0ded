"""`PUT /import_raw_vdi` and `GET /export_raw_vdi`: a disk's bytes in and out, as xapi's
import_raw_vdi.ml / export_raw_vdi.ml (formats raw, vhd, qcow2, tar).

Both check everything they can before the 200 header block (format, VDI, base, SR,
encoding), so a refusal is an ordinary status with the task failed; once the 200 is
out, the outcome is the task's (xapi writes its 500 page into the body, see
dataplane). An upload's 200 goes out BEFORE its body is read: xe, XenCenter and XO's
probe wait for it.

Memory stays bounded whatever the disk's size: an export reads one piece at a time
(the next one while the current one is written: disk and network overlap), an import
writes a few MiB at a time, and the format modules (xapi_server/formats) stream. A
qcow2 upload cannot be parsed in a stream, so it is spooled to <data-dir>/tmp, checked
and converted by qemu-img. A VDI made by an import is destroyed when the import fails
or is cancelled; an existing one is left as consistent as a half-written disk can be.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import uuid as uuidlib

from ..backends.storage import qcow
from ..backends.storage.base import Refused
from ..backends.storage.run import StorageError, run
from ..errors import ApiError
from ..formats import Extent, FormatError
from ..formats import vhd as vhdfmt
from ..formats import xva_chunks
from ..formats.chunked import read_chunked
from ..formats.qcow2 import Qcow2Writer
from ..services.storage import service, vdiops
from .dataplane import Refusal, Request
from .raw import ClientGone

log = logging.getLogger(__name__)

NULL = "OpaqueRef:NULL"
# format -> (export content type, file extension), xapi importexport.ml Format
FORMATS = {"raw": ("application/octet-stream", "raw"), "vhd": ("application/vhd", "vhd"),
           "tar": ("application/x-tar", "tar"), "qcow2": ("application/x-qemu-disk", "qcow2")}
PIECE = 4 << 20                 # one read or write of the disk
READ_AHEAD = 3                  # disk reads in flight while an export sends
ZEROS = bytes(PIECE)
_ZERO_VIEW = memoryview(ZEROS)
# XO sends a stream of unknown length with this Content-Length and cuts the connection
# after the data (it then ignores the VDI_IO_ERROR): not a body too big for the disk.
UNKNOWN_LENGTH = 1 << 50
SKIP_GRAIN = 64 << 10           # a fresh disk: all-zero 64 KiB (qcow2 clusters) not written
ZERO_GRAIN = bytes(SKIP_GRAIN)


# -- parameters ---------------------------------------------------------------------------

def format_of(req: Request) -> str:
    fmt = (req.param("format") or "raw").lower()
    if fmt not in FORMATS:
        raise Refusal(404, ApiError("INTERNAL_ERROR", f"Unknown format {fmt}"), version="1.0")
    return fmt


def vdi_of(req: Request, name: str = "vdi") -> str | None:
    """The VDI a parameter names, by reference or uuid (xapi vdi_of_req)."""
    value = req.param(name)
    if not value:
        return None
    store = req.server.store
    if value.startswith("OpaqueRef:"):
        if store.exists("VDI", value):
            return value
        raise Refusal(500, ApiError("HANDLE_INVALID", "VDI", value))
    try:
        return store.by_uuid("VDI", value)
    except ApiError as exc:
        raise Refusal(500, exc) from None


def sr_of(req: Request, vdi: str | None) -> str | None:
    store = req.server.store
    if vdi is not None:
        return store.get("VDI", vdi, "SR")
    ref, uuid = req.param("sr_id"), req.param("sr_uuid")
    if ref and store.exists("SR", ref):
        return ref
    if uuid:
        try:
            return store.by_uuid("SR", uuid)
        except ApiError:
            return None
    return None


def storage_of(req: Request, sr: str):
    return req.server.runtime_of_sr(sr).storage


def _header_lines(req: Request, extra: list[str]) -> list[str]:
    return ["HTTP/1.1 200 OK", "Connection: close", "Cache-Control: no-cache, no-store",
            f"task-id:{req.task}", *extra]


def _io_error(reason: str) -> ApiError:
    return ApiError("VDI_IO_ERROR", f"Device I/O errors: {reason}")


# -- export ------------------------------------------------------------------------------

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
    lines = _header_lines(req, [f"content-type:{content_type}",
                                f'content-disposition: attachment; filename="'
                                f'{store.get("VDI", vdi, "uuid")}.{ext}"'])
    try:
        async with storage_of(req, sr).raw_view(vdi, writable=False) as view:
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
    fd = await asyncio.to_thread(os.open, view.path, os.O_RDONLY)
    try:
        conn = await req.start_stream(lines)
        if fmt == "tar":
            await _export_tar(req, conn, fd, view.size, ranges)
            return vdi
        if fmt == "raw":
            pieces, total = _raw_pieces(view.size, ranges), view.size
        else:
            writer = (vhdfmt.VhdWriter(view.size, ranges, parent=parent and (
                parent, f"{parent}.vhd")) if fmt == "vhd" else Qcow2Writer(view.size, ranges))
            pieces, total = writer.pieces(), writer.length
        await send_pieces(conn, pieces, fd, lambda done: req.progress(done / max(1, total)))
        return vdi
    finally:
        await asyncio.to_thread(os.close, fd)


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


def _pread(fd: int, offset: int, length: int) -> bytes:
    data = os.pread(fd, length, offset)
    if len(data) != length:
        raise _io_error(f"the disk read short at {offset}")
    return data


async def send_pieces(conn, pieces, fd: int, progress, ahead: int = READ_AHEAD):
    """Send bytes, Extents (read from fd) and ints (that many zeros) in order. Up to
    `ahead` extents are being read by worker threads while the current piece is
    written: the kernel then has several requests for the disk's view at once."""
    def start(item):
        if isinstance(item, Extent):
            return asyncio.ensure_future(asyncio.to_thread(_pread, fd, item.offset, item.length))
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
                await _settled(pending)       # the fd closes after: no read left on it


async def _settled(future):
    """Wait for a worker thread's job even when we are being cancelled (again): the
    file it uses is closed right after. The job is one bounded read or write, or a
    chunk-tar job whose connection has been cut."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    if not future.cancelled():
        future.exception()                # retrieved: no "never retrieved" warning
    if cancelled:
        raise asyncio.CancelledError()


async def _in_thread(job, bridge, conn):
    """Run a chunk-tar job in a worker thread and return once it has ended. Cancelled,
    the bridge refuses its next read or write and the connection is cut, so a read or
    write it is waiting on ends too (a cancelled transfer closes the connection anyway)."""
    future = asyncio.get_running_loop().run_in_executor(None, job)
    try:
        return await asyncio.shield(future)
    except xva_chunks.ClientClosed as exc:
        raise ClientGone(str(exc)) from None
    finally:
        bridge.cancel()
        if not future.done():
            conn.transport.abort()
        await _settled(future)


async def _export_tar(req: Request, conn, fd: int, size: int, ranges):
    """format=tar: xapi's chunk stream with prefix `vdi` (formats/xva_chunks), written
    by a worker thread (hashing is CPU work) through a bridge to the connection."""
    loop = asyncio.get_running_loop()
    bridge = xva_chunks.LoopBridge(loop, write=conn.write)

    def produce():
        tar = xva_chunks.TarWriter(bridge)
        xva_chunks.write_disk(tar, "vdi", lambda off, n: os.pread(fd, n, off), size,
                              allocated=ranges,
                              progress=lambda done: loop.call_soon_threadsafe(
                                  req.progress, done / max(1, size)))
        tar.finish()
    await _in_thread(produce, bridge, conn)


# -- import ------------------------------------------------------------------------------

async def import_raw_vdi(req: Request):
    fmt = format_of(req)
    vdi = vdi_of(req)
    sr = sr_of(req, vdi)
    if sr is None:
        raise Refusal(400, ApiError("VDI_MISSING", NULL, NULL))
    chunked = req.param("chunked") is not None
    if chunked and fmt != "raw":
        raise Refusal(404, ApiError("INTERNAL_ERROR", "Cannot handle chunked VHD"))
    encoding = req.header("transfer-encoding")
    if encoding is not None:
        raise Refusal(404, ApiError("INTERNAL_ERROR", f"Cannot handle encoding: {encoding}"))
    length = req.content_length
    store = req.server.store
    if vdi is None:
        if fmt != "raw":
            raise Refusal(400, ApiError("INTERNAL_ERROR",
                                        f"Importing a {fmt} without a vdi is not yet supported"))
        if chunked or not length:
            raise Refusal(400, ApiError("INTERNAL_ERROR", "a new VDI needs a raw body "
                                        "with a Content-Length"))
        if store.get("SR", sr, "content_type") == "iso":
            return await _import_iso(req, sr, length)
    elif length is not None and length != UNKNOWN_LENGTH and fmt == "raw" and \
            not chunked and length > store.get("VDI", vdi, "virtual_size"):
        raise Refusal(400, ApiError("VDI_TOO_SMALL", vdi, str(length)))
    made = None
    if vdi is None:
        try:
            vdi = made = await vdiops.create(req.server, sr, length, {
                "name_label": "Imported VDI", "name_description": "", "type": "user",
                "sharable": False, "read_only": False, "other_config": {}})
        except ApiError as exc:
            raise Refusal(500, exc) from None
    try:
        await _import_into(req, fmt, vdi, sr, chunked, length)
    except BaseException:
        if made is not None:
            await asyncio.shield(_forget_made(req, made))
        raise
    return vdi


async def _forget_made(req: Request, vdi: str):
    try:
        await vdiops.destroy(req.server, vdi)
        await req.server.store.flush()
    except Exception:
        log.exception("could not remove VDI %s made by a failed import", vdi)


async def _import_into(req: Request, fmt: str, vdi: str, sr: str, chunked: bool,
                       length: int | None):
    storage = storage_of(req, sr)
    try:
        fresh = await storage.fresh_zeroed(vdi)
        view_cm = storage.raw_view(vdi, writable=True)
        view = await view_cm.__aenter__()
    except ApiError as exc:
        raise Refusal(500, exc) from None
    try:
        fd = await asyncio.to_thread(os.open, view.path, os.O_WRONLY)
        try:
            await req.start_stream(_header_lines(
                req, ["content-type: application/octet-stream"]))
            body = BodyReader(req, length)
            sink = DiskWriter(fd, view.size, skip_zeros=fresh)
            try:
                if fmt == "raw" and chunked:
                    await _read_chunked(req, body, sink, view.size)
                elif fmt == "raw":
                    await _read_raw(req, body, sink, length or view.size)
                elif fmt == "vhd":
                    await _read_vhd(req, body, sink, view.size, length, delta_ok=not fresh)
                elif fmt == "qcow2":
                    await _read_qcow2(req, body, view, length)
                else:
                    await _read_tar(req, body, fd, view.size, fresh)
                await sink.finish()
            except ClientGone as exc:
                with contextlib.suppress(OSError, FormatError):
                    await sink.finish()     # what came before the cut is written (xapi)
                raise _io_error(str(exc)) from None
            except (FormatError, xva_chunks.XvaError) as exc:
                raise _io_error(str(exc)) from None
            except OSError as exc:
                raise _io_error(f"writing the disk failed: {exc}") from None
            finally:
                await sink.drain()
        finally:
            await asyncio.to_thread(os.close, fd)
    finally:   # shielded: a second cancel must not leave the view's daemon behind
        await asyncio.shield(view_cm.__aexit__(None, None, None))


class BodyReader:
    """The upload as `await read(n)` (up to n bytes, b"" at its end): Content-Length
    bytes when given (ClientGone if fewer come), else until the client closes."""

    def __init__(self, req: Request, length: int | None):
        self.conn, self.left = req.conn, length
        self.received = 0

    async def read(self, n: int) -> bytes:
        if self.left is not None:
            if self.left <= 0:
                return b""
            n = min(n, self.left)
        data = await self.conn.read_some(n)
        if not data:
            if self.left:
                raise ClientGone(f"the upload ended {self.left} bytes short")
            return b""
        if self.left is not None:
            self.left -= len(data)
        self.received += len(data)
        return data


class DiskWriter:
    """Writes to the disk in a worker thread, one write in flight while the next piece
    is received; on a fresh disk all-zero 64 KiB pieces are skipped (they read as
    zeros). Pieces are gathered in a list and joined once per write: one copy."""

    def __init__(self, fd: int, size: int, skip_zeros: bool):
        self.fd, self.size, self.skip_zeros = fd, size, skip_zeros
        self.pending: asyncio.Future | None = None
        self.parts: list = []
        self.held = 0                     # bytes in parts
        self.at = 0                       # disk offset of parts[0]

    async def write(self, offset: int, data) -> None:
        if offset + len(data) > self.size:
            raise FormatError(f"data at {offset} goes past the disk's {self.size} bytes")
        if self.parts and offset != self.at + self.held:
            await self._flush()
        if not self.parts:
            self.at = offset
        self.parts.append(data)
        self.held += len(data)
        if self.held >= PIECE:
            await self._flush()

    async def zeros(self, offset: int, length: int) -> None:
        """A run that must read as zeros: written unless the disk is fresh."""
        if self.skip_zeros:
            return
        end = offset + length
        while offset < end:
            step = min(PIECE, end - offset)
            await self.write(offset, ZEROS if step == PIECE else ZEROS[:step])
            offset += step

    async def _flush(self):
        if self.pending is not None:
            await self.pending
            self.pending = None
        if self.parts:
            data = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            at, self.parts, self.held = self.at, [], 0
            self.pending = asyncio.ensure_future(asyncio.to_thread(self._write, data, at))

    def _write(self, data: bytes, at: int):
        if not self.skip_zeros:
            return _pwrite_all(self.fd, memoryview(data), at)
        for start in range(0, len(data), SKIP_GRAIN):
            piece = data[start:start + SKIP_GRAIN]    # bytes == bytes is a memcmp
            if piece != (ZERO_GRAIN if len(piece) == SKIP_GRAIN else bytes(len(piece))):
                _pwrite_all(self.fd, memoryview(piece), at + start)

    async def finish(self):
        await self._flush()
        await self.drain()
        await asyncio.to_thread(os.fsync, self.fd)

    async def drain(self):
        """Wait for the write in flight (also when failing: no thread left behind)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            try:
                await asyncio.shield(pending)
            except asyncio.CancelledError:
                await asyncio.wait([pending])
                raise


def _pwrite_all(fd: int, view, at: int):
    while len(view):
        done = os.pwrite(fd, view, at)
        view, at = view[done:], at + done


async def _read_raw(req, body: BodyReader, sink: DiskWriter, total: int, share=1.0):
    """The body, in order from offset 0; progress is `share` of the way at the end."""
    at = 0
    while True:
        data = await body.read(PIECE)
        if not data:
            break
        await sink.write(at, data)
        at += len(data)
        req.progress(share * at / max(1, total))


async def _read_chunked(req, body: BodyReader, sink: DiskWriter, size: int):
    async for offset, data in read_chunked(body.read, size):
        await sink.write(offset, data)
        if req.content_length:
            req.progress(body.received / req.content_length)


async def _read_vhd(req, body: BodyReader, sink: DiskWriter, size: int, length,
                    delta_ok: bool):
    """`delta_ok`: a differencing VHD (XO's delta) is laid over a disk that has data;
    into an empty one it would leave holes where its parent's data belongs: refused."""
    async for offset, data, n in vhdfmt.read_vhd(body.read, length, differencing=delta_ok):
        if offset < 0:
            if n > size:
                raise FormatError(f"the VHD holds a {n}-byte disk; the VDI has {size} bytes")
            continue
        if data is None:
            await sink.zeros(offset, n)
        else:
            await sink.write(offset, data)
        if length:
            req.progress(body.received / length)


async def _read_qcow2(req, body: BodyReader, view, length):
    """Spool, check (no backing file, no external data file, fits), convert."""
    spool_dir = os.path.join(req.server.settings.data_dir, "tmp")
    await asyncio.to_thread(os.makedirs, spool_dir, 0o700, True)
    path = os.path.join(spool_dir, f"import-{uuidlib.uuid4()}.qcow2")
    try:
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            spool = DiskWriter(fd, 1 << 62, skip_zeros=False)
            await _read_raw(req, body, spool, length or 1 << 62, share=0.5)
            await spool.finish()
        finally:
            await asyncio.to_thread(os.close, fd)
        try:
            await asyncio.to_thread(qcow.read_header, path)
            info = json.loads(await run("qemu-img", "info", "-f", "qcow2", "--output=json", path))
        except (Refused, StorageError, ValueError) as exc:
            raise FormatError(f"not an acceptable qcow2 image: {exc}") from None
        if info.get("backing-filename") or info.get("full-backing-filename"):
            raise FormatError("a qcow2 image with a backing file cannot be imported")
        if (info.get("format-specific") or {}).get("data", {}).get("data-file"):
            raise FormatError("a qcow2 image with an external data file cannot be imported")
        if info.get("virtual-size", 0) > view.size:
            raise FormatError(f"the qcow2 image holds a {info['virtual-size']}-byte disk; "
                              f"the VDI has {view.size} bytes")
        try:
            await qcow.convert(path, "qcow2", view.path, "raw", existing=True,
                               progress=lambda f: req.progress(0.5 + 0.5 * f))
        except StorageError as exc:
            raise _io_error(f"qemu-img convert failed: {exc}") from None
    finally:
        await asyncio.to_thread(_unlink, path)


def _unlink(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def _read_tar(req, body: BodyReader, fd: int, size: int, fresh: bool):
    """format=tar: chunks `vdi/NNNNNNNN` + checksums (xva_chunks), end blocks after."""
    loop = asyncio.get_running_loop()
    bridge = xva_chunks.LoopBridge(loop, read_some=lambda: body.read(PIECE))

    def consume():
        tar = xva_chunks.TarReader(bridge)
        xva_chunks.read_disk(tar, "vdi", size, lambda off, data: _pwrite_all(
            fd, memoryview(data), off), xva_chunks.ImportState(), zeros_written=fresh,
            progress=lambda done: loop.call_soon_threadsafe(req.progress, done / max(1, size)))
        if tar.next() is not None:
            raise FormatError("the tar goes on after the disk's last chunk")
    await _in_thread(consume, bridge, body.conn)


# -- ISO upload ----------------------------------------------------------------------------

async def _import_iso(req: Request, sr: str, length: int):
    """An ISO into an ISO SR: the SR is a directory of *.iso files and each file is a
    VDI named after it. The upload goes to a hidden file in that directory and takes
    its name only when whole, so a failed upload leaves no ISO behind."""
    store = req.server.store
    try:
        drv = service.driver_for(req.server, sr)
    except ApiError as exc:
        raise Refusal(500, exc) from None
    name = req.param("filename") or req.param("name") or f"{uuidlib.uuid4()}.iso"
    if not name.lower().endswith(".iso"):
        name += ".iso"
    try:        # the driver refuses a name with a directory, a dot first, a NUL
        target = drv.path(name)
    except Refused as exc:
        raise Refusal(400, ApiError("INTERNAL_ERROR", f"bad ISO name: {exc}")) from None
    if store.find("VDI", SR=sr, location=name) or await asyncio.to_thread(
            os.path.lexists, target):
        raise Refusal(400, ApiError("LOCATION_NOT_UNIQUE", sr, name))
    partial = os.path.join(os.path.dirname(target), f".upload-{uuidlib.uuid4()}.part")
    try:
        fd = await asyncio.to_thread(os.open, partial,
                                     os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError as exc:
        raise Refusal(500, ApiError("SR_BACKEND_FAILURE", "EACCES", "",
                                    f"cannot write into the ISO SR: {exc}")) from None
    try:
        try:
            await req.start_stream(_header_lines(
                req, ["content-type: application/octet-stream"]))
            sink = DiskWriter(fd, length, skip_zeros=False)
            await _read_raw(req, BodyReader(req, length), sink, length)
            await sink.finish()
        except ClientGone as exc:
            raise _io_error(str(exc)) from None
        finally:
            await asyncio.to_thread(os.close, fd)
        try:   # link, not rename: never replaces an ISO that appeared meanwhile
            await asyncio.to_thread(os.link, partial, target)
        except FileExistsError:
            raise ApiError("LOCATION_NOT_UNIQUE", sr, name) from None
    finally:
        await asyncio.to_thread(_unlink, partial)
    with service.errors(sr):
        vol = await drv.volume(name)
    ref = service.record_volume(store, sr, vol)
    await service.refresh(req.server, sr, drv)
    return ref
