"""The thin-CLI wire format (protocol 0.2), shared by the `xe` client and the server.

After the HTTP request, the server greets with MAGIC + major + minor (int32 little
endian, unframed) and the client answers the same. Every later message is framed:
int32 length, then the payload `int32 kind, int32 tag, args`. Strings are int32 length
+ bytes, lists int32 count + items. A blob Chunk header is followed by that many raw,
unframed bytes. Only the stdlib is used: the client must start fast.
"""
import struct

MAGIC = b"XenSource thin CLI protocol"
MAJOR, MINOR = 0, 2

COMMAND, RESPONSE, BLOB = 9, 10, 11
# Commands (server -> client)
PRINT, LOAD, PROMPT, EXIT = 0, 1, 3, 4
HTTP_GET, HTTP_PUT, ERROR, DEBUG, PRINT_STDERR, HTTP_CONNECT = 12, 13, 14, 15, 16, 17
# Responses (client -> server)
OK, FAILED, WAIT = 5, 6, 18
# Blob headers
CHUNK, END = 7, 8

_STRING_ARGS = {PRINT: 1, LOAD: 1, DEBUG: 1, PRINT_STDERR: 1, HTTP_CONNECT: 1,
                HTTP_GET: 2, HTTP_PUT: 2}


def _int(value: int) -> bytes:
    return struct.pack("<i", value)


def _str(value) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _int(len(data)) + data


def frame(payload: bytes) -> bytes:
    return _int(len(payload)) + payload


def greeting() -> bytes:
    return MAGIC + _int(MAJOR) + _int(MINOR)


def command(tag: int, *args) -> bytes:
    """A framed Command: strings for Print & co, an int for Exit, (code, [params]) for Error."""
    body = _int(COMMAND) + _int(tag)
    if tag == EXIT:
        body += _int(args[0])
    elif tag == ERROR:
        body += _str(args[0]) + _int(len(args[1])) + b"".join(_str(p) for p in args[1])
    else:
        body += b"".join(_str(a) for a in args)
    return frame(body)


def response(tag: int) -> bytes:
    return frame(_int(RESPONSE) + _int(tag))


def chunk_header(length: int) -> bytes:
    return frame(_int(BLOB) + _int(CHUNK) + _int(length))


def end_header() -> bytes:
    return frame(_int(BLOB) + _int(END))


class ProtocolError(Exception):
    pass


def parse(payload: bytes):
    """Decode one payload into (kind, tag, args)."""
    try:
        kind, tag = struct.unpack_from("<ii", payload)
        pos, args = 8, []

        def string():
            nonlocal pos
            (n,) = struct.unpack_from("<i", payload, pos)
            pos += 4 + n
            if n < 0 or pos > len(payload):
                raise ProtocolError("truncated string")
            return payload[pos - n:pos].decode("utf-8", "replace")

        if kind == COMMAND:
            if tag in _STRING_ARGS:
                args = [string() for _ in range(_STRING_ARGS[tag])]
            elif tag == EXIT:
                args = [struct.unpack_from("<i", payload, pos)[0]]
            elif tag == ERROR:
                code = string()
                (count,) = struct.unpack_from("<i", payload, pos)
                pos += 4
                args = [code, [string() for _ in range(count)]]
            elif tag != PROMPT:
                raise ProtocolError(f"unknown command tag {tag}")
        elif kind == BLOB and tag == CHUNK:
            args = [struct.unpack_from("<i", payload, pos)[0]]
        elif kind not in (RESPONSE, BLOB):
            raise ProtocolError(f"unknown message kind {kind}")
        return kind, tag, args
    except struct.error as exc:
        raise ProtocolError(f"truncated message: {exc}") from None
