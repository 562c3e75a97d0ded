"""qcow2 images: qemu-img with the format always given, and a header reader.

Reading the header ourselves (a few fixed fields) makes SR.scan over a thousand
images cheap and lets us check a backing chain without letting any tool probe a
format: an image whose backing file lies outside the SR, or whose backing format
is not recorded as qcow2, is refused before anything opens it. So is an image with
an external data file (qcow2 v3 "data-file"): qemu, qemu-img and libvirt would read
and write the guest's data in whatever host file its header names, so every reader
of a header (scan, introduce, update, attach, copy) refuses it, and nothing ever
opens an image whose header has not just been read.
"""
from __future__ import annotations

import os
import re
import struct

from .base import Refused
from .run import run

MAGIC = b"QFI\xfb"
_BACKING_FORMAT_EXT = 0xE2792ACA
_DATA_FILE_EXT = 0x44415441          # "DATA": the external data file's name
_INCOMPAT_DATA_FILE = 1 << 2         # incompatible feature bit: data lives elsewhere
_MAX_EXTENSIONS = 64
MAX_CHAIN = 256  # no coalescing yet: each idle snapshot adds a level


def read_header(path: str) -> tuple[int, str | None, str | None]:
    """(virtual size, backing file name or None, backing format or None); Refused
    for anything that is not a plain qcow2 image (v2/v3, no external data file)."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        head = f.read(104)
        if len(head) < 72 or head[:4] != MAGIC:
            raise Refused(f"{name} is not a qcow2 image")
        version, = struct.unpack(">I", head[4:8])
        b_off, b_len, cluster_bits = struct.unpack(">QII", head[8:24])
        size, = struct.unpack(">Q", head[24:32])
        if version not in (2, 3) or b_len > 1023 or not 9 <= cluster_bits <= 21 or \
                (version == 3 and len(head) < 104):
            raise Refused(f"{name}: unsupported qcow2 header")
        incompatible, ext_at = (struct.unpack(">Q", head[72:80])[0],
                                struct.unpack(">I", head[100:104])[0]) \
            if version == 3 else (0, 72)
        # Extensions sit between the header and the backing name (or the cluster's end).
        extensions = _extensions(f, ext_at, b_off or (1 << cluster_bits))
        if incompatible & _INCOMPAT_DATA_FILE or _DATA_FILE_EXT in extensions:
            raise Refused(f"{name}: has an external data file, which is never opened")
        backing = fmt = None
        if b_off:
            f.seek(b_off)
            backing = f.read(b_len).decode("utf-8", "replace")
            raw = extensions.get(_BACKING_FORMAT_EXT)
            fmt = raw.decode("ascii", "replace") if raw is not None else None
    return size, backing, fmt


def _extensions(f, offset: int, limit: int) -> dict[int, bytes]:
    """Header extensions {type: data} from `offset` up to the end marker or `limit`."""
    found = {}
    f.seek(offset)
    for _ in range(_MAX_EXTENSIONS):
        if offset + 8 > limit:
            break
        raw = f.read(8)
        if len(raw) < 8:
            break
        kind, length = struct.unpack(">II", raw)
        if kind == 0:
            break
        padded = (length + 7) & ~7
        if offset + 8 + padded > limit or padded > 1 << 16:
            raise Refused("qcow2 header extension too large")   # qemu refuses it too
        found[kind] = f.read(padded)[:length]
        offset += 8 + padded
    return found


def check_chain(path: str, root: str) -> int:
    """Follow the backing chain; refuse a link outside `root` or of another format.
    Returns the virtual size of `path`."""
    root = os.path.realpath(root)
    seen = set()
    size = None
    current = path
    for _ in range(MAX_CHAIN):
        real = os.path.realpath(current)
        if os.path.dirname(real) != root or real in seen:
            raise Refused(f"{os.path.basename(path)}: backing chain leaves the SR")
        seen.add(real)
        vsize, backing, fmt = read_header(real)
        size = vsize if size is None else size
        if backing is None:
            return size
        if fmt != "qcow2":
            raise Refused(f"{os.path.basename(path)}: backing format {fmt!r} is not qcow2")
        current = os.path.join(os.path.dirname(real), backing)
    raise Refused(f"{os.path.basename(path)}: backing chain too long")


def allocated(path: str) -> int:
    return os.stat(path).st_blocks * 512


async def create(path: str, size: int, backing: str | None = None):
    argv = ["qemu-img", "create", "-q", "-f", "qcow2"]
    if backing:
        # A relative name: the SR directory can move and the chain stays whole.
        argv += ["-F", "qcow2", "-b", os.path.basename(backing)]
    await run(*argv, path, str(size))
    _private(path)


def _private(path: str):
    """Images are the owner's alone: the SR folder is searchable (QEMU's user must
    reach it), and libvirt gives a running guest's images to that user while it runs."""
    os.chmod(path, 0o600)


async def resize(path: str, size: int):
    await run("qemu-img", "resize", "-q", "-f", "qcow2", path, str(size))


_PROGRESS = re.compile(r"\((\d+(?:\.\d+)?)/100%\)")


async def convert(src: str, src_fmt: str, dst: str, dst_fmt: str, *, existing=False,
                  share=False, progress=None):
    """Copy src into dst (flattening any chain). `existing`: dst is already made
    (an LV, or a qcow2 of the right size); `share`: src may be open by a guest."""
    argv = ["qemu-img", "convert", "-f", src_fmt, "-O", dst_fmt]
    if existing:
        argv.append("-n")
    if share:
        argv.append("-U")
    def on_output(text):
        found = _PROGRESS.findall(text)
        if found:
            progress(float(found[-1]) / 100.0)
    if progress is not None:
        argv.append("-p")
    await run(*argv, src, dst, on_output=on_output if progress is not None else None)
    if not existing:
        _private(dst)
