"""formats/xva_chunks.py and formats/ova_xml.py on their own (no server): the tar
headers we write are what tar and Python's tarfile read, the reader takes v7 and ustar
headers and xapi's chunk rules (gaps, 0-byte keep-alive members, legacy .checksum
SHA-1, stop at the virtual size), refuses what is hostile, and decompresses in bounded
pieces."""
import hashlib
import io
import os
import subprocess
import tarfile
import zlib

import pytest
import xxhash
import zstandard

from xapi_server.formats import ova_xml, streams
from xapi_server.formats import xva_chunks as xva

MiB = 1024 * 1024


class Source:
    """A byte source as the server's bridge gives it: pieces of at most `piece` bytes."""

    def __init__(self, data: bytes, piece: int = 65536):
        self.data, self.at, self.piece = memoryview(data), 0, piece

    def read(self, n: int) -> bytes:
        out = bytes(self.data[self.at:self.at + min(n, self.piece)])
        self.at += len(out)
        return out


def member(name: str, data: bytes, fmt=tarfile.USTAR_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info.tobuf(fmt) + data + bytes(-len(data) % 512)


def v7_member(name: str, data: bytes) -> bytes:
    head = bytearray(member(name, b"")[:512])
    head[257:512] = bytes(255)                       # no ustar magic: a v7 header
    head[124:136] = b"%011o\0" % len(data)
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head) + data + bytes(-len(data) % 512)


def chunk(prefix, n, data, ext=".xxhash"):
    digest = (b"%016X" % xxhash.xxh64_intdigest(data) if ext == ".xxhash"
              else hashlib.sha1(data).hexdigest().encode())
    return member(f"{prefix}/{n:08d}", data) + member(f"{prefix}/{n:08d}{ext}", digest)


def read_disk(archive: bytes, size: int, state=None, first=None):
    tar, _ = xva.open_archive(Source(archive), first_member=first or "ova.xml")
    if first is None:
        tar.expect("ova.xml", xva.MAX_OVA_XML)
    disk = bytearray(size)

    def write_at(offset, data):
        disk[offset:offset + len(data)] = data
    xva.read_disk(tar, "Ref:1", size, write_at, state or xva.ImportState())
    return bytes(disk)


def symlink(name: str, target: str) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info.tobuf(tarfile.USTAR_FORMAT)


OVA = member("ova.xml", b"<value></value>")


def test_what_we_write_tar_reads(tmp_path):
    disk = os.urandom(MiB) + bytes(3 * MiB) + b"end"
    out = io.BytesIO()
    tar = xva.TarWriter(out)
    tar.add("ova.xml", b"<value/>", mtime=1700000000)
    xva.write_disk(tar, "Ref:1", lambda o, n: disk[o:o + n], len(disk))
    tar.finish()
    data = out.getvalue()
    assert len(data) % 512 == 0 and data.endswith(bytes(1024))
    (tmp_path / "x.xva").write_bytes(data)
    listing = subprocess.run(["tar", "-tvf", str(tmp_path / "x.xva")], capture_output=True,
                             text=True, check=True).stdout
    names = [line.split()[-1] for line in listing.splitlines()]
    # chunks 1 and 2 are zeros: left out; 0 and the last (3, 3 bytes long) are there
    assert names == ["ova.xml", "Ref:1/00000000", "Ref:1/00000000.xxhash",
                     "Ref:1/00000004", "Ref:1/00000004.xxhash"]
    assert read_disk(data, len(disk)) == disk
    tf = tarfile.open(fileobj=io.BytesIO(data))
    assert tf.extractfile("Ref:1/00000004").read() == b"end"
    assert tf.getmember("ova.xml").mtime == 1700000000


def test_allocated_ranges_skip_reading_but_not_first_and_last():
    size = 5 * MiB
    reads = []

    def read_at(offset, n):
        reads.append(offset)
        return bytes(n)
    xva.write_disk(xva.TarWriter(io.BytesIO()), "vdi", read_at, size,
                   allocated=[(2 * MiB + 10, 5)])
    assert reads == [0, 2 * MiB, 4 * MiB]


def test_reader_rules_gaps_keepalives_checksum_files_and_the_end():
    first = b"\1" * 4096                 # the first chunk sets the gap size: 4 KiB here
    archive = (OVA + chunk("Ref:1", 0, first)
               + member("Ref:1/00000001", b"") + member("Ref:1/00000001.xxhash",
                                                          b"EF46DB3751D8E999")
               + chunk("Ref:1", 3, b"\2" * 4096, ext=".checksum")   # 2 = gap of 4 KiB
               + chunk("Ref:1", 4, b"\3" * 100)
               + member("unrelated", b"never read") + bytes(1024))
    disk = read_disk(archive, 3 * 4096 + 100)
    assert disk == first + bytes(4096) + b"\2" * 4096 + b"\3" * 100


def test_v7_headers_are_read():
    archive = (v7_member("ova.xml", b"<value/>") + v7_member("Ref:1/00000000", b"ab")
               + v7_member("Ref:1/00000000.xxhash", b"%016X" % xxhash.xxh64_intdigest(b"ab"))
               + bytes(1024))
    assert read_disk(archive, 2) == b"ab"


