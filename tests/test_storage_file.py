"""File (qcow2) SRs end to end through the API against the real server, with the
real qemu-img / qemu-io on the images."""
import json
import os
import subprocess
import time

import pytest
import XenAPI
from sdk_failures import failure

MiB = 1 << 20


def qemu_io(path, command):
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path],
                          capture_output=True, text=True, check=True).stdout


def image_info(path):
    out = subprocess.run(["qemu-img", "info", "-f", "qcow2", "-U", "--output=json", path],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def new_vdi(xapi, sr, size=8 * MiB, name="disk", **extra):
    rec = {"SR": sr, "virtual_size": str(size), "type": "user", "sharable": False,
           "read_only": False, "other_config": {}, "name_label": name, **extra}
    return xapi.VDI.create(rec)


@pytest.fixture
def file_sr(xapi, tmp_path):
    host = xapi.host.get_all()[0]
    path = str(tmp_path / "sr")
    sr = xapi.SR.create(host, {"path": path}, "0", "test file SR", "", "file", "user",
                        False, {})
    yield sr, path
    try:
        for vdi in xapi.SR.get_VDIs(sr):
            for vbd in xapi.VDI.get_VBDs(vdi):
                xapi.VBD.destroy(vbd)
            xapi.VDI.destroy(vdi)
        for pbd in xapi.SR.get_PBDs(sr):
            xapi.PBD.unplug(pbd)
        xapi.SR.destroy(sr)
    except XenAPI.Failure:
        pass


def path_of(xapi, sr_path, vdi):
    return os.path.join(sr_path, xapi.VDI.get_location(vdi) + ".qcow2")


def test_first_start_made_local_storage_and_sm_records(xapi):
    pool = xapi.pool.get_all()[0]
    local = xapi.pool.get_default_SR(pool)
    rec = xapi.SR.get_record(local)
    assert rec["name_label"] == "Local storage" and rec["type"] == "file"
    assert int(rec["physical_size"]) > 0
    pbd = xapi.PBD.get_record(rec["PBDs"][0])
    assert pbd["currently_attached"] and pbd["host"] == xapi.host.get_all()[0]
    assert os.path.isdir(pbd["device_config"]["path"])
    types = {r["type"] for r in xapi.SM.get_all_records().values()}
    assert types == set(xapi.SR.get_supported_types()) >= {"file", "ext", "lvm", "iso"}


def test_unknown_driver_and_bad_config(xapi, tmp_path):
    host = xapi.host.get_all()[0]
    assert failure(xapi.SR.create, host, {}, "0", "x", "", "nfs-bogus", "", False, {}) == [
        "SR_UNKNOWN_DRIVER", "nfs-bogus"]
    err = failure(xapi.SR.create, host, {"path": "relative/dir"}, "0", "x", "", "file", "",
                  False, {})
    assert err[0] == "SR_BACKEND_FAILURE" and "absolute" in err[3]
    assert not any(r["name_label"] == "x" for r in xapi.SR.get_all_records().values())


def test_vdi_create_is_a_real_qcow2_and_sizes_stay_true(xapi, file_sr):
    sr, path = file_sr
    vdi = new_vdi(xapi, sr, 10 * MiB + 1)        # rounded up to a 512-byte sector
    rec = xapi.VDI.get_record(vdi)
    info = image_info(path_of(xapi, path, vdi))
    assert info["format"] == "qcow2" and info["virtual-size"] == int(rec["virtual_size"])
    assert int(rec["virtual_size"]) == 10 * MiB + 512
    assert rec["location"] == rec["uuid"] and rec["managed"] and not rec["missing"]
    srrec = xapi.SR.get_record(sr)
    assert int(srrec["virtual_allocation"]) == 10 * MiB + 512
    assert vdi in srrec["VDIs"]
    qemu_io(path_of(xapi, path, vdi), "write -P 0x5a 0 4M")
    before = int(rec["physical_utilisation"])
    xapi.VDI.update(vdi)
    assert int(xapi.VDI.get_physical_utilisation(vdi)) >= before + 4 * MiB
    xapi.VDI.destroy(vdi)
    assert sorted(os.listdir(path)) == [".xapi-sr"]
    assert int(xapi.SR.get_virtual_allocation(sr)) == 0


def test_size_checks(xapi, file_sr):
    sr, _ = file_sr
    assert failure(new_vdi, xapi, sr, -1)[:2] == ["INVALID_VALUE", "virtual_size"]
    assert failure(new_vdi, xapi, sr, 0)[:2] == ["INVALID_VALUE", "virtual_size"]
    free = int(xapi.SR.get_physical_size(sr)) - int(xapi.SR.get_physical_utilisation(sr))
    err = failure(new_vdi, xapi, sr, free + (1 << 30))
    assert err[0] == "SR_FULL" and int(err[1]) == free + (1 << 30)
    assert xapi.SR.get_VDIs(sr) == []
    vdi = new_vdi(xapi, sr, 4 * MiB)
    xapi.VDI.resize(vdi, str(16 * MiB))
    assert int(xapi.VDI.get_virtual_size(vdi)) == 16 * MiB
    assert failure(xapi.VDI.resize, vdi, str(MiB)) == ["VDI_TOO_SMALL", vdi, str(16 * MiB)]
    xapi.VDI.set_read_only(vdi, True)
    assert failure(xapi.VDI.resize, vdi, str(32 * MiB)) == ["VDI_READONLY", vdi]


def test_snapshot_and_clone_keep_their_own_data(xapi, file_sr):
    sr, path = file_sr
    vdi = new_vdi(xapi, sr)
    qemu_io(path_of(xapi, path, vdi), "write -P 0x11 0 64k")
    snap = xapi.VDI.snapshot(vdi, {})
    qemu_io(path_of(xapi, path, vdi), "write -P 0x22 0 64k")
    clone = xapi.VDI.clone(vdi, {})
    qemu_io(path_of(xapi, path, vdi), "write -P 0x33 0 64k")
    for ref, pattern in ((snap, "0x11"), (clone, "0x22"), (vdi, "0x33")):
        assert "Pattern verification failed" not in qemu_io(
            path_of(xapi, path, ref), f"read -P {pattern} 0 64k")
    srec = xapi.VDI.get_record(snap)
    assert srec["is_a_snapshot"] and srec["snapshot_of"] == vdi
    assert snap in xapi.VDI.get_snapshots(vdi)
    assert not xapi.VDI.get_is_a_snapshot(clone)
    # The chain stays inside the SR, with relative names and an explicit format.
    info = image_info(path_of(xapi, path, snap))
    assert info["backing-filename"].startswith(".base-")
    assert info["backing-filename-format"] == "qcow2"
    for ref in (vdi, snap, clone):
        xapi.VDI.destroy(ref)
    assert os.listdir(path) == [".xapi-sr"]       # hidden bases collected too


def test_scan_follows_the_directory_and_refuses_foreign_backing(xapi, file_sr, tmp_path):
    sr, path = file_sr
    made = "0b4e1a52-6a7c-4bd6-9a0c-6a3c1f1f0001"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2",
                    os.path.join(path, made + ".qcow2"), "3M"], check=True)
    outside = str(tmp_path / "outside.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", outside, "3M"], check=True)
    evil = "0b4e1a52-6a7c-4bd6-9a0c-6a3c1f1f0002"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", outside,
                    os.path.join(path, evil + ".qcow2")], check=True)
    os.symlink(outside, os.path.join(path, "0b4e1a52-6a7c-4bd6-9a0c-6a3c1f1f0003.qcow2"))
    xapi.SR.scan(sr)
    found = {xapi.VDI.get_location(v): v for v in xapi.SR.get_VDIs(sr)}
    assert set(found) == {made}
    assert xapi.VDI.get_uuid(found[made]) == made
    assert int(xapi.VDI.get_virtual_size(found[made])) == 3 * MiB
    err = failure(xapi.VDI.introduce, evil, "evil", "", sr, "user", False, False, {}, evil)
    assert err[0] == "SR_BACKEND_FAILURE" and "leaves the SR" in err[3]
    err = failure(xapi.VDI.introduce, "", "x", "", sr, "user", False, False, {}, "../../etc")
    assert err[0] == "SR_BACKEND_FAILURE"
    os.unlink(os.path.join(path, evil + ".qcow2"))
    os.unlink(os.path.join(path, made + ".qcow2"))
    xapi.SR.scan(sr)
    assert xapi.SR.get_VDIs(sr) == []


