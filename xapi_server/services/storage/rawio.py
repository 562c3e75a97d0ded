"""A VDI's bytes as one plain file, for the data handlers (disk and VM import/export).

    async with server.runtime_of_sr(sr).storage.raw_view(vdi, writable=False) as view:
        view.path, view.size           # pread/pwrite at offsets (from a worker thread)
        await view.allocated()         # (offset, length) ranges that may hold data
        await view.allocated(base=other_view)   # ranges that may differ from `other`

    async with storage.raw_view(vdi, writable=True, bulk=True) as view:
        disk = await view.open_disk()  # pread/pwrite/write_zeroes/flush, thread-safe

The volume is activated for the view's lifetime (counted as a guest's use is), qcow2
images are shown through backends/storage/imageview.fuse_view, or for `bulk`
transfers its NBD export (view.path is then None: the bytes are reached through
open_disk, which works for every view). A bulk writable view does not flush every
qcow2 metadata update (as `qemu-img convert`, whose default cache mode is "unsafe"):
its disk's flush() writes QEMU's caches out and fsyncs the image itself, and while it
is written the image is fsynced in the background every WRITEBACK_EVERY bytes, so the
final flush finds little left to do. Its data is written with O_DIRECT where the file
system allows (the daemon's cache.direct): an import is only done once its bytes are
on the disk, and through the page cache they were copied once more and then waited
for at the fsync; direct, the disk works while the next pieces arrive, and the daemon
spends about half the CPU. A writable view is
refused for a VDI a running guest has attached (VDI_IN_USE), a read-only VDI
(VDI_READONLY) or an SR whose driver cannot write (SR_OPERATION_NOT_SUPPORTED); once
closed the VDI's physical_utilisation is measured again.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import logging
import threading
from dataclasses import dataclass

from ...backends.storage import imageview
from ...backends.storage.nbd import NbdClient
from ...backends.storage.run import StorageError
from ...errors import ApiError
from . import service
from .service import StorageState, driver_for, errors

log = logging.getLogger(__name__)

WRITEBACK_EVERY = 256 << 20    # bytes written between background fsyncs of a bulk view


class FileDisk:
    """A view's bytes through a file descriptor (a FUSE view, a raw LV, a plain file);
    closing it closes the descriptor."""

    def __init__(self, fd: int):
        self.fd = fd

    @classmethod
    def open(cls, path: str, writable: bool) -> "FileDisk":
        return cls(os.open(path, os.O_RDWR if writable else os.O_RDONLY))

    def pread(self, length: int, offset: int) -> bytes:
        return os.pread(self.fd, length, offset)

    def pwrite(self, data, offset: int) -> None:
        view = memoryview(data).cast("B")
        while len(view):
            done = os.pwrite(self.fd, view, offset)
            view, offset = view[done:], offset + done

    def write_zeroes(self, offset: int, length: int) -> None:
        zeros = bytes(min(length, 4 << 20))
        while length:
            step = min(length, len(zeros))
            self.pwrite(memoryview(zeros)[:step], offset)
            offset, length = offset + step, length - step

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class NbdDisk:
    """A bulk view's bytes through its NBD export; see the module's docstring for the
    flushes."""

    def __init__(self, socket_path: str, image: str, writable: bool):
        self.client = NbdClient(socket_path, imageview.NBD_EXPORT)
        self.image_fd = os.open(image, os.O_RDONLY) if writable else None
        self.unsynced = 0
        self.syncing: threading.Thread | None = None

    def pread(self, length: int, offset: int):
        return self.client.pread(length, offset)

    def pwrite(self, data, offset: int) -> None:
        self.client.pwrite(data, offset)
        self._written(memoryview(data).nbytes)

    def write_zeroes(self, offset: int, length: int) -> None:
        self.client.write_zeroes(offset, length)

    def _written(self, n: int):
        self.unsynced += n
        if self.unsynced >= WRITEBACK_EVERY and (self.syncing is None or
                                                  not self.syncing.is_alive()):
            self.unsynced = 0
            self.syncing = threading.Thread(target=os.fdatasync, args=(self.image_fd,),
                                            daemon=True, name="image-writeback")
            self.syncing.start()

    def flush(self) -> None:
        self.client.flush()            # QEMU's qcow2 caches into the image file
        if self.image_fd is not None:
            os.fsync(self.image_fd)    # and the file onto the disk

    def close(self) -> None:
        try:
            self.client.close()
        finally:
            if self.syncing is not None:
                self.syncing.join()
            if self.image_fd is not None:
                os.close(self.image_fd)


@dataclass
class RawView:
    path: str | None    # the contents, exactly `size` bytes (None: a bulk NBD view)
    size: int
    image: str          # the volume as the driver keeps it (a qcow2 file, an LV)
    fmt: str            # "qcow2" or "raw"
    sr: str
    vdi: str
    writable: bool = False
    nbd: str | None = None     # a bulk view's NBD socket

    async def open_disk(self) -> "FileDisk | NbdDisk":
        """The bytes as a disk object (blocking, thread-safe calls); close() it."""
        if self.nbd is not None:
            return await asyncio.to_thread(NbdDisk, self.nbd, self.image, self.writable)
        return await asyncio.to_thread(FileDisk.open, self.path, self.writable)

    async def allocated(self, base: "RawView | None" = None) -> list[tuple[int, int]]:
        """Ranges that may hold data (all else reads as zeros); with `base`, the ranges
        that may differ from base's contents."""
        with errors(self.sr, self.vdi):
            mine = await imageview.data_extents(self.image, self.fmt)
            if base is None:
                return imageview.merge((o, n) for o, n, _ in mine)
            theirs = await imageview.data_extents(base.image, base.fmt)
            mine_chain = await imageview.backing_chain(self.image, self.fmt)
            their_chain = await imageview.backing_chain(base.image, base.fmt)
        # Below the first image both chains share, the two read the same: what may
        # differ is what either holds above it (snapshots and clones are leaves over a
        # shared base; an ancestor is shared at its own depth). Unrelated: everything.
        common = next((image for image in mine_chain if image in their_chain), None)
        mine_top = mine_chain.index(common) if common else len(mine_chain)
        their_top = their_chain.index(common) if common else len(their_chain)
        return imageview.merge([(o, n) for o, n, d in mine if d < mine_top] +
                               [(o, n) for o, n, d in theirs if d < their_top])


