"""qcow2 images: qemu-img with the format always given, and a header reader.

Reading the header ourselves (a few fixed fields) makes SR.scan over a thousand
images cheap and lets us check a backing chain without letting any tool probe a
format: an image whose backing file lies outside the SR, or whose backing format
is not recorded as qcow2, is refused before anything opens it.
"""
from __future__ import annotations

import os
import re
import struct

from .base import Refused
from .run import run

MAGIC = b"QFI\xfb"
_BACKING_FORMAT_EXT = 0xE2792ACA
MAX_CHAIN = 256  # no coalescing yet: each idle snapshot adds a level


def read_header(path: str) -> tuple[int, str | None, str | None]:
    """(virtual size, backing file name or None, backing format or None)."""
    with open(path, "rb") as f:
        head = f.read(104)
        if len(head) < 72 or head[:4] != MAGIC:
            raise Refused(f"{os.path.basename(path)} is not a qcow2 image")
        version, = struct.unpack(">I", head[4:8])
        b_off, b_len = struct.unpack(">QI", head[8:20])
        size, = struct.unpack(">Q", head[24:32])
        if version not in (2, 3) or b_len > 1023:
            raise Refused(f"{os.path.basename(path)}: unsupported qcow2 header")
        backing = fmt = None
        if b_off:
            f.seek(b_off)
            backing = f.read(b_len).decode("utf-8", "replace")
            ext_at = struct.unpack(">I", head[100:104])[0] if version == 3 else 72
            fmt = _backing_format(f, ext_at, b_off)
    return size, backing, fmt


def _backing_format(f, offset: int, limit: int) -> str | None:
    f.seek(offset)
    while offset + 8 <= limit:
        kind, length = struct.unpack(">II", f.read(8))
        if kind == 0:
            return None
        data = f.read((length + 7) & ~7)
        if kind == _BACKING_FORMAT_EXT:
            return data[:length].decode("ascii", "replace")
        offset += 8 + ((length + 7) & ~7)
    return None


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
    on_output = None
    if progress is not None:
        argv.append("-p")

        def on_output(text):
            found = _PROGRESS.findall(text)
            if found:
                progress(float(found[-1]) / 100.0)
    await run(*argv, src, dst, on_output=on_output)
