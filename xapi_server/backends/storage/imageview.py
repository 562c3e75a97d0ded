"""A disk image's contents as one plain file, and where its data lies.

The data handlers (disk and VM import/export) read and write a VDI's bytes at offsets,
whatever the volume is: a raw LV is already such a file; a qcow2 image (with its
backing chain) is shown as one by qemu-storage-daemon's FUSE export, so every block
goes through QEMU's own qcow2 code, as it does for a running guest. Nothing is copied
and nothing is held in memory. Bulk transfers use the same daemon's NBD export instead
(nbd_view): FUSE requests are served one 128 KiB piece at a time.

`allocated` asks `qemu-img map` which ranges hold data (everything else reads as
zeros), so sparse formats send only those and an importer into a fresh volume can skip
zeros.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import tempfile
import uuid as uuidlib

from .run import StorageError, run

log = logging.getLogger(__name__)

STOP_WAIT = 30.0     # seconds for the daemon to flush and unmount after SIGTERM


async def _mounted(mountpoint: str) -> bool:
    real = os.path.realpath(mountpoint)

    def scan():
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == real for line in f)
    return await asyncio.to_thread(scan)


def _blockdev(image: str, fmt: str, writable: bool, **options) -> str:
    blockdev = {"driver": fmt, "node-name": "disk", "read-only": not writable,
                "file": {"driver": "file", "filename": image}, **options}
    if not writable:
        blockdev["force-share"] = True
    return json.dumps(blockdev)


@contextlib.asynccontextmanager
async def fuse_view(image: str, fmt: str, work_dir: str, writable: bool):
    """The image's guest-visible contents as a regular file (yielded path) while the
    block is active. Read-only views share the image with a guest that has it open
    (force-share); writable ones take QEMU's write lock, so a guest cannot have it."""
    os.makedirs(work_dir, mode=0o700, exist_ok=True)
    name = uuidlib.uuid4().hex
    mountpoint = os.path.join(work_dir, f"{name}.img")
    pidfile = os.path.join(work_dir, f"{name}.pid")
    open(mountpoint, "wb").close()
    export = {"type": "fuse", "id": "view", "node-name": "disk", "mountpoint": mountpoint,
              "writable": writable, "growable": False}
    try:
        # --daemonize returns once the export is mounted (or failed)
        await run("qemu-storage-daemon", "--blockdev", _blockdev(image, fmt, writable),
                  "--export", json.dumps(export), "--pidfile", pidfile, "--daemonize",
                  timeout=60)
        if not await _mounted(mountpoint):
            raise StorageError("EIO", "", f"qemu-storage-daemon did not mount {image}")
        yield mountpoint
    finally:
        # Also when cancelled while the daemon was starting: it may be up already. The
        # clean-up is shielded, so a second cancel cannot leave it half done.
        await asyncio.shield(_remove(mountpoint, pidfile))


NBD_EXPORT = "disk"
_SOCKET_PATH_MAX = 100   # sun_path holds 108 bytes
# QEMU's NBD server allocates a fresh buffer for every request. With glibc's defaults a
# multi-MiB buffer is mmapped (or the heap trimmed after it), so every request faults
# in and zeroes its pages again: that doubled the daemon's CPU per GiB written. Served
# from a heap that is not trimmed, freed buffers are reused (a few requests in flight:
# the heap stays a few tens of MiB).
_NBD_MALLOC = {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=33554432:"
                                 "glibc.malloc.trim_threshold=134217728"}


@contextlib.asynccontextmanager
async def nbd_view(image: str, fmt: str, work_dir: str, writable: bool, **options):
    """The image's guest-visible contents as NBD export NBD_EXPORT on a UNIX socket
    (yielded path), for bulk transfers (backends/storage/nbd.py): same sharing rules
    as fuse_view. The daemon's pid file is in work_dir, so clear_stale finds it; the
    socket is there too unless that path is too long for a socket."""
    os.makedirs(work_dir, mode=0o700, exist_ok=True)
    name = uuidlib.uuid4().hex[:16]
    pidfile = os.path.join(work_dir, f"{name}.pid")
    sock = os.path.join(work_dir, f"{name}.sock")
    short_dir = None
    if len(sock.encode()) > _SOCKET_PATH_MAX:
        short_dir = tempfile.mkdtemp(prefix="xapi-nbd-")
        sock = os.path.join(short_dir, "disk.sock")
    export = {"type": "nbd", "id": "view", "node-name": "disk", "name": NBD_EXPORT,
              "writable": writable}
    try:
        await run("qemu-storage-daemon", "--blockdev", _blockdev(image, fmt, writable, **options),
                  "--nbd-server", f"addr.type=unix,addr.path={sock.replace(',', ',,')}",
                  "--export", json.dumps(export), "--pidfile", pidfile, "--daemonize",
                  timeout=60, env=_NBD_MALLOC)
        yield sock
    finally:
        await asyncio.shield(_remove(sock, pidfile))
        if short_dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(short_dir)


