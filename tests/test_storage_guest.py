"""Disks in a real guest: the tiny Linux guest (tests/guest) under QEMU/TCG sees a
qcow2 VDI plugged at start, a disk hot-plugged and unplugged while it runs, and an
ISO inserted into and ejected from its CD drive. Same prerequisites as
test_vm_guest.py; fixtures from tests/guest/harness.py."""
import os
import re
import shutil
import subprocess
import tempfile

import pytest

from guest.harness import (block_devices, console, guest, make_vm, real,  # noqa: F401 (fixtures)
                           wait_booted, wait_for, x)

pytestmark = pytest.mark.slow   # boots real guests under QEMU: minutes; -m 'not slow' skips

MIB = 1 << 20
NULL = "OpaqueRef:NULL"


@pytest.fixture(scope="module")
def shared_dir():
    """QEMU runs as libvirt-qemu: images must sit in directories it can traverse."""
    path = tempfile.mkdtemp(prefix="xapi-py-storage-", dir="/var/tmp")
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def srs(real, shared_dir):
    x = real.session().xenapi
    host = x.host.get_all()[0]
    disks = os.path.join(shared_dir, "disks")
    isos = os.path.join(shared_dir, "isos")
    for d in (disks, isos, os.path.join(isos, "src")):
        os.makedirs(d, mode=0o755)
    with open(os.path.join(isos, "src", "hello.txt"), "w") as f:
        f.write("hello\n")
    subprocess.run(["genisoimage", "-quiet", "-V", "TESTCD1", "-o",
                    os.path.join(isos, "cd1.iso"), os.path.join(isos, "src")], check=True)
    file_sr = x.SR.create(host, {"path": disks}, "0", "guest disks", "", "file", "user",
                          False, {})
    iso_sr = x.SR.create(host, {"location": isos}, "0", "guest isos", "", "iso", "iso",
                         False, {})
    return file_sr, iso_sr


def media(text):
    lines = re.findall(r"XAPI-TEST-GUEST MEDIA sr0 (.*)", text)
    return lines[-1] if lines else None


def vbd(x, vm, vdi, kind="Disk", userdevice="0", empty=False):
    return x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": userdevice,
                         "bootable": kind == "Disk", "mode": "RW" if kind == "Disk" else "RO",
                         "type": kind, "empty": empty, "other_config": {},
                         "qos_algorithm_type": "", "qos_algorithm_params": {}})


def disk(x, sr, size=16 * MIB):
    return x.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {},
                         "name_label": "guest disk"})


def test_guest_sees_disks_and_cds(real, x, guest, srs):  # noqa: F811
    if not shutil.which("genisoimage"):
        pytest.skip("genisoimage not installed")
    file_sr, iso_sr = srs
    vm = make_vm(x, guest, "storage")
    boot_disk = disk(x, file_sr)
    vbd(x, vm, boot_disk)
    cd = vbd(x, vm, NULL, "CD", "3", empty=True)
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    wait_for(lambda: block_devices(console(real, x, vm)) is not None, 30, "BLOCK line")
    assert "vda" in block_devices(console(real, x, vm))

    # Hot-plug a second disk, then take it out again.
    extra = vbd(x, vm, disk(x, file_sr, 8 * MIB), userdevice="1")
    x.VBD.plug(extra)
    assert x.VBD.get_currently_attached(extra) and x.VBD.get_device(extra) == "vdb"
    wait_for(lambda: "vdb" in block_devices(console(real, x, vm)), 30, "hot-plugged vdb")
    x.VBD.unplug(extra)
    assert not x.VBD.get_currently_attached(extra)
    wait_for(lambda: "vdb" not in block_devices(console(real, x, vm)), 30, "vdb gone")

    # Insert the ISO into the running guest's CD drive, then eject it.
    iso = x.VDI.get_by_name_label("cd1.iso")[0]
    x.VBD.insert(cd, iso)
    wait_for(lambda: "label=TESTCD1" in (media(console(real, x, vm)) or ""), 30,
             "the CD in the guest")
    x.VBD.eject(cd)
    wait_for(lambda: media(console(real, x, vm)) == "empty", 30, "the CD ejected")

    x.VM.hard_shutdown(vm)
    wait_for(lambda: not x.VBD.get_currently_attached(x.VM.get_VBDs(vm)[0]), 10,
             "disks released")
    for ref in x.VM.get_VBDs(vm):
        vdi = x.VBD.get_VDI(ref)
        x.VBD.destroy(ref)
        if vdi != NULL:
            x.VDI.destroy(vdi)
    x.VM.destroy(vm)