def test_forget_and_introduce_back(xapi, file_sr):
    sr, path = file_sr
    vdi = new_vdi(xapi, sr, name="keep me")
    uuid, sr_uuid = xapi.VDI.get_uuid(vdi), xapi.SR.get_uuid(sr)
    pbd = xapi.SR.get_PBDs(sr)[0]
    assert failure(xapi.SR.forget, sr) == ["SR_HAS_PBD", sr]
    assert failure(xapi.SR.destroy, sr) == ["SR_HAS_PBD", sr]
    xapi.PBD.unplug(pbd)
    assert failure(xapi.VDI.create, {"SR": sr, "virtual_size": str(MiB), "type": "user",
                                     "sharable": False, "read_only": False,
                                     "other_config": {}}) == ["SR_NOT_ATTACHED", sr]
    xapi.SR.forget(sr)
    assert os.path.exists(os.path.join(path, uuid + ".qcow2"))
    host = xapi.host.get_all()[0]
    assert sr_uuid in xapi.SR.probe(host, {"path": path}, "file", {})
    sr2 = xapi.SR.introduce(sr_uuid, "back", "", "file", "user", False, {})
    assert failure(xapi.SR.introduce, sr_uuid, "again", "", "file", "user", False, {}) == [
        "SR_UUID_EXISTS", sr_uuid]
    assert failure(xapi.SR.scan, sr2) == ["SR_HAS_NO_PBDS", sr2]
    pbd2 = xapi.PBD.create({"host": host, "SR": sr2, "device_config": {"path": path},
                            "other_config": {}})
    xapi.PBD.plug(pbd2)
    xapi.SR.scan(sr2)
    back = xapi.VDI.get_by_uuid(uuid)
    assert xapi.VDI.get_SR(back) == sr2
    xapi.VDI.destroy(back)
    xapi.PBD.unplug(pbd2)
    xapi.SR.destroy(sr2)
    assert not os.path.exists(path)


