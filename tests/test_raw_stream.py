"""The bulk-upload path under PUT /import_raw_vdi, driven as the TLS layer drives it
(get_buffer, then buffer_updated with what it decrypted into that buffer):
  * RawStream.read_into hands the caller's own buffer to the TLS layer while it waits
    (no copy on the event loop), copies what came before it was called, keeps the
    order of the bytes either way, stops reading past `read_buffer` unread bytes and
    gives the buffer back when cancelled or at the end of input;
  * DiskWriter lends receive buffers and reuses them once their write has ended (a few
    exist whatever the upload's size), and skips all-zero grains on a fresh disk.
The whole handler over HTTPS is tested in test_vdi_transfer*.py."""
import asyncio
import os
import threading
import time

import pytest

from xapi_server.http import raw
from xapi_server.http.disk_writer import DiskWriter
from xapi_server.http.vdi_transfer import PIECE, SKIP_GRAIN


class FakeTransport:
    def __init__(self):
        self.paused = False

    def set_write_buffer_limits(self, high):
        pass

    def pause_reading(self):
        self.paused = True

    def resume_reading(self):
        self.paused = False

    def abort(self):
        pass


def deliver(stream, data: bytes) -> memoryview:
    """What the TLS layer does with a decrypted record; returns the buffer it got."""
    buf = stream.get_buffer(len(data))
    n = min(len(buf), len(data))
    buf[:n] = data[:n]
    stream.buffer_updated(n)
    if n < len(data):           # the buffer was full: the layer asks again
        deliver(stream, data[n:])
    return buf


def test_read_into_receives_into_the_callers_buffer():
    async def main():
        stream = raw.RawStream(FakeTransport(), idle_timeout=5, already_read=b"head")
        data = os.urandom(300_000)
        target = bytearray(len(data) + 4)
        reading = asyncio.ensure_future(stream.read_into(memoryview(target)))
        await asyncio.sleep(0)
        # "head" was already read: copied first; then read_into waits with nothing
        # unread, and the TLS layer is given the rest of the caller's buffer
        given = deliver(stream, data[:100_000])
        assert given.obj is target
        await asyncio.sleep(0)
        deliver(stream, data[100_000:])
        assert await reading == len(target)
        assert bytes(target) == b"head" + data
        # read_into is done: what comes next goes to the stream's own buffer
        assert deliver(stream, b"tail").obj is not target
        assert await stream.read_some() == b"tail"
    asyncio.run(main())


def test_bytes_keep_their_order_and_reading_pauses_past_read_buffer():
    async def main():
        transport = FakeTransport()
        stream = raw.RawStream(transport, idle_timeout=5)
        stream.read_buffer = 64 << 10
        data = os.urandom(1 << 20)
        # the handler is busy elsewhere: bytes pile up until reading pauses
        for at in range(0, 192 << 10, 16 << 10):
            deliver(stream, data[at:at + (16 << 10)])
        assert transport.paused and stream.unread == 192 << 10
        got = bytearray(len(data))
        reading = asyncio.ensure_future(stream.read_into(memoryview(got)))
        await asyncio.sleep(0)
        assert not transport.paused           # caught up: reading again
        for at in range(192 << 10, len(data), 16 << 10):
            deliver(stream, data[at:at + (16 << 10)])
            await asyncio.sleep(0)
        assert await reading == len(data) and bytes(got) == data
    asyncio.run(main())


def test_end_of_input_and_cancel_give_the_buffer_back():
    async def main():
        stream = raw.RawStream(FakeTransport(), idle_timeout=5)
        target = bytearray(1000)
        reading = asyncio.ensure_future(stream.read_into(memoryview(target)))
        await asyncio.sleep(0)
        deliver(stream, b"x" * 10)
        for _ in range(5):      # back to waiting (Python 3.11's wait_for would swallow
            await asyncio.sleep(0)   # a cancel landing just as its wait ends)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert deliver(stream, b"y" * 5).obj is not target    # never written after
        assert bytes(target[:10]) == b"x" * 10 and target[10] == 0
        assert await stream.read_some() == b"y" * 5

        short = bytearray(100)
        reading = asyncio.ensure_future(stream.read_into(memoryview(short)))
        await asyncio.sleep(0)
        deliver(stream, b"z" * 30)
        stream.eof_received()
        assert await reading == 30 and bytes(short[:30]) == b"z" * 30
    asyncio.run(main())


def test_a_cancel_landing_as_data_arrives_is_not_lost():
    """Data and a cancel in the same loop turn (a task.cancel while the upload runs):
    the reader must end cancelled. Python 3.11's wait_for returned the data instead
    and dropped the cancel, so the handler went on reading."""
    async def main():
        stream = raw.RawStream(FakeTransport(), idle_timeout=5)
        target = bytearray(1000)
        reading = asyncio.ensure_future(stream.read_into(memoryview(target)))
        for _ in range(3):
            await asyncio.sleep(0)
        deliver(stream, b"x" * 10)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
    asyncio.run(main())


def test_an_idle_client_times_out_while_read_into_waits():
    async def main():
        stream = raw.RawStream(FakeTransport(), idle_timeout=0.2)
        with pytest.raises(raw.ClientGone):
            await stream.read_into(memoryview(bytearray(10)))
    asyncio.run(main())


class SlowDisk:
    """A disk whose writes take a while (so several are in flight), recording them."""

    def __init__(self, size):
        self.image = bytearray(size)
        self.writes = []
        self.lock = threading.Lock()

    def pwrite(self, data, at):
        time.sleep(0.01)
        data = bytes(data)
        with self.lock:
            self.image[at:at + len(data)] = data
            self.writes.append((at, len(data)))

    def flush(self):
        pass


def test_disk_writer_reuses_its_buffers_and_skips_zero_grains():
    async def main():
        pieces = 12
        disk = SlowDisk(pieces * PIECE)
        sink = DiskWriter(disk, pieces * PIECE, skip_zeros=True)
        expected = bytearray()
        for i in range(pieces):
            buf = sink.buffer()
            data = bytearray(os.urandom(PIECE))
            data[SKIP_GRAIN:3 * SKIP_GRAIN] = bytes(2 * SKIP_GRAIN)   # two zero grains
            buf[:] = data
            expected += data
            await sink.write(i * PIECE, buf)
        await sink.finish()
        assert len(sink.lent) <= 5              # IN_FLIGHT + 2, however long the upload
        assert bytes(disk.image) == bytes(expected)
        # each piece written as two runs around its zero grains
        assert (PIECE, SKIP_GRAIN) in disk.writes
        assert (PIECE + 3 * SKIP_GRAIN, PIECE - 3 * SKIP_GRAIN) in disk.writes
        assert not any(at % PIECE == SKIP_GRAIN for at, _ in disk.writes)
    asyncio.run(main())
