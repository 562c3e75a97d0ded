"""GET /vncsnapshot?uuid=|ref= : a picture of a running VM's screen (xapi's
xapi_vncsnapshot.ml answers a JPEG made by the vncsnapshot tool; we answer a PNG).

The picture comes from libvirt's virDomainScreenshot: QEMU 7.1 and later hand over a
PNG, which goes out as it is; older ones a PPM (P6), which is turned into a PNG here
with zlib. A PNG needs nothing but zlib (stdlib) and is lossless, so the dependency an
image library (Pillow) would add buys nothing for a screen of text and flat colours.
"""
from __future__ import annotations

import asyncio
import struct
import zlib

from ..backends.hypervisor import HypervisorError
from ..errors import ApiError
from .console import find_target
from .dataplane import Refusal, Request

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


async def get_vncsnapshot(req: Request):
    target = find_target(req)
    hv = req.server.runtime_of_vm(target.vm).vms.hv
    try:
        mime, image = await hv.screenshot(target.vm_uuid)
    except HypervisorError as exc:
        raise Refusal(404, ApiError("INTERNAL_ERROR", f"no screen: {exc}")) from None
    if not image.startswith(PNG_SIGNATURE):
        try:
            image = await asyncio.to_thread(ppm_to_png, image)
        except ValueError as exc:
            raise ApiError("INTERNAL_ERROR", f"screenshot ({mime}): {exc}") from None
    await req.respond(200, image, b"image/png", [
        (b"content-disposition", f'attachment; filename="{target.vm_uuid}.png"'.encode())])


def _ppm_fields(data: bytes, count: int) -> tuple[list[int], int]:
    """The first `count` whitespace-separated numbers after the magic, skipping
    comments, and the offset just past the single whitespace that ends the header."""
    values, pos = [], 2
    while len(values) < count:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data[pos:pos + 1] == b"#":
            pos = data.index(b"\n", pos)
            continue
        start = pos
        while pos < len(data) and data[pos:pos + 1].isdigit():
            pos += 1
        if start == pos:
            raise ValueError("not a PPM header")
        values.append(int(data[start:pos]))
    return values, pos + 1


def ppm_to_png(data: bytes) -> bytes:
    """A binary PPM (P6, 8 bits per channel) as an RGB PNG."""
    if not data.startswith(b"P6"):
        raise ValueError("not a binary PPM")
    (width, height, maxval), start = _ppm_fields(data, 3)
    row = width * 3
    if maxval != 255 or width <= 0 or height <= 0 or len(data) < start + row * height:
        raise ValueError(f"unexpected PPM ({width}x{height}, max {maxval})")
    # Each scanline is prefixed by its filter type, 0 (none).
    raw = b"".join(b"\x00" + data[start + y * row:start + (y + 1) * row]
                   for y in range(height))
    return (PNG_SIGNATURE + _chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2,
                                                        0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw, 6)) + _chunk(b"IEND", b""))


def _chunk(kind: bytes, body: bytes) -> bytes:
    return (struct.pack("!I", len(body)) + kind + body
            + struct.pack("!I", zlib.crc32(kind + body) & 0xFFFFFFFF))
