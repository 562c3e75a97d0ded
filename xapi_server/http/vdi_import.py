"""`PUT /import_raw_vdi`: a disk's bytes in, as xapi's import_raw_vdi.ml (raw, xapi's
chunked records, vhd, qcow2, tar), and an ISO uploaded into an ISO SR. The 200 goes out
BEFORE the body is read (xe, XenCenter and XO's probe wait for it); an import writes a
few MiB at a time, skipping zeros on a fresh disk. A qcow2 upload cannot be parsed in a
stream: it is spooled to <data-dir>/tmp, checked and converted by qemu-img. A VDI made
by an import is destroyed when it fails or is cancelled. Parameters and what the
export shares: vdi_transfer.py.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid as uuidlib

from ..backends.storage import qcow
from ..backends.storage.base import Refused
from ..backends.storage.run import StorageError, run
from ..errors import ApiError
from ..formats import FormatError
from ..formats import vhd as vhdfmt
from ..formats import xva_chunks
from ..formats.chunked import read_chunked
from ..services.storage import service, vdiops
from ..services.storage.rawio import FileDisk
from .dataplane import Refusal, Request
from .disk_writer import DiskWriter
from .raw import ClientGone
from .vdi_transfer import (NULL, PIECE, UNKNOWN_LENGTH, format_of, header_lines, in_thread,
                           io_error, sr_of, storage_of, vdi_of)

log = logging.getLogger(__name__)

# Unread bytes the connection holds while the pieces before are being written (the
# kernel's socket buffer holds the rest): what arrives while read_into waits goes
# straight into the piece, what was held before is copied (raw.py RawStream).
BULK_READ_BUFFER = 256 << 10


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
        # qemu-img converts a qcow2 upload into the view's file; the rest goes through
        # the image's NBD export (several large writes in flight)
        view_cm = storage.raw_view(vdi, writable=True, bulk=fmt != "qcow2")
        view = await view_cm.__aenter__()
    except ApiError as exc:
        raise Refusal(500, exc) from None
    try:
        try:
            disk = await view.open_disk()
        except OSError as exc:
            raise io_error(f"opening the disk failed: {exc}") from None
        try:
            await req.start_stream(header_lines(
                req, ["content-type: application/octet-stream"]))
            body = BodyReader(req, length)
            sink = DiskWriter(disk, view.size, skip_zeros=fresh)
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
                    await _read_tar(req, body, disk, view.size, fresh)
                await sink.finish()
            except ClientGone as exc:
                with contextlib.suppress(OSError, FormatError):
                    await sink.finish()     # what came before the cut is written (xapi)
                raise io_error(str(exc)) from None
            except (FormatError, xva_chunks.XvaError) as exc:
                raise io_error(str(exc)) from None
            except OSError as exc:
                raise io_error(f"writing the disk failed: {exc}") from None
            finally:
                await sink.drain()
        finally:
            await asyncio.to_thread(disk.close)
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

    async def read_into(self, into: memoryview) -> int:
        """Fill `into` (fewer bytes only at the body's end); how many bytes came. A body
        cut short still gives what came (it is written, as xapi does); the call after
        that raises ClientGone."""
        if self.left is not None:
            into = into[:max(0, self.left)]
        n = await self.conn.read_into(into) if len(into) else 0
        if self.left is not None:
            self.left -= n
        self.received += n
        if n == 0 and self.left:
            raise ClientGone(f"the upload ended {self.left} bytes short")
        return n


async def _read_raw(req, body: BodyReader, sink: DiskWriter, total: int, share=1.0):
    """The body, in order from offset 0; progress is `share` of the way at the end.
    Each piece is received into a buffer the writer lends, handed back to it as it is."""
    body.conn.read_buffer = BULK_READ_BUFFER
    at = 0
    while True:
        piece = sink.buffer()
        n = await body.read_into(piece)
        if not n:
            break
        await sink.write(at, piece[:n])
        at += n
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
        spool_file = FileDisk(await asyncio.to_thread(
            os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        try:
            spool = DiskWriter(spool_file, 1 << 62, skip_zeros=False)
            try:
                await _read_raw(req, body, spool, length or 1 << 62, share=0.5)
                await spool.finish()
            finally:
                await spool.drain()
        finally:
            await asyncio.to_thread(spool_file.close)
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
            raise io_error(f"qemu-img convert failed: {exc}") from None
    finally:
        await asyncio.to_thread(_unlink, path)


def _unlink(path: str):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


async def _read_tar(req, body: BodyReader, disk, size: int, fresh: bool):
    """format=tar: chunks `vdi/NNNNNNNN` + checksums (xva_chunks), end blocks after."""
    loop = asyncio.get_running_loop()
    bridge = xva_chunks.LoopBridge(loop, read_some=lambda: body.read(PIECE))

    def consume():
        tar = xva_chunks.TarReader(bridge)
        xva_chunks.read_disk(tar, "vdi", size, lambda off, data: disk.pwrite(
            data, off), xva_chunks.ImportState(), zeros_written=fresh,
            progress=lambda done: loop.call_soon_threadsafe(req.progress, done / max(1, size)))
        if tar.next() is not None:
            raise FormatError("the tar goes on after the disk's last chunk")
    await in_thread(consume, bridge, body.conn)


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
        iso = FileDisk(fd)
        sink = DiskWriter(iso, length, skip_zeros=False)
        try:
            await req.start_stream(header_lines(
                req, ["content-type: application/octet-stream"]))
            await _read_raw(req, BodyReader(req, length), sink, length)
            await sink.finish()
        except ClientGone as exc:
            raise io_error(str(exc)) from None
        finally:
            try:
                await sink.drain()
            finally:
                await asyncio.to_thread(iso.close)
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