async def _remove(mountpoint: str, pidfile: str):
    # The pid file, and any daemon naming this mount point (or NBD socket) that has not
    # written it yet (a cancel can land while `--daemonize` is still starting it).
    pids = set(_daemons_for(mountpoint))
    with contextlib.suppress(OSError, ValueError):
        with open(pidfile) as f:
            pids.add(int(f.read().strip()))
    for pid in pids:
        await _stop(pid, mountpoint)
    if await _mounted(mountpoint):
        with contextlib.suppress(StorageError):
            await run("fusermount3", "-u", "-z", mountpoint, timeout=30)
    for path in (mountpoint, pidfile):
        with contextlib.suppress(OSError):
            os.unlink(path)


async def _stop(pid: int, mountpoint: str):
    """SIGTERM: the daemon flushes the image and unmounts; wait until it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + STOP_WAIT
    while loop.time() < deadline:
        if not _alive(pid):
            return
        await asyncio.sleep(0.05)
    log.warning("qemu-storage-daemon %d did not stop; killing it", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    await run("fusermount3", "-u", "-z", mountpoint, timeout=30)


async def clear_stale(work_dir: str):
    """After a crash: stop the daemons of views a dead server left and unmount their
    files (a FUSE mount whose daemon died stays until unmounted)."""
    if not os.path.isdir(work_dir):
        return
    for name in sorted(os.listdir(work_dir)):
        path = os.path.join(work_dir, name)
        if name.endswith(".pid"):
            with contextlib.suppress(OSError, ValueError):
                with open(path) as f:
                    pid = int(f.read().strip())
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if b"qemu-storage-daemon" in f.read():
                        await _stop(pid, path[:-4] + ".img")
        elif name.endswith(".img") and await _mounted(path):
            with contextlib.suppress(StorageError):
                await run("fusermount3", "-u", "-z", path, timeout=30)
        with contextlib.suppress(OSError):
            os.unlink(path)


def _daemons_for(mountpoint: str) -> list[int]:
    wanted = mountpoint.encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read()
                if argv.startswith(b"qemu-storage-daemon") and wanted in argv:
                    found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    """Running, not a zombie: a daemon is nobody's child here, and a container's init
    may be slow to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


async def backing_chain(image: str, fmt: str) -> list[str]:
    """The image and its backing files, top first, as real paths."""
    out = await run("qemu-img", "info", "-U", "--backing-chain", "--output=json",
                    "-f", fmt, image)
    found = json.loads(out)
    return [os.path.realpath(entry["filename"]) for entry in
            (found if isinstance(found, list) else [found])]


async def data_extents(image: str, fmt: str) -> list[tuple[int, int, int]]:
    """(offset, length, depth) of every range that holds data somewhere in the chain
    (depth 0: the image itself, 1: its backing file, ...); the rest reads as zeros."""
    out = await run("qemu-img", "map", "-U", "--output=json", "-f", fmt, image)
    extents = []
    for entry in json.loads(out):
        if entry.get("data") and not entry.get("zero"):
            extents.append((int(entry["start"]), int(entry["length"]),
                            int(entry.get("depth", 0))))
    return extents


def merge(ranges) -> list[tuple[int, int]]:
    """Sorted, non-overlapping (offset, length) ranges covering the given ones."""
    out: list[list[int]] = []
    for offset, length in sorted(ranges):
        if out and offset <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], offset + length - out[-1][0])
        elif length > 0:
            out.append([offset, length])
    return [(o, n) for o, n in out]
