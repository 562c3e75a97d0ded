"""SR and VDI allowed_operations (api/storage_checks.py) through the real server: what
a file SR and its disks offer while plugged, after PBD.unplug (destroy and forget,
no disk work) and after PBD.plug again; an ISO library offers no disk writes; the
lists follow each change without being asked, and the same checks refuse (VDI.destroy
of an unplugged SR's disk answers the error allowed_operations stood for)."""
import time

import pytest
import XenAPI

from serverproc import ServerProcess

WRITABLE_SR = {"scan", "update", "unplug", "vdi_create", "vdi_introduce", "vdi_destroy",
               "vdi_resize", "vdi_clone", "vdi_snapshot", "vdi_copy", "vdi_forget",
               "vdi_update", "pbd_create"}
DISK = {"clone", "copy", "resize", "snapshot", "destroy", "forget", "update"}


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    p = ServerProcess(str(tmp_path_factory.mktemp("xapi-allowed-ops"))).start()
    yield p
    p.stop()


@pytest.fixture
def x(proc):
    session = proc.session()
    yield session.xenapi
    session.xenapi.session.logout()


def eventually(fn, expected, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value == expected or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_file_sr_and_its_disks_follow_plug_state(x, tmp_path):
    host = x.host.get_all()[0]
    sr = x.SR.create(host, {"path": str(tmp_path / "sr")}, "0", "ops", "", "file", "user",
                     False, {})
    ops = lambda: set(x.SR.get_allowed_operations(sr))   # noqa: E731
    assert eventually(ops, WRITABLE_SR) == WRITABLE_SR
    assert not ops() & {"destroy", "forget", "plug", "vdi_enable_cbt", "vdi_mirror"}
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(1 << 20), "type": "user",
                        "name_label": "d", "sharable": False, "read_only": False,
                        "other_config": {}})
    vdi_ops = lambda: set(x.VDI.get_allowed_operations(vdi))   # noqa: E731
    assert eventually(vdi_ops, DISK) == DISK

    pbd = x.SR.get_PBDs(sr)[0]
    x.PBD.unplug(pbd)
    assert eventually(ops, {"destroy", "forget", "plug", "pbd_create", "pbd_destroy"}) == \
        {"destroy", "forget", "plug", "pbd_create", "pbd_destroy"}
    assert eventually(vdi_ops, set()) == set()
    with pytest.raises(XenAPI.Failure) as caught:
        x.VDI.destroy(vdi)
    assert caught.value.details[0] == "SR_NOT_ATTACHED"   # what the storage layer says

    x.PBD.plug(pbd)
    assert eventually(ops, WRITABLE_SR) == WRITABLE_SR
    assert eventually(vdi_ops, DISK) == DISK
    x.VDI.destroy(vdi)
    x.PBD.unplug(pbd)
    eventually(ops, {"destroy", "forget", "plug", "pbd_create", "pbd_destroy"})
    x.SR.destroy(sr)


def test_iso_library_offers_no_disk_writes(x, tmp_path):
    folder = tmp_path / "isos"
    folder.mkdir()
    (folder / "a.iso").write_bytes(b"\0" * 4096)
    host = x.host.get_all()[0]
    sr = x.SR.create(host, {"location": str(folder), "legacy_mode": "true"}, "0", "isos",
                     "", "iso", "iso", False, {})
    x.SR.scan(sr)
    ops = set(eventually(lambda: x.SR.get_allowed_operations(sr), None, timeout=1))
    assert "scan" in ops and not ops & {"vdi_create", "vdi_destroy", "vdi_resize",
                                        "vdi_snapshot", "vdi_clone"}
    iso = x.SR.get_VDIs(sr)[0]
    vdi_ops = set(eventually(lambda: x.VDI.get_allowed_operations(iso), None, timeout=1))
    assert vdi_ops and not vdi_ops & {"destroy", "resize", "snapshot", "clone"}
    assert {"copy", "forget", "update"} <= vdi_ops
