"""A VDI's bytes as one plain file (services/storage/rawio.py), on a real file SR:
qcow2 images through qemu-storage-daemon's FUSE export, what qemu-img sees afterwards,
the allocated ranges (also relative to a snapshot), and the refusals."""
import hashlib
import os
import subprocess

import pytest

from xapi_server.services.storage import rawio

MiB = 1 << 20


@pytest.fixture
def sr(api, tmp_path):
    host = api.host.get_all()[0]
    ref = api.SR.create(host, {"path": str(tmp_path / "sr")}, "0", "rawio", "", "file",
                        "user", False, {})
    yield ref
    for vdi in api.SR.get_VDIs(ref):
        api.VDI.destroy(vdi)
    for pbd in api.SR.get_PBDs(ref):
        api.PBD.unplug(pbd)
    api.SR.destroy(ref)


def new_vdi(api, sr, size=16 * MiB):
    return api.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                           "sharable": False, "read_only": False, "other_config": {},
                           "name_label": "raw"})


def run(inprocess, coro):
    return inprocess.loop.run_until_complete(coro)


def image(api, sr, vdi):
    path = api.PBD.get_device_config(api.SR.get_PBDs(sr)[0])["path"]
    return os.path.join(path, api.VDI.get_location(vdi) + ".qcow2")


async def write_then_read(server, vdi, writes: dict) -> tuple:
    async with server.runtime_of_sr(server.store.get("VDI", vdi, "SR")).storage \
            .raw_view(vdi, writable=True) as view:
        fd = os.open(view.path, os.O_WRONLY)
        try:
            for offset, data in writes.items():
                os.pwrite(fd, data, offset)
        finally:
            os.close(fd)
    async with rawio.raw_view(server, vdi) as view:
        with open(view.path, "rb") as f:
            content = f.read()
        return view.size, content, await view.allocated()


def test_written_bytes_land_in_the_image(api, inprocess, sr, tmp_path):
    vdi = new_vdi(api, sr)
    server = inprocess.server
    assert run(inprocess, rawio.fresh_zeroed(server, vdi))
    before = int(api.VDI.get_physical_utilisation(vdi))
    writes = {0: b"a" * 4096, 5 * MiB: os.urandom(MiB)}
    size, content, allocated = run(inprocess, write_then_read(server, vdi, writes))
    assert size == len(content) == 16 * MiB
    expected = bytearray(16 * MiB)
    for offset, data in writes.items():
        expected[offset:offset + len(data)] = data
    assert hashlib.sha256(content).digest() == hashlib.sha256(expected).digest()
    # only the written clusters are allocated (qcow2 clusters are 64 KiB)
    assert allocated[0][0] == 0 and allocated[0][1] <= 64 * 1024
    assert allocated[-1] == (5 * MiB, MiB) and len(allocated) == 2
    assert not run(inprocess, rawio.fresh_zeroed(server, vdi))
    # qemu itself reads the same bytes from the image
    flat = tmp_path / "flat.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", image(api, sr, vdi),
                    str(flat)], check=True)
    assert flat.read_bytes() == bytes(expected)
    assert int(api.VDI.get_physical_utilisation(vdi)) > before
    # the view is gone: no daemon, no mount left
    views = os.path.join(server.settings.data_dir, "run", "views")
    assert not [line for line in open("/proc/self/mountinfo") if views in line]
    assert os.listdir(views) == []


def test_allocated_relative_to_a_snapshot(api, inprocess, sr):
    vdi = new_vdi(api, sr)
    server = inprocess.server
    run(inprocess, write_then_read(server, vdi, {0: b"x" * MiB, 8 * MiB: b"y" * MiB}))
    snap = api.VDI.snapshot(vdi, {})
    run(inprocess, write_then_read(server, vdi, {3 * MiB: b"z" * MiB}))

    async def changed():
        async with rawio.raw_view(server, vdi) as view, rawio.raw_view(server, snap) as base:
            return await view.allocated(base=base), await view.allocated()
    since, everything = run(inprocess, changed())
    assert since == [(3 * MiB, MiB)]
    assert everything == [(0, MiB), (3 * MiB, MiB), (8 * MiB, MiB)]


def test_writable_view_refusals(api, inprocess, sr):
    server = inprocess.server
    vdi = new_vdi(api, sr)
    api.VDI.set_read_only(vdi, True)

    async def open_writable():
        async with rawio.raw_view(server, vdi, writable=True):
            pass
    with pytest.raises(Exception) as caught:
        run(inprocess, open_writable())
    assert caught.value.description[0] == "VDI_READONLY"


def test_views_a_crash_left_are_cleared_at_start(api, inprocess, sr, tmp_path):
    """A server killed during a transfer leaves qemu-storage-daemon running and its
    FUSE file mounted; the next start stops and unmounts them."""
    server = inprocess.server
    vdi = new_vdi(api, sr)

    async def leave_one_open():
        opened = await rawio.raw_view(server, vdi).__aenter__()   # never exited: as if
        return opened.path                                        # the server died here
    path = run(inprocess, leave_one_open())
    assert any(path in line for line in open("/proc/self/mountinfo"))
    run(inprocess, rawio.clear_stale_views(server))
    assert not any(path in line for line in open("/proc/self/mountinfo"))
    assert os.listdir(rawio.views_dir(server)) == []


def test_a_view_cancelled_while_it_opens_leaves_nothing(api, inprocess, sr):
    """A cancel can land while qemu-storage-daemon is still starting: whenever it comes,
    no daemon and no mount are left."""
    import asyncio
    server = inprocess.server
    vdi = new_vdi(api, sr)
    views = rawio.views_dir(server)

    async def cancel_after(delay):
        async def open_view():
            async with rawio.raw_view(server, vdi):
                await asyncio.sleep(10)
        job = asyncio.ensure_future(open_view())
        await asyncio.sleep(delay)
        job.cancel()
        await asyncio.gather(job, return_exceptions=True)
    for delay in (0.0, 0.01, 0.03, 0.06, 0.1, 0.2, 0.5):
        run(inprocess, cancel_after(delay))
        assert not [line for line in open("/proc/self/mountinfo") if views in line], delay
        assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_view_daemon(p,
                                                                                  views)]
        assert os.listdir(views) == [] if os.path.isdir(views) else True


def _is_view_daemon(pid, views) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read()
        with open(f"/proc/{pid}/stat") as f:
            zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
    return argv.startswith(b"qemu-storage-daemon") and views.encode() in argv and not zombie