def _check_writable(server, vdi: str, drv):
    store = server.store
    rec = store.record("VDI", vdi)
    if drv.read_only:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", rec["SR"])
    if rec["read_only"]:
        raise ApiError("VDI_READONLY", vdi)
    if service.attached_vbds(store, vdi):
        raise ApiError("VDI_IN_USE", vdi, "import")


def views_dir(server) -> str:
    return os.path.join(server.settings.data_dir, "run", "views")


async def clear_stale_views(server):
    """At start-up: what views a crashed server left (backends/storage/imageview.py)."""
    await imageview.clear_stale(views_dir(server))


@contextlib.asynccontextmanager
async def raw_view(server, vdi: str, writable: bool = False, bulk: bool = False):
    store = server.store
    rec = store.record("VDI", vdi)
    sr = rec["SR"]
    drv = driver_for(server, sr)
    if writable:
        _check_writable(server, vdi, drv)
    image = await service.activate(server, vdi)
    try:
        size = store.get("VDI", vdi, "virtual_size")
        if drv.disk_format == "raw":
            yield RawView(image, size, image, "raw", sr, vdi, writable)
        elif bulk:
            async with contextlib.AsyncExitStack() as stack:
                with errors(sr, vdi):
                    sock = await _bulk_export(stack, image, drv.disk_format,
                                              views_dir(server), writable)
                yield RawView(None, size, image, drv.disk_format, sr, vdi, writable, sock)
        else:
            work = views_dir(server)
            async with contextlib.AsyncExitStack() as stack:
                with errors(sr, vdi):   # only the view's own failures are the SR's
                    path = await stack.enter_async_context(
                        imageview.fuse_view(image, drv.disk_format, work, writable))
                yield RawView(path, size, image, drv.disk_format, sr, vdi, writable)
    finally:
        await service.deactivate(server, vdi)
        if writable and store.exists("VDI", vdi):
            with contextlib.suppress(ApiError):
                with errors(sr, vdi):
                    service.update_volume(store, vdi, await drv.volume(rec["location"]))


async def _bulk_export(stack, image: str, fmt: str, work: str, writable: bool) -> str:
    """Enter the image's NBD export on `stack`; its socket. Writable: no flush per
    metadata update, data written with O_DIRECT unless the file system refuses it."""
    if writable:
        try:
            return await stack.enter_async_context(imageview.nbd_view(
                image, fmt, work, True, cache={"no-flush": True, "direct": True}))
        except StorageError as exc:
            log.info("no O_DIRECT for %s (%s): writing through the page cache", image, exc)
    options = {"cache": {"no-flush": True}} if writable else {}
    return await stack.enter_async_context(imageview.nbd_view(image, fmt, work, writable,
                                                              **options))


async def fresh_zeroed(server, vdi: str) -> bool:
    """True when every byte of the VDI reads as zero: nothing was ever written to it
    (a new qcow2 image). An importer may then skip zero blocks."""
    rec = server.store.record("VDI", vdi)
    drv = driver_for(server, rec["SR"])
    if drv.disk_format != "qcow2":
        return False   # an LV holds whatever was there before
    image = await service.activate(server, vdi)
    try:
        with errors(rec["SR"], vdi):
            return not await imageview.data_extents(image, drv.disk_format)
    finally:
        await service.deactivate(server, vdi)


class HostStorage(StorageState):
    """A host's storage state (`HostRuntime.storage`) with the data handlers' way in."""

    def __init__(self, server):
        super().__init__()
        self.server = server

    def raw_view(self, vdi: str, writable: bool = False, bulk: bool = False):
        return raw_view(self.server, vdi, writable, bulk)

    async def fresh_zeroed(self, vdi: str) -> bool:
        return await fresh_zeroed(self.server, vdi)
