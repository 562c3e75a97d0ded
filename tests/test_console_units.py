"""Consoles without a guest (issue 14): the WebSocket framing, the RFB activity parser, the
PPM -> PNG conversion and the console records' life on the in-process server (libvirt's
test driver: a started VM has its records, a stopped one none, a server that finds a
VM running makes them, a new port or address is written into their location)."""
import os
import struct
import zlib

import pytest

from xapi_server.http import websocket
from xapi_server.http.rfb_activity import RfbActivity
from xapi_server.http.vncsnapshot import ppm_to_png
from xapi_server.services.vm import consoles


# -- WebSocket frames ------------------------------------------------------------------

def masked(payload: bytes, opcode=websocket.BINARY, fin=True) -> bytes:
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        length = bytes([0x80 | n])
    elif n < 1 << 16:
        length = bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        length = bytes([0x80 | 127]) + struct.pack("!Q", n)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + key + body


def test_accept_key_is_rfc6455s_example():
    assert websocket.accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_server_frames_are_unmasked_binary_of_at_most_1024_bytes():
    data = bytes(range(256)) * 10             # 2560 bytes
    out = websocket.frames(data)
    assert out[:4] == b"\x82\x7e\x04\x00" and out[4:1028] == data[:1024]
    assert out[1028:1032] == b"\x82\x7e\x04\x00"
    assert out[2056:2058] == bytes([0x82, 126]) and struct.unpack("!H", out[2058:2060]) == (512,)
    assert websocket.frame(b"abc") == b"\x82\x03abc"
    assert websocket.frame(b"x" * 70000)[:10] == b"\x82\x7f" + struct.pack("!Q", 70000)


def test_client_frames_masked_or_not_and_split_anywhere():
    stream = (masked(b"hello") + b"\x82\x05world" + masked(b"p" * 300)
              + masked(b"q" * 70000) + masked(b"", websocket.CLOSE))
    reader, got = websocket.FrameReader(), []
    for i in range(0, len(stream), 7):        # every boundary, a few bytes at a time
        got += reader.feed(stream[i:i + 7])
    assert got == [(2, b"hello"), (2, b"world"), (2, b"p" * 300), (2, b"q" * 70000),
                   (websocket.CLOSE, b"")]


def test_an_absurd_client_frame_is_refused():
    with pytest.raises(websocket.ProtocolError):
        websocket.FrameReader().feed(b"\x82\xff" + struct.pack("!Q", 1 << 40))


# -- RFB activity ----------------------------------------------------------------------

FBUR = struct.pack("!BBHHHH", 3, 1, 0, 0, 640, 480)
KEY = struct.pack("!BBxxI", 4, 1, 0x61)
POINTER = struct.pack("!BBHH", 5, 0, 10, 10)
SET_ENCODINGS = struct.pack("!BxHii", 2, 2, 0, -223)
PIXEL_FORMAT = struct.pack("!B3x16s", 0, b"\x20\x18\x00\x01" + bytes(12))
QEMU_KEY = struct.pack("!BBHII", 255, 0, 1, 0x61, 30)


@pytest.mark.parametrize("handshake", [b"RFB 003.003\n\x01",            # 3.3: no choice
                                        b"RFB 003.008\n\x01\x01",        # None chosen
                                        b"RFB 003.008\n\x02" + bytes(16) + b"\x01"])
def test_viewer_traffic_is_not_activity_but_input_is(handshake):
    rfb = RfbActivity()
    assert not rfb.feed(handshake + PIXEL_FORMAT + SET_ENCODINGS + FBUR)
    assert not rfb.feed(FBUR * 3 + struct.pack("!B3xI", 6, 3) + b"abc")   # cut text
    assert rfb.feed(KEY)
    assert rfb.feed(FBUR + POINTER[:3]) is False     # half a pointer event: not yet
    assert rfb.feed(POINTER[3:])
    assert rfb.feed(QEMU_KEY)
    assert not rfb.broken


def test_an_unknown_message_switches_the_monitor_off():
    rfb = RfbActivity()
    rfb.feed(b"RFB 003.003\n\x01" + b"\x63" + KEY)
    assert rfb.broken and not rfb.feed(KEY)          # never idle, as xapi
    rfb = RfbActivity()
    assert not rfb.feed(b"GET / HTTP/1.1\r\n") and rfb.broken