def test_copy_to_another_sr_with_task_progress(xapi, file_sr, tmp_path):
    sr, path = file_sr
    host = xapi.host.get_all()[0]
    other_path = str(tmp_path / "other")
    other = xapi.SR.create(host, {"path": other_path}, "0", "other", "", "file", "user",
                           False, {})
    vdi = new_vdi(xapi, sr, 32 * MiB, name="source")
    qemu_io(path_of(xapi, path, vdi), "write -P 0x42 1M 8M")
    task = xapi.Async.VDI.copy(vdi, other)
    deadline = time.time() + 60
    while xapi.task.get_status(task) == "pending" and time.time() < deadline:
        time.sleep(0.1)
    rec = xapi.task.get_record(task)
    assert rec["status"] == "success", rec["error_info"]
    assert float(rec["progress"]) == 1.0
    copy = rec["result"].replace("<value>", "").replace("</value>", "")
    assert xapi.VDI.get_SR(copy) == other
    assert xapi.VDI.get_name_label(copy) == "source"
    assert int(xapi.VDI.get_virtual_size(copy)) == 32 * MiB
    copied = os.path.join(other_path, xapi.VDI.get_location(copy) + ".qcow2")
    assert "Pattern verification failed" not in qemu_io(copied, "read -P 0x42 1M 8M")
    into = new_vdi(xapi, sr, 4 * MiB)
    assert failure(xapi.VDI.copy, vdi, "OpaqueRef:NULL", "OpaqueRef:NULL", into) == [
        "VDI_TOO_SMALL", into, str(32 * MiB)]
    xapi.VDI.destroy(copy)
    xapi.PBD.unplug(xapi.SR.get_PBDs(other)[0])
    xapi.SR.destroy(other)


def test_nearly_full_sr_raises_a_message(xapi, tmp_path):
    """A file SR on a small filesystem that fills past 90% tells the administrator."""
    import subprocess
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)], check=True)
    try:
        host = xapi.pool.get_master(xapi.pool.get_all()[0])
        sr = xapi.SR.create(host, {"path": str(mnt)}, "0", "small", "", "file", "user",
                            False, {})
        with open(mnt / "filler", "wb") as f:
            f.write(b"\1" * (int(7.6 * 1024 * 1024)))
        xapi.SR.scan(sr)
        uuid = xapi.SR.get_uuid(sr)
        told = [m["name"] for m in xapi.message.get("SR", uuid, "19700101T00:00:00Z").values()]
        assert told == ["SR_NEARLY_FULL"]
        for pbd in xapi.SR.get_PBDs(sr):
            xapi.PBD.unplug(pbd)
        xapi.SR.forget(sr)
    finally:
        subprocess.run(["umount", str(mnt)], check=False)
