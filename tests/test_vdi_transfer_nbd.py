"""The NBD path under the disk transfers (backends/storage/nbd.py against a real
qemu-storage-daemon export, imageview.nbd_view): bytes written land in the qcow2 image
as qemu-img reads it, zeroes leave nothing allocated, several requests in flight come
back to the right callers, requests outside the disk and writes to a read-only export
are refused, and a daemon that goes away fails the waiting callers instead of hanging
them. The HTTP handlers on top are tested in test_vdi_transfer*.py."""
import asyncio
import json
import os
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from xapi_server.backends.storage import imageview
from xapi_server.backends.storage.nbd import NbdClient, NbdError

MiB = 1 << 20


@pytest.fixture
def image(tmp_path):
    path = str(tmp_path / "disk.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", path, str(64 * MiB)],
                   check=True)
    return path


def with_export(image, work, writable, job, **options):
    async def main():
        async with imageview.nbd_view(image, "qcow2", work, writable, **options) as sock:
            client = await asyncio.to_thread(NbdClient, sock, imageview.NBD_EXPORT)
            try:
                return await asyncio.to_thread(job, client)
            finally:
                await asyncio.to_thread(client.close)
    return asyncio.run(main())


def allocated(image):
    out = subprocess.run(["qemu-img", "map", "--output=json", "-f", "qcow2", image],
                         check=True, capture_output=True, text=True).stdout
    return [(e["start"], e["length"]) for e in json.loads(out) if e["data"]]


def test_writes_in_flight_land_in_the_image(image, tmp_path):
    pieces = {i * 4 * MiB: os.urandom(4 * MiB) for i in (0, 1, 2, 5, 9)}

    def job(client):
        assert client.size == 64 * MiB and not client.read_only
        with ThreadPoolExecutor(4) as pool:
            for future in [pool.submit(client.pwrite, data, at) for at, data in pieces.items()]:
                future.result()
            reads = {at: pool.submit(client.pread, 4 * MiB, at) for at in pieces}
            back = {at: bytes(f.result()) for at, f in reads.items()}
        client.write_zeroes(9 * 4 * MiB, 4 * MiB)     # over data: reads as zeros again
        client.flush()
        return back, bytes(client.pread(4 * MiB, 9 * 4 * MiB))
    back, zeroed = with_export(image, str(tmp_path / "views"), True, job,
                               cache={"no-flush": True})
    assert back == pieces
    assert zeroed == bytes(4 * MiB)
    raw = str(tmp_path / "out.raw")
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, raw], check=True)
    with open(raw, "rb") as f:
        for at, data in pieces.items():
            f.seek(at)
            assert f.read(4 * MiB) == (bytes(4 * MiB) if at == 36 * MiB else data)
    # 12-16 MiB was never written: a hole (extents are merged or not, as the writes
    # in flight happened to allocate clusters)
    assert not any(start < 16 * MiB and 12 * MiB < start + n for start, n in allocated(image))
    assert not os.listdir(tmp_path / "views")                  # daemon, socket, pid gone


def test_refusals(image, tmp_path):
    def job(client):
        with pytest.raises(NbdError, match="outside"):
            client.pwrite(b"x" * 512, 64 * MiB - 256)
        with pytest.raises(NbdError, match="outside"):
            client.pread(1, 64 * MiB)
        return client.read_only
    assert with_export(image, str(tmp_path / "v1"), True, job) is False

    def read_only_job(client):
        assert client.read_only
        with pytest.raises(NbdError):             # the server answers EPERM
            client.pwrite(b"\1" * 4096, 0)
        return bytes(client.pread(4096, 0))       # and the connection still works
    assert with_export(image, str(tmp_path / "v2"), False, read_only_job) == bytes(4096)
    with pytest.raises(NbdError, match="refused export"):
        _wrong_export(image, str(tmp_path / "v3"))


def _wrong_export(image, work):
    async def main():
        async with imageview.nbd_view(image, "qcow2", work, False) as sock:
            await asyncio.to_thread(NbdClient, sock, "no-such-export")
    asyncio.run(main())


def test_a_daemon_that_dies_fails_the_callers(image, tmp_path):
    work = str(tmp_path / "views")

    def job(client):
        pid = int(open(next(os.path.join(work, n) for n in os.listdir(work)
                            if n.endswith(".pid"))).read())
        client.pwrite(b"\2" * MiB, 0)
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(NbdError):
            for i in range(64):                   # the reply reader sees the end
                client.pwrite(b"\3" * MiB, (i % 60) * MiB)
        with pytest.raises(NbdError, match="broken"):
            client.pread(4096, 0)
        return True
    assert with_export(image, work, True, job)
