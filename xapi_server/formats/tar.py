"""Tar as XVAs use it: 512-byte headers (ustar written; v7 and ustar read, checked
for checksums, sizes, types and names), members read only up to a cap, and the two
zero blocks at the end. Sync code over `source.read(n)` / `sink.write(data)` objects
(see xva_chunks.py).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
SKIP_PIECE = 1024 * 1024      # a skipped member is read and dropped this much at a time


class XvaError(Exception):
    """The stream is not an XVA this reader accepts; str() says why."""


class Truncated(XvaError):
    """The stream ended in the middle of the archive."""


class BadTar(XvaError):
    """A tar header that is corrupt, of a kind we refuse, or hostile."""


class UnexpectedMember(XvaError):
    def __init__(self, expected: str, actual: str):
        super().__init__(f"expected {expected!r}, found {actual!r}")
        self.expected, self.actual = expected, actual


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def tar_header(name: str, size: int, mtime: int = 0) -> bytes:
    """A ustar header block for a regular file (names up to 100 bytes, as xapi's)."""
    raw = name.encode()
    if len(raw) > 100:
        raise ValueError(f"tar member name too long: {name!r}")
    if size >= 8 ** 11:
        raise ValueError(f"tar member too big: {size}")
    head = bytearray(BLOCK)
    head[0:len(raw)] = raw
    head[100:108] = _octal(0o644, 8)
    head[108:116] = _octal(0, 8)
    head[116:124] = _octal(0, 8)
    head[124:136] = _octal(size, 12)
    head[136:148] = _octal(mtime, 12)
    head[148:156] = b" " * 8
    head[156:157] = b"0"
    head[257:265] = b"ustar\x0000"
    head[148:156] = b"%06o\0 " % sum(head)
    return bytes(head)


def padding(size: int) -> bytes:
    return bytes(-size % BLOCK)


def one_file_archive(name: str, data: bytes, mtime: int = 0) -> bytes:
    """A whole tar of one member (a metadata export: ova.xml alone)."""
    return tar_header(name, len(data), mtime) + data + padding(len(data)) + ZERO_BLOCK * 2


@dataclass(frozen=True)
class Member:
    name: str
    size: int


def _field(block: bytes, start: int, end: int) -> bytes:
    return block[start:end].split(b"\0", 1)[0]


def _number(block: bytes, start: int, end: int, what: str) -> int:
    raw = block[start:end]
    if raw[:1] and raw[0] & 0x80:
        raise BadTar(f"{what} in base-256 form is not accepted")
    text = raw.split(b"\0", 1)[0].strip(b" ")
    if not text:
        return 0
    if not re.fullmatch(rb"[0-7]+", text):
        raise BadTar(f"{what} is not an octal number: {text[:16]!r}")
    return int(text, 8)


def check_name(name: str) -> str:
    """Refuse names a careless extractor would put outside its folder."""
    if not name or name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        raise BadTar(f"unsafe member name {name!r}")
    if any(part in ("..", ".") for part in name.split("/")):
        raise BadTar(f"unsafe member name {name!r}")
    return name


def parse_header(block: bytes) -> Member | None:
    """The member a 512-byte header announces (v7 or ustar), or None for a zero block."""
    if len(block) != BLOCK:
        raise Truncated("the archive ends inside a tar header")
    if block == ZERO_BLOCK:
        return None
    stored = _number(block, 148, 156, "header checksum")
    unsigned = sum(block[:148]) + 256 + sum(block[156:])
    signed = sum(b - 256 if b > 127 else b for b in block[:148] + block[156:]) + 256
    if stored not in (unsigned, signed):
        raise BadTar("tar header checksum mismatch")
    kind = block[156:157]
    if kind in (b"L", b"K"):
        raise BadTar("GNU long names are not accepted in an XVA")
    if kind not in (b"0", b"\0"):
        raise BadTar(f"tar member type {kind!r} is not a regular file")
    try:
        name = _field(block, 0, 100).decode()
        if block[257:262] == b"ustar":
            prefix = _field(block, 345, 500).decode()
            if prefix:
                name = f"{prefix}/{name}"
    except UnicodeDecodeError:
        raise BadTar("tar member name is not UTF-8") from None
    return Member(check_name(name), _number(block, 124, 136, "member size"))


def read_full(source, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        data = source.read(n - got)
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


class TarReader:
    """Members of a tar stream, one at a time, bodies read only up to a cap."""

    def __init__(self, source):
        self.source = source
        self.ended = False
        self.consumed = 0           # bytes of tar read (for progress)

    def _exact(self, n: int) -> bytes:
        data = read_full(self.source, n)
        self.consumed += len(data)
        if len(data) < n:
            raise Truncated("the archive ends early")
        return data

    def next(self) -> Member | None:
        """The next member's header, or None at the end-of-archive zero block."""
        if self.ended:
            return None
        block = read_full(self.source, BLOCK)
        self.consumed += len(block)
        if not block:
            raise Truncated("the archive ends without its end-of-archive blocks")
        member = parse_header(block)
        if member is None:
            self.ended = True
        return member

    def body(self, member: Member, limit: int) -> bytes:
        if member.size > limit:
            raise BadTar(f"member {member.name} is {member.size} bytes, more than {limit}")
        data = self._exact(member.size)
        self._exact(-member.size % BLOCK)
        return data

    def skip(self, member: Member):
        left = member.size + (-member.size % BLOCK)
        while left:
            left -= len(self._exact(min(left, SKIP_PIECE)))

    def expect(self, name: str, limit: int) -> bytes:
        member = self.next()
        if member is None or member.name != name:
            raise UnexpectedMember(name, member.name if member else "end of archive")
        return self.body(member, limit)


class TarWriter:
    def __init__(self, sink):
        self.sink = sink
        self.written = 0            # uncompressed bytes (for progress)

    def add(self, name: str, data: bytes, mtime: int = 0):
        self.sink.write(tar_header(name, len(data), mtime))
        self.sink.write(data)
        pad = padding(len(data))
        if pad:
            self.sink.write(pad)
        self.written += BLOCK + len(data) + len(pad)

    def finish(self):
        self.sink.write(ZERO_BLOCK * 2)
