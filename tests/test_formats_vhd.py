"""The disk formats of xapi_server/formats against the real qemu-img: what the writers
produce, qemu reads back byte for byte (and `qemu-img check` passes); what qemu-img
writes (dynamic and fixed VHDs), the VHD reader reads back; bad input is refused with
a reason. No server: these are the pure format modules."""
import asyncio
import hashlib
import io
import json
import os
import random
import struct
import subprocess

import pytest

from xapi_server.formats import Extent, FormatError, Truncated
from xapi_server.formats import vhd as vhdfmt
from xapi_server.formats.chunked import read_chunked
from xapi_server.formats.qcow2 import Qcow2Writer
from xapi_server.formats.vhd import VhdWriter, read_vhd

MiB = 1 << 20


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


def make_disk(path, size, writes):
    """A raw disk of `size` bytes with random data at each (offset, length)."""
    rnd = random.Random(size)
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, length in writes:
            f.seek(offset)
            f.write(rnd.randbytes(length))
    return [(o, n) for o, n in writes]


def write_image(writer, raw, out):
    """Resolve the writer's pieces from `raw` in order (no seek on the output)."""
    total = 0
    with open(raw, "rb") as src, open(out, "wb") as dst:
        for piece in writer.pieces():
            if isinstance(piece, Extent):
                data = os.pread(src.fileno(), piece.length, piece.offset)
                assert len(data) == piece.length
            else:
                data = piece
            dst.write(data)
            total += len(data)
    assert total == writer.length == os.path.getsize(out)


def reader_of(data: bytes):
    stream = io.BytesIO(data)

    async def read(n):
        return stream.read(min(n, 65536))
    return read


def apply(data: bytes, target, length=None, parse=read_vhd):
    """Run the VHD reader over `data` into file `target`; returns the virtual size."""
    async def go():
        size = None
        with open(target, "r+b" if os.path.exists(target) else "w+b") as f:
            async for offset, piece, n in parse(reader_of(data), length):
                if offset < 0:
                    size = n
                    f.truncate(size)
                elif piece is None:
                    os.pwrite(f.fileno(), bytes(n), offset)
                else:
                    assert len(piece) == n
                    os.pwrite(f.fileno(), piece, offset)
        return size
    return asyncio.run(go())


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


SIZES = [(64 * MiB, [(0, 4096), (5 * MiB + 7, 100_000), (64 * MiB - 512, 512)]),
         (10_000_000, [(0, 1), (9_999_000, 1000)]),        # not a whole number of sectors
         (3 << 30, [(2 << 30, MiB), (1 << 30, 3 * MiB)])]  # beyond 2 GiB, >1 L2 table