# -- PPM -> PNG ------------------------------------------------------------------------

def decode_png(png: bytes):
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        (n,) = struct.unpack("!I", png[pos:pos + 4])
        kind, body = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack("!I", png[pos + 8 + n:pos + 12 + n])
        assert crc == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    width, height, depth, colour = struct.unpack("!IIBB", chunks[b"IHDR"][:10])
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = [raw[y * (1 + width * 3):(y + 1) * (1 + width * 3)] for y in range(height)]
    assert all(r[0] == 0 for r in rows) and (depth, colour) == (8, 2)
    return width, height, b"".join(r[1:] for r in rows)


def test_ppm_becomes_a_png_with_the_same_pixels():
    width, height = 5, 3
    pixels = bytes(v for y in range(height) for x in range(width)
                   for v in (x * 40, y * 90, x + y))
    ppm = b"P6\n# a comment\n5 3\n255\n" + pixels
    assert decode_png(ppm_to_png(ppm)) == (width, height, pixels)
    for bad in (b"P3\n1 1\n255\n000", b"P6\n5 3\n255\n" + pixels[:-1], b"P6\nx y\n"):
        with pytest.raises(ValueError):
            ppm_to_png(bad)


# -- records on the in-process server (libvirt's test driver) --------------------------

def test_locations():
    class Store:
        def __init__(self, address):
            self.address = address

        def exists(self, cname, ref):
            return True

        def get(self, cname, ref, field):
            return self.address
    assert consoles.location(Store("10.0.0.5"), "h", 443, "u") == \
        "https://10.0.0.5/console?uuid=u"
    assert consoles.location(Store("10.0.0.5"), "h", 8443, "u") == \
        "https://10.0.0.5:8443/console?uuid=u"
    assert consoles.location(Store("fd00::5"), "h", 8443, "u") == \
        "https://[fd00::5]:8443/console?uuid=u"


def test_records_follow_the_domain(api, inprocess):
    x, server = api, inprocess.server
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, "console-records")
    x.VM.set_is_a_template(vm, False)
    port = server.settings.port
    try:
        assert x.VM.get_consoles(vm) == []
        x.VM.start(vm, False, False)
        first = x.VM.get_consoles(vm)
        assert [x.console.get_protocol(c) for c in first] == ["rfb", "vt100"]
        # A server that finds the VM running (its records lost, say) makes them again,
        # and a new port is written into every location.
        for ref in first:
            server.store.delete("console", ref)
        server.settings.port = 443
        inprocess.loop.run_until_complete(server.runtime(server.host_ref).vms.resync())
        again = x.VM.get_consoles(vm)
        assert [x.console.get_protocol(c) for c in again] == ["rfb", "vt100"]
        address = x.host.get_address(server.host_ref)
        for ref in again:
            assert x.console.get_location(ref) == \
                f"https://{address}/console?uuid={x.console.get_uuid(ref)}"
        server.settings.port = 8443
        inprocess.loop.run_until_complete(server.runtime(server.host_ref).vms.resync())
        assert x.console.get_location(again[0]).startswith(f"https://{address}:8443/")
        x.VM.pause(vm)
        assert x.VM.get_consoles(vm) == again           # a paused domain keeps them
        x.VM.unpause(vm)
        x.VM.hard_shutdown(vm)
        assert x.VM.get_consoles(vm) == []
    finally:
        server.settings.port = port
        if x.VM.get_power_state(vm) != "Halted":
            x.VM.hard_shutdown(vm)
        x.VM.destroy(vm)


def test_api_callers_cannot_create_consoles(api):
    vm = api.VM.get_all()[0]
    with pytest.raises(Exception, match="NOT_IMPLEMENTED"):
        api.console.create({"VM": vm, "other_config": {}})


def test_connection_tracking():
    sessions = consoles.ConsoleSessions()
    assert sessions.try_add("vm", "alice", "s1", limit=False)
    assert sessions.try_add("vm", "bob", "s2", limit=False)     # counted while off
    assert not sessions.try_add("vm", "carol", "s3", limit=True)
    assert sessions.users("vm") == ["alice", "bob"]
    sessions.drop("vm", "alice", "s1")
    sessions.drop("vm", "bob", "s2")
    assert sessions.try_add("vm", "carol", "s3", limit=True)
    assert sessions.active == {"vm": [("carol", "s3")]}
