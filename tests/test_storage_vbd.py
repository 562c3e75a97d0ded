"""VBDs, ISO SRs and the VM side of storage, through the API against the real
server (libvirt's test driver: domains do not run a guest, so what is checked here
is the records and the images; tests/test_storage_guest.py boots a real one)."""
import os
import subprocess
import time

import pytest
from sdk_failures import failure

MiB = 1 << 20
NULL = "OpaqueRef:NULL"


def wait_for(predicate, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def vm(xapi):
    template = xapi.VM.get_by_name_label("Other install media")[0]
    ref = xapi.VM.clone(template, "storage-test")
    xapi.VM.provision(ref)
    xapi.VM.set_is_a_template(ref, False)
    yield ref
    if xapi.VM.get_power_state(ref) != "Halted":
        xapi.VM.hard_shutdown(ref)
    for vbd in xapi.VM.get_VBDs(ref):
        vdi = xapi.VBD.get_VDI(vbd)
        xapi.VBD.destroy(vbd)
        if vdi != NULL and xapi.SR.get_type(xapi.VDI.get_SR(vdi)) != "iso":
            xapi.VDI.destroy(vdi)
    xapi.VM.destroy(ref)


@pytest.fixture
def iso_sr(xapi, tmp_path):
    lib = tmp_path / "isos"
    (lib / "src").mkdir(parents=True)
    (lib / "src" / "hello.txt").write_text("hello\n")
    for name in ("one.iso", "two.iso"):
        subprocess.run(["genisoimage", "-quiet", "-o", str(lib / name), str(lib / "src")],
                       check=True)
    (lib / "notes.txt").write_text("not an iso")
    os.symlink("/etc/passwd", lib / "escape.iso")
    host = xapi.host.get_all()[0]
    sr = xapi.SR.create(host, {"location": str(lib)}, "0", "ISOs", "", "iso", "iso", False, {})
    yield sr, lib
    for pbd in xapi.SR.get_PBDs(sr):
        xapi.PBD.unplug(pbd)
    xapi.SR.forget(sr)


def local_sr(xapi):
    return xapi.pool.get_default_SR(xapi.pool.get_all()[0])


def new_disk(xapi, size=4 * MiB, sr=None):
    return xapi.VDI.create({"SR": sr or local_sr(xapi), "virtual_size": str(size),
                            "type": "user", "sharable": False, "read_only": False,
                            "other_config": {}, "name_label": "d"})


def vbd_rec(vm, vdi, kind="Disk", mode="RW", empty=False, userdevice="autodetect"):
    return {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": kind == "Disk",
            "mode": mode, "type": kind, "empty": empty, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}}


def test_iso_sr_lists_isos_read_only(xapi, iso_sr):
    sr, lib = iso_sr
    vdis = {xapi.VDI.get_location(v): xapi.VDI.get_record(v) for v in xapi.SR.get_VDIs(sr)}
    assert set(vdis) == {"one.iso", "two.iso"}          # not notes.txt, not the escape
    one = vdis["one.iso"]
    assert one["read_only"] and one["name_label"] == "one.iso"
    assert int(one["virtual_size"]) == os.path.getsize(lib / "one.iso")
    assert xapi.SR.get_content_type(sr) == "iso"
    assert failure(xapi.VDI.create, {"SR": sr, "virtual_size": str(MiB), "type": "user",
                                     "sharable": False, "read_only": True,
                                     "other_config": {}}) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    ref = xapi.VDI.get_by_uuid(one["uuid"])
    assert failure(xapi.VDI.destroy, ref) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    os.unlink(lib / "two.iso")
    subprocess.run(["genisoimage", "-quiet", "-o", str(lib / "three.iso"), str(lib / "src")],
                   check=True)
    xapi.SR.scan(sr)
    assert {xapi.VDI.get_location(v) for v in xapi.SR.get_VDIs(sr)} == {"one.iso", "three.iso"}
    assert os.path.exists(lib / "one.iso")   # forgetting the SR never deletes ISOs


