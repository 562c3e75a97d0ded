"""The lvm driver on a real volume group on a loop device, through the API.

What the kernel allows is tested for real; without device-mapper (this CI's kernel)
LVs exist as metadata only, so activation, attaching and snapshots are checked to
fail cleanly instead, and their positive tests skip with the reason."""
import os
import shutil
import subprocess

import pytest
import XenAPI

from xapi_server.backends.storage.lvm import dm_available
from sdk_failures import failure

MiB = 1 << 20
ENV = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1"}
DM = dm_available()
NO_DM = "this kernel has no device-mapper: LVs cannot be activated or snapshotted"


def lvm(*args):
    extra = [] if DM else ["--driverloaded", "n"]
    return subprocess.run([args[0], *extra, *args[1:]], capture_output=True, text=True,
                          env=ENV, check=True).stdout


@pytest.fixture
def loop_device(tmp_path):
    if os.geteuid() != 0 or not shutil.which("losetup") or not shutil.which("pvcreate"):
        pytest.skip("needs root, losetup and lvm2")
    image = tmp_path / "pv.img"
    with open(image, "wb") as f:
        f.truncate(256 * MiB)
    try:
        dev = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                             text=True, check=True).stdout.strip()
    except subprocess.CalledProcessError as e:
        pytest.skip(f"no loop device available: {e.stderr.strip()}")
    yield dev
    vg = subprocess.run(["pvs", "--noheadings", "-o", "vg_name", dev], capture_output=True,
                        text=True, env=ENV).stdout.strip()
    if vg:    # a failed test left the VG behind
        subprocess.run(["vgremove", "-y", "-f", *([] if DM else ["--driverloaded", "n"]), vg],
                       capture_output=True, env=ENV)
    subprocess.run(["pvremove", "-y", dev], capture_output=True, env=ENV)
    subprocess.run(["losetup", "-d", dev], check=True)


@pytest.fixture
def lvm_sr(xapi, loop_device):
    host = xapi.host.get_all()[0]
    sr = xapi.SR.create(host, {"device": loop_device}, "0", "lvm", "", "lvm", "user", False,
                        {})
    yield sr, loop_device
    if xapi.SR.get_all_records().get(sr):
        for vdi in xapi.SR.get_VDIs(sr):
            try:
                xapi.VDI.destroy(vdi)
            except XenAPI.Failure:
                pass
        for pbd in xapi.SR.get_PBDs(sr):
            xapi.PBD.unplug(pbd)
        xapi.SR.destroy(sr)


def new_vdi(xapi, sr, size):
    return xapi.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                            "sharable": False, "read_only": False, "other_config": {},
                            "name_label": "lv"})


def test_sr_is_a_vg_and_vdis_are_lvs(xapi, lvm_sr):
    sr, dev = lvm_sr
    uuid = xapi.SR.get_uuid(sr)
    vg = f"VG_XenStorage-{uuid}"
    assert lvm("pvs", "--noheadings", "-o", "vg_name", dev).strip() == vg
    size = int(xapi.SR.get_physical_size(sr))
    assert 200 * MiB < size <= 256 * MiB
    vdi = new_vdi(xapi, sr, 10 * MiB)            # rounded up to 4 MiB extents
    vuuid = xapi.VDI.get_uuid(vdi)
    assert int(xapi.VDI.get_virtual_size(vdi)) == 12 * MiB
    out = lvm("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size", vg)
    assert out.split() == [f"LV-{vuuid}", str(12 * MiB)]
    assert int(xapi.SR.get_physical_utilisation(sr)) == 12 * MiB
    assert int(xapi.SR.get_virtual_allocation(sr)) == 12 * MiB
    xapi.VDI.resize(vdi, str(20 * MiB))
    assert int(xapi.VDI.get_virtual_size(vdi)) == 20 * MiB
    assert f"LV-{vuuid}" in lvm("lvs", "--noheadings", "-o", "lv_name", vg)
    err = failure(new_vdi, xapi, sr, 1 << 30)
    assert err[0] == "SR_FULL" and int(err[2]) == size - 20 * MiB
    xapi.VDI.destroy(vdi)
    assert lvm("lvs", "--noheadings", "-o", "lv_name", vg).strip() == ""
    assert int(xapi.SR.get_physical_utilisation(sr)) == 0


def test_scan_picks_up_lvs_made_behind_our_back(xapi, lvm_sr):
    sr, _ = lvm_sr
    vg = f"VG_XenStorage-{xapi.SR.get_uuid(sr)}"
    made = "5a1d8f3e-0000-4000-8000-00000000abcd"
    lvm("lvcreate", "-y", "-an", "-Zn", "-Wn", "-n", f"LV-{made}", "-L", "8m", vg)
    lvm("lvcreate", "-y", "-an", "-Zn", "-Wn", "-n", "not-ours", "-L", "4m", vg)
    xapi.SR.scan(sr)
    assert [xapi.VDI.get_uuid(v) for v in xapi.SR.get_VDIs(sr)] == [made]
    lvm("lvremove", "-y", f"{vg}/LV-{made}")
    lvm("lvremove", "-y", f"{vg}/not-ours")
    xapi.SR.scan(sr)
    assert xapi.SR.get_VDIs(sr) == []


def test_device_in_use_and_destroy(xapi, lvm_sr):
    sr, dev = lvm_sr
    host = xapi.host.get_all()[0]
    err = failure(xapi.SR.create, host, {"device": dev}, "0", "again", "", "lvm", "", False,
                  {})
    assert err[:2] == ["SR_BACKEND_FAILURE", "SR_DEVICE_IN_USE"]
    assert sum(1 for r in xapi.SR.get_all_records().values() if r["type"] == "lvm") == 1
    assert xapi.SR.get_uuid(sr) in xapi.SR.probe(host, {"device": dev}, "lvm", {})
    new_vdi(xapi, sr, 4 * MiB)
    xapi.PBD.unplug(xapi.SR.get_PBDs(sr)[0])
    xapi.SR.destroy(sr)
    assert lvm("pvs", "--noheadings", "-o", "pv_name").split().count(dev) == 0


def test_without_device_mapper_activation_and_snapshots_fail_cleanly(xapi, lvm_sr):
    if DM:
        pytest.skip("this kernel has device-mapper: see the activation tests")
    sr, _ = lvm_sr
    vdi = new_vdi(xapi, sr, 4 * MiB)
    err = failure(xapi.VDI.snapshot, vdi, {})
    assert err[0] == "SR_BACKEND_FAILURE" and "device-mapper" in err[3]
    err = failure(xapi.VDI.clone, vdi, {})       # needs both LVs active to copy
    assert err[0] == "SR_BACKEND_FAILURE" and "device-mapper" in err[3]
    assert xapi.SR.get_VDIs(sr) == [vdi]         # nothing half-made is recorded
    vg = f"VG_XenStorage-{xapi.SR.get_uuid(sr)}"
    assert len(lvm("lvs", "--noheadings", "-o", "lv_name", vg).split()) == 1


def test_snapshot_and_clone_with_device_mapper(xapi, lvm_sr):
    if not DM:
        print(f"SKIP: {NO_DM}")
        pytest.skip(NO_DM)
    sr, _ = lvm_sr
    vdi = new_vdi(xapi, sr, 8 * MiB)
    snap = xapi.VDI.snapshot(vdi, {})
    clone = xapi.VDI.clone(vdi, {})
    assert xapi.VDI.get_snapshot_of(snap) == vdi
    assert int(xapi.VDI.get_virtual_size(clone)) == 8 * MiB
    for ref in (snap, clone, vdi):
        xapi.VDI.destroy(ref)