@pytest.mark.parametrize("archive, error", [
    (OVA + chunk("Ref:1", 0, b"x" * 10), xva.BadTar),                  # past the end (8)
    (OVA + chunk("Ref:1", 0, b"x" * 4), xva.Truncated),               # no more members
    (OVA + member("Ref:1/00000000", b"x" * 8) + member("Ref:1/00000000.md5", b"0"),
     xva.UnexpectedMember),
    (OVA + member("Ref:1/00000000", b"x" * 8) + member("Ref:1/00000000.xxhash", b"0" * 16),
     xva.ChecksumMismatch),
    (OVA + chunk("Ref:1", 2, b"x" * 2) + chunk("Ref:1", 1, b"y" * 2),
     xva.UnexpectedMember),                                           # not increasing
    (OVA + chunk("Ref:2", 0, b"x" * 8), xva.UnexpectedMember),         # another disk
    (OVA + member("Ref:1/../../etc/passwd", b"x"), xva.BadTar),
    (OVA + member("/Ref:1/00000000", b"x"), xva.BadTar),
    (OVA + tarfile.TarInfo("Ref:1/" + "9" * 120).tobuf(tarfile.GNU_FORMAT), xva.BadTar),
    (OVA + symlink("Ref:1/00000000", "/etc/passwd"), xva.BadTar),
])
def test_hostile_or_broken_chunk_streams_are_refused(archive, error):
    with pytest.raises(error):
        read_disk(archive + bytes(1024), 8)


def test_absurd_member_sizes_are_refused_before_reading():
    head = bytearray(member("Ref:1/00000000", b"")[:512])
    head[124:136] = b"77777777777\0"
    head[148:156] = b" " * 8
    head[148:156] = b"%06o\0 " % sum(head)
    with pytest.raises(xva.BadTar, match="more than"):
        read_disk(OVA + bytes(head), 8)
    base256 = bytearray(head)
    base256[124:136] = b"\x80" + bytes(10) + b"\x01"
    base256[148:156] = b" " * 8
    base256[148:156] = b"%06o\0 " % sum(base256)
    with pytest.raises(xva.BadTar, match="base-256"):
        read_disk(OVA + bytes(base256), 8)


def test_corrupt_header_checksum_and_wrong_first_member():
    broken = bytearray(OVA)
    broken[0] ^= 1
    with pytest.raises(xva.BadTar, match="checksum"):
        read_disk(bytes(broken) + bytes(1024), 8)
    with pytest.raises(xva.UnexpectedMember):
        read_disk(member("hello", b"x") + OVA + bytes(1024), 8)


def test_compressed_archives_are_detected_and_read_in_bounded_pieces():
    disk = os.urandom(MiB) + bytes(MiB)
    out = io.BytesIO()
    tar = xva.TarWriter(out)
    tar.add("ova.xml", b"<value/>")
    xva.write_disk(tar, "Ref:1", lambda o, n: disk[o:o + n], len(disk))
    tar.finish()
    plain = out.getvalue()
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)
    for packed, kind in ((zstandard.ZstdCompressor().compress(plain), "zstd"),
                         (gz.compress(plain) + gz.flush(), "gzip"), (plain, None)):
        tar, found = xva.open_archive(Source(packed))
        assert found == kind
        tar.expect("ova.xml", 100)
        got = bytearray(len(disk))
        xva.read_disk(tar, "Ref:1", len(disk),
                      lambda o, d: got.__setitem__(slice(o, o + len(d)), d), xva.ImportState())
        assert bytes(got) == disk
    # a gzip bomb: 64 MiB of zeros in 64 KiB never comes out in one piece
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    packed = b"".join(bomb.compress(bytes(16 * MiB)) for _ in range(4)) + bomb.flush()
    source = streams.GzipSource(Source(packed))
    assert max(len(source.read(MiB)) for _ in range(50)) <= MiB


def test_checksum_failures_are_counted_with_force():
    archive = (OVA + member("Ref:1/00000000", b"x" * 8)
               + member("Ref:1/00000000.xxhash", b"0" * 16) + bytes(1024))
    state = xva.ImportState(force=True)
    assert read_disk(archive, 8, state) == b"x" * 8
    assert state.failed == ["Ref:1/00000000.xxhash"]
    assert read_disk(archive, 8, xva.ImportState(verify=False)) == b"x" * 8  # export_vsn 0


def test_ova_xml_round_trip_and_hostile_xml():
    header = {"version": {"export_vsn": 2}, "objects": [
        {"class": "VM", "id": "Ref:0", "snapshot": {"name_label": "a<b>&c", "on": True,
                                                     "f": 1.5, "tags": ["x"], "m": {}}}]}
    text = ova_xml.dumps(header)
    assert text.startswith(b"<value><struct><member><name>version</name>")
    back = ova_xml.loads(text)
    assert back["objects"][0]["snapshot"] == {"name_label": "a<b>&c", "on": True, "f": 1.5,
                                              "tags": ["x"], "m": {}}
    assert back["version"] == {"export_vsn": "2"}       # ints are bare strings on the wire
    assert ova_xml.loads(b'<?xml version="1.0"?>\n<value><struct><member><name>objects'
                         b'</name><value><array><data/></array></value></member></struct>'
                         b'</value>') == {"objects": []}
    for bad in (b'<!DOCTYPE v [<!ENTITY a "aaaa">]><value>&a;</value>',
                b'<!DOCTYPE v [<!ENTITY e SYSTEM "file:///etc/passwd">]><value>&e;</value>',
                b"<value><struct>", b"<methodCall/>", b"<value><foo/></value>",
                b"<value>" * 100 + b"x" + b"</value>" * 100,
                b"<value><array><data><value><array><data>" * 40 + b"</data></array>"
                b"</value>" * 40):
        with pytest.raises(ova_xml.BadMetadata):
            ova_xml.loads(bad)