def test_vbd_create_checks(xapi, vm):
    disk = new_disk(xapi)
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    rec = xapi.VBD.get_record(vbd)
    assert rec["userdevice"] == "0" and not rec["currently_attached"]
    assert vbd in xapi.VDI.get_VBDs(disk) and vbd in xapi.VM.get_VBDs(vm)
    assert failure(xapi.VBD.create, vbd_rec(vm, disk, userdevice="0")) == [
        "DEVICE_ALREADY_EXISTS", "0"]
    assert failure(xapi.VBD.create, vbd_rec(vm, disk, userdevice="99"))[0] == \
        "ILLEGAL_VBD_DEVICE"
    assert failure(xapi.VBD.create, vbd_rec(vm, NULL, "CD", "RW", True)) == [
        "VBD_CDS_MUST_BE_READONLY"]
    assert failure(xapi.VBD.create, vbd_rec(vm, NULL, "Disk", "RW", True))[0] == \
        "VBD_NOT_REMOVABLE_MEDIA"
    xapi.VDI.set_read_only(disk, True)
    assert failure(xapi.VBD.create, vbd_rec(vm, disk)) == ["VDI_READONLY", disk]
    xapi.VDI.set_read_only(disk, False)
    assert failure(xapi.VBD.plug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(xapi.VBD.unplug, vbd) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
    assert failure(xapi.VBD.eject, vbd) == ["VBD_NOT_REMOVABLE_MEDIA", vbd]
    xapi.VBD.assert_attachable(vbd)


def test_cd_insert_eject(xapi, vm, iso_sr):
    sr, _ = iso_sr
    iso = xapi.VDI.get_by_name_label("one.iso")[0]
    cd = xapi.VBD.create(vbd_rec(vm, NULL, "CD", "RO", True, "3"))
    assert failure(xapi.VBD.eject, cd) == ["VBD_IS_EMPTY", cd]
    xapi.VBD.insert(cd, iso)
    assert (xapi.VBD.get_VDI(cd), xapi.VBD.get_empty(cd)) == (iso, False)
    assert failure(xapi.VBD.insert, cd, iso) == ["VBD_NOT_EMPTY", cd]
    xapi.VBD.eject(cd)
    assert (xapi.VBD.get_VDI(cd), xapi.VBD.get_empty(cd)) == (NULL, True)


def test_disks_attached_while_running(xapi, vm):
    disk = new_disk(xapi)
    vbd = xapi.VBD.create(vbd_rec(vm, disk))
    xapi.VM.start(vm, False, False)
    rec = xapi.VBD.get_record(vbd)
    assert rec["currently_attached"] and rec["device"] == "vda"
    assert failure(xapi.VDI.destroy, disk) == ["VDI_IN_USE", disk, "destroy"]
    assert failure(xapi.VDI.resize, disk, str(8 * MiB)) == ["VDI_IN_USE", disk, "resize"]
    assert failure(xapi.VBD.plug, vbd) == ["DEVICE_ALREADY_ATTACHED", vbd]
    pbd = xapi.SR.get_PBDs(local_sr(xapi))[0]
    assert failure(xapi.PBD.unplug, pbd) == ["VDI_IN_USE", disk]
    # A second VM may not write to the same non-sharable disk.
    template = xapi.VM.get_by_name_label("Other install media")[0]
    other = xapi.VM.clone(template, "other")
    xapi.VM.set_is_a_template(other, False)
    xapi.VBD.create(vbd_rec(other, disk))
    assert failure(xapi.VM.start, other, False, False) == ["VDI_IN_USE", disk, "attach"]
    assert xapi.VM.get_power_state(other) == "Halted"
    for v in xapi.VM.get_VBDs(other):
        xapi.VBD.destroy(v)
    xapi.VM.destroy(other)
    # A live snapshot is a full copy (the image is open), data and all.
    snap = xapi.VDI.snapshot(disk, {})
    assert xapi.VDI.get_snapshot_of(snap) == disk
    xapi.VDI.destroy(snap)
    xapi.VM.hard_shutdown(vm)
    assert wait_for(lambda: not xapi.VBD.get_currently_attached(vbd))
    xapi.VDI.resize(disk, str(8 * MiB))


def test_vm_clone_copy_snapshot_take_the_disks(xapi, vm, tmp_path):
    disk = new_disk(xapi)
    xapi.VBD.create(vbd_rec(vm, disk))
    host = xapi.host.get_all()[0]
    other_sr = xapi.SR.create(host, {"path": str(tmp_path / "o")}, "0", "o", "", "file", "",
                              False, {})
    made = []
    try:
        clone = xapi.VM.clone(vm, "clone")
        made.append(clone)
        copy = xapi.VM.copy(vm, "copy", other_sr)
        made.append(copy)
        snap = xapi.VM.snapshot(vm, "snap")
        made.append(snap)
        vdi_of = {v: xapi.VBD.get_VDI(xapi.VM.get_VBDs(v)[0]) for v in made}
        assert len({disk, *vdi_of.values()}) == 4
        assert xapi.VDI.get_SR(vdi_of[clone]) == local_sr(xapi)
        assert xapi.VDI.get_SR(vdi_of[copy]) == other_sr
        assert xapi.VDI.get_snapshot_of(vdi_of[snap]) == disk
        assert xapi.VBD.get_userdevice(xapi.VM.get_VBDs(copy)[0]) == "0"
    finally:
        for v in made:
            for vbd in xapi.VM.get_VBDs(v):
                vdi = xapi.VBD.get_VDI(vbd)
                xapi.VBD.destroy(vbd)
                xapi.VDI.destroy(vdi)
            xapi.VM.destroy(v)
        xapi.PBD.unplug(xapi.SR.get_PBDs(other_sr)[0])
        xapi.SR.destroy(other_sr)


def test_provision_makes_template_disks(xapi):
    template = xapi.VM.get_by_name_label("Other install media")[0]
    vm = xapi.VM.clone(template, "prov")
    xapi.VM.set_other_config(vm, {"disks": '<provision><disk device="0" size="5242880" '
                                           'sr="" bootable="true" type="system"/></provision>'})
    xapi.VM.provision(vm)
    vbds = xapi.VM.get_VBDs(vm)
    assert len(vbds) == 1
    vdi = xapi.VBD.get_VDI(vbds[0])
    assert xapi.VDI.get_virtual_size(vdi) == str(5 * MiB)
    assert xapi.VDI.get_SR(vdi) == local_sr(xapi) and xapi.VBD.get_bootable(vbds[0])
    xapi.VBD.destroy(vbds[0])
    xapi.VDI.destroy(vdi)
    xapi.VM.destroy(vm)