@pytest.mark.parametrize("size,writes", SIZES, ids=["64M", "odd", "3G"])
def test_vhd_writer_qemu_reads_it(tmp_path, size, writes):
    raw, out = tmp_path / "d.raw", tmp_path / "d.vhd"
    ranges = make_disk(raw, size, writes)
    write_image(VhdWriter(size, ranges), raw, out)
    info = json.loads(qemu_img("info", "-f", "vpc", "--output=json", str(out)).stdout)
    assert info["virtual-size"] == -(-size // 512) * 512
    cmp = qemu_img("compare", "-f", "raw", "-F", "vpc", str(raw), str(out))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    # sparse: only the 2 MiB blocks the writes touch are in the file
    blocks = len({o // (2 * MiB) for o, n in writes}
                 | {(o + n - 1) // (2 * MiB) for o, n in writes})
    assert os.path.getsize(out) <= 4 * 512 + size // (2 * MiB) * 4 + blocks * (2 * MiB + 512) + 512


def test_vhd_writer_is_what_xo_checks(tmp_path):
    """The checks of XO's vhd-lib (checkFooter, checkHeader, its stream parser)."""
    raw, out = tmp_path / "d.raw", tmp_path / "d.vhd"
    size = 9 * MiB
    ranges = make_disk(raw, size, [(3 * MiB, 10), (8 * MiB, 10)])
    write_image(VhdWriter(size, ranges), raw, out)
    data = out.read_bytes()
    head, tail = data[:512], data[-512:]
    assert head == tail and head[:8] == b"conectix"
    assert vhdfmt.checksum(head, 64) == struct.unpack(">I", head[64:68])[0]
    data_offset, = struct.unpack(">Q", head[16:24])
    assert data_offset == 512
    assert struct.unpack(">I", head[12:16])[0] == 0x00010000
    orig, cur = struct.unpack(">QQ", head[40:56])
    assert orig <= cur and struct.unpack(">I", head[60:64])[0] == 3
    header = data[512:1536]
    assert header[:8] == b"cxsparse" and header[8:16] == b"\xff" * 8
    assert vhdfmt.checksum(header, 36) == struct.unpack(">I", header[36:40])[0]
    table, _version, entries, block = struct.unpack(">QIII", header[16:36])
    assert entries * block >= cur and block == 2 * MiB
    bat = struct.unpack(f">{entries}I", data[table:table + 4 * entries])
    used = [s for s in bat if s != 0xFFFFFFFF]
    assert used == sorted(used) and len(used) == 2         # blocks 1 and 4, in BAT order
    assert all(s * 512 >= table + 512 for s in used)
    assert data[used[0] * 512:used[0] * 512 + 512] == b"\xff" * 512     # sector bitmap


def test_vhd_reader_reads_qemu_dynamic_and_fixed(tmp_path):
    raw = tmp_path / "d.raw"
    size = 24 * MiB
    make_disk(raw, size, [(0, 1000), (7 * MiB + 3, 3 * MiB), (size - 4096, 4096)])
    for subformat in ("dynamic", "fixed"):
        image = tmp_path / f"{subformat}.vhd"
        done = qemu_img("convert", "-f", "raw", "-O", "vpc", "-o",
                        f"subformat={subformat},force_size=on", str(raw), str(image))
        assert done.returncode == 0, done.stderr
        out = tmp_path / f"{subformat}.out"
        data = image.read_bytes()
        assert apply(data, out, len(data)) == size
        assert sha(out) == sha(raw), subformat


def test_vhd_round_trip_through_our_writer_and_reader(tmp_path):
    raw, image, out = tmp_path / "d.raw", tmp_path / "d.vhd", tmp_path / "d.out"
    size = 11 * MiB + 512
    ranges = make_disk(raw, size, [(MiB, 5), (11 * MiB, 512)])
    write_image(VhdWriter(size, ranges), raw, image)
    data = image.read_bytes()
    with open(out, "wb") as f:             # a target that is not zero: the reader
        f.write(b"\x55" * size)            # must say which runs are zeros
    apply(data, out, len(data))
    assert sha(out) == sha(raw)


def test_differencing_vhd_is_a_delta(tmp_path):
    """With a parent, the writer makes a differencing VHD; the reader takes it only
    when told to, and then writes its sectors and nothing else (no zero runs)."""
    raw, image, out = tmp_path / "d.raw", tmp_path / "d.vhd", tmp_path / "d.out"
    size = 8 * MiB
    ranges = make_disk(raw, size, [(3 * MiB, 100)])
    parent = "12345678-1234-1234-1234-123456789abc"
    write_image(VhdWriter(size, ranges, parent=(parent, "base.vhd")), raw, image)
    data = image.read_bytes()
    assert struct.unpack(">I", data[60:64])[0] == vhdfmt.DIFFERENCING
    assert data[512 + 40:512 + 56] == bytes.fromhex(parent.replace("-", ""))
    assert data[512 + 64:512 + 64 + 16] == "base.vhd".encode("utf-16-be")
    with pytest.raises(FormatError, match="differencing"):
        apply(data, out, len(data))
    out.write_bytes(b"\x55" * size)                     # the parent's contents

    async def lay_over():
        with open(out, "r+b") as f:
            async for offset, piece, n in read_vhd(reader_of(data), len(data), True):
                assert offset < 0 or piece is not None   # never a zero run
                if piece is not None:
                    os.pwrite(f.fileno(), piece, offset)
    asyncio.run(lay_over())
    expected = bytearray(b"\x55" * size)
    block = raw.read_bytes()[2 * MiB:4 * MiB]
    expected[2 * MiB:4 * MiB] = block                    # the whole 2 MiB block it holds
    assert out.read_bytes() == bytes(expected)


def _dynamic(tmp_path, size=4 * MiB):
    raw, image = tmp_path / "x.raw", tmp_path / "x.vhd"
    ranges = make_disk(raw, size, [(0, 512)])
    write_image(VhdWriter(size, ranges), raw, image)
    return bytearray(image.read_bytes())


def _reseal(data, at=0):
    data[at + 64:at + 68] = bytes(4)
    data[at + 64:at + 68] = struct.pack(">I", vhdfmt.checksum(bytes(data[at:at + 512]), 64))


def test_vhd_reader_refuses_bad_input(tmp_path):
    out = tmp_path / "o"
    good = _dynamic(tmp_path)
    bad = bytearray(good)
    bad[100] ^= 1
    with pytest.raises(FormatError, match="checksum"):
        apply(bytes(bad), out, len(bad))
    diff = bytearray(good)
    diff[60:64] = struct.pack(">I", 4)
    _reseal(diff)
    with pytest.raises(FormatError, match="differencing"):
        apply(bytes(diff), out, len(diff))
    huge = bytearray(good)
    huge[48:56] = struct.pack(">Q", 1 << 50)
    _reseal(huge)
    with pytest.raises(FormatError, match="sectors up to"):
        apply(bytes(huge), out, len(huge))
    with pytest.raises(Truncated):
        apply(bytes(good[:-700]), out)
    with pytest.raises(FormatError, match="beyond the end"):
        apply(bytes(good[:-700]), out, len(good) - 700)
    with pytest.raises(FormatError, match="Content-Length"):
        apply(b"\0" * 4096, out)                         # no footer first: fixed, length needed
    with pytest.raises(FormatError):
        apply(b"\0" * 4096, out, 4096)                   # and a fixed VHD ends with its footer
    assert vhdfmt.MAX_SIZE < 1 << 41
    with pytest.raises(FormatError):
        VhdWriter(3 << 40, [])


@pytest.mark.parametrize("size,writes", SIZES, ids=["64M", "odd", "3G"])
def test_qcow2_writer_passes_qemu_check(tmp_path, size, writes):
    raw, out = tmp_path / "d.raw", tmp_path / "d.qcow2"
    ranges = make_disk(raw, size, writes)
    write_image(Qcow2Writer(size, ranges), raw, out)
    check = qemu_img("check", "-f", "qcow2", str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    cmp = qemu_img("compare", "-f", "raw", "-F", "qcow2", str(raw), str(out))
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr
    info = json.loads(qemu_img("info", "-f", "qcow2", "--output=json", str(out)).stdout)
    assert info["virtual-size"] == -(-size // 512) * 512
    assert os.path.getsize(out) < 8 * MiB           # sparse: the data and its tables


def test_qcow2_writer_whole_disk(tmp_path):
    raw, out = tmp_path / "d.raw", tmp_path / "d.qcow2"
    size = 40 * MiB + 4096
    make_disk(raw, size, [(0, size)])
    write_image(Qcow2Writer(size, [(0, size)]), raw, out)
    assert qemu_img("check", "-f", "qcow2", str(out)).returncode == 0
    assert qemu_img("compare", "-f", "raw", "-F", "qcow2", str(raw), str(out)).returncode == 0


def test_chunked_records():
    records = (struct.pack("<QI", 4096, 5) + b"hello" + struct.pack("<QI", 0, 3) + b"abc"
               + bytes(12))

    async def collect(data, size):
        return [(o, bytes(d)) async for o, d in read_chunked(reader_of(data), size)]
    assert asyncio.run(collect(records, 8192)) == [(4096, b"hello"), (0, b"abc")]
    with pytest.raises(FormatError, match="beyond"):
        asyncio.run(collect(records, 4098))
    with pytest.raises(Truncated):
        asyncio.run(collect(records[:-12], 8192))
