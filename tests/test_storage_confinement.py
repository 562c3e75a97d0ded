"""Files and images a VM may reach (issue 12, items 15-17), through the real server on
libvirt's test driver (the checks are the server's; no guest needs to run):

* boot files (PV_kernel / PV_ramdisk) only from the folders the admin allows, checked
  on set and again at start (symlinks and `..` resolved);
* qcow2 images with an external data file are never opened: not scanned, introduced,
  attached or copied (from or into);
* a CD drive takes only media that may be shared read-only: another VM's disk in use
  read-write is VDI_IN_USE.
"""
import os
import shutil
import subprocess
import uuid

import pytest

from serverproc import ServerProcess
from sdk_failures import failure

MiB = 1 << 20
NULL = "OpaqueRef:NULL"

pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs qemu-img")


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("confinement")


@pytest.fixture(scope="module")
def boot_dir(work):
    path = work / "boot"
    path.mkdir()
    (path / "vmlinuz").write_bytes(b"not really a kernel")
    return path


@pytest.fixture(scope="module")
def server(work, boot_dir):
    proc = ServerProcess(str(work / "data"), env={"XAPI_BOOT_DIRS": str(boot_dir)}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def x(server):
    return server.session().xenapi


@pytest.fixture(scope="module")
def sr(x, work):
    """A file SR in a folder of the test's own, so images can be put there by hand."""
    host = x.host.get_all()[0]
    ref = x.SR.create(host, {"path": str(work / "sr")}, "0", "confined", "", "file", "",
                      False, {})
    return ref, work / "sr"


def new_vm(x, name):
    vm = x.VM.clone(x.VM.get_by_name_label("Other install media")[0], name)
    x.VM.set_is_a_template(vm, False)
    return vm


def new_disk(x, sr, size=MiB, read_only=False):
    return x.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                         "sharable": False, "read_only": read_only, "other_config": {},
                         "name_label": "d"})


def vbd(x, vm, vdi, kind="Disk", empty=False, userdevice="autodetect"):
    return x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": userdevice,
                         "bootable": False, "mode": "RW" if kind == "Disk" else "RO",
                         "type": kind, "empty": empty, "other_config": {},
                         "qos_algorithm_type": "", "qos_algorithm_params": {}})


def data_file_image(image, data_file, content: bytes):
    """A qcow2 image whose guest data is the host file `data_file`."""
    if os.path.exists(image):
        os.unlink(image)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o",
                    f"data_file={data_file},data_file_raw=on", str(image), str(MiB)],
                   check=True)
    with open(data_file, "wb") as f:
        f.write(content.ljust(MiB, b"\0"))


# -- item 15: boot files --------------------------------------------------------------

def test_boot_files_only_from_allowed_folders(x, boot_dir, work):
    vm = new_vm(x, "boot files")
    kernel = str(boot_dir / "vmlinuz")
    os.symlink("/etc/passwd", boot_dir / "escape")
    for field, path in (("PV_kernel", "/etc/shadow"),
                        ("PV_ramdisk", f"{boot_dir}/../../../etc/passwd"),
                        ("PV_kernel", str(boot_dir / "escape")),   # a symlink out
                        ("PV_ramdisk", "vmlinuz")):                # not absolute
        error = failure(getattr(x.VM, f"set_{field}"), vm, path)
        assert error[:3] == ["INVALID_VALUE", field[3:].lower(), path], error
    assert x.VM.get_PV_kernel(vm) == "" and x.VM.get_PV_ramdisk(vm) == ""
    x.VM.set_PV_kernel(vm, kernel)
    x.VM.set_PV_ramdisk(vm, "")
    assert x.VM.get_PV_kernel(vm) == kernel
    # VM.create is held to the same rule as the setters.
    rec = x.VM.get_record(vm)
    for key in ("uuid", "allowed_operations", "current_operations", "power_state"):
        rec.pop(key, None)
    rec.update(name_label="created", is_a_template=False, PV_kernel="/etc/shadow")
    assert failure(x.VM.create, rec)[:3] == ["INVALID_VALUE", "kernel", "/etc/shadow"]
    x.VM.destroy(vm)


def test_boot_files_checked_again_at_start(x, boot_dir):
    """A symlink that pointed inside when it was set may point outside at start."""
    vm = new_vm(x, "swapped link")
    link = boot_dir / "current"
    os.symlink(boot_dir / "vmlinuz", link)
    x.VM.set_PV_kernel(vm, str(link))
    x.VM.start(vm, False, False)           # allowed while it points inside
    x.VM.hard_shutdown(vm)
    os.unlink(link)
    os.symlink("/etc/shadow", link)
    error = failure(x.VM.start, vm, False, False)
    assert error[:3] == ["INVALID_VALUE", "kernel", str(link)], error
    assert x.VM.get_power_state(vm) == "Halted"
    os.unlink(link)
    x.VM.destroy(vm)


# -- item 16: qcow2 images with an external data file ------------------------------------

def test_data_file_images_are_never_scanned_or_introduced(x, sr, work):
    sr_ref, folder = sr
    secret = work / "secret.bin"
    location = str(uuid.uuid4())
    data_file_image(folder / f"{location}.qcow2", secret, b"TOP SECRET")
    os.chmod(secret, 0o600)
    x.SR.scan(sr_ref)
    assert location not in {x.VDI.get_location(v) for v in x.SR.get_VDIs(sr_ref)}
    error = failure(x.VDI.introduce, "", "sneaky", "", sr_ref, "user", False, False, {},
                    location, {}, {}, True, "0", "0", NULL, False, "19700101T00:00:00Z", NULL)
    assert error[0] == "SR_BACKEND_FAILURE" and "data file" in error[-1], error
    os.unlink(folder / f"{location}.qcow2")


def test_data_file_images_are_never_attached_or_copied(x, sr, work):
    """A VDI whose image became a data-file image (replaced behind our back) is
    neither read (VDI.copy from it, VM.start) nor written (VDI.copy into it)."""
    sr_ref, folder = sr
    source, victim_vdi = new_disk(x, sr_ref), new_disk(x, sr_ref)
    victim = work / "host-file.bin"
    data_file_image(folder / f"{x.VDI.get_location(victim_vdi)}.qcow2", victim, b"HOST DATA")
    before = victim.read_bytes()
    error = failure(x.VDI.copy, source, NULL, NULL, victim_vdi)
    assert error[0] == "SR_BACKEND_FAILURE" and "data file" in error[-1], error
    assert victim.read_bytes() == before                  # the host file is untouched
    error = failure(x.VDI.copy, victim_vdi, sr_ref, NULL, NULL)
    assert error[0] == "SR_BACKEND_FAILURE" and "data file" in error[-1], error
    assert len(x.SR.get_VDIs(sr_ref)) == 2                # no half-made copy is left
    assert failure(x.VDI.update, victim_vdi)[0] == "SR_BACKEND_FAILURE"
    vm = new_vm(x, "data file")
    vbd(x, vm, victim_vdi)
    assert failure(x.VM.start, vm, False, False)[0] == "SR_BACKEND_FAILURE"
    assert x.VM.get_power_state(vm) == "Halted"
    x.VM.destroy(vm)
    x.VDI.destroy(source)
    x.VDI.destroy(victim_vdi)       # removes the image; the data file stays untouched
    assert victim.read_bytes() == before


# -- item 17: what goes into a CD drive ---------------------------------------------------

def test_cd_drive_refuses_a_disk_written_elsewhere(x, sr):
    """(The test driver cannot change a running domain's media: the CD's VM is halted
    while media go in; the rule is about the disk's other users either way.)"""
    sr_ref, _ = sr
    owner, other = new_vm(x, "disk owner"), new_vm(x, "cd reader")
    disk = new_disk(x, sr_ref)
    vbd(x, owner, disk)
    cd = vbd(x, other, NULL, "CD", empty=True, userdevice="3")
    x.VM.start(owner, False, False)        # the disk is now attached read-write
    assert failure(x.VBD.insert, cd, disk) == ["VDI_IN_USE", disk, "insert"]
    assert x.VBD.get_empty(cd) and x.VBD.get_VDI(cd) == NULL
    # Nor through a new CD drive.
    error = failure(x.VBD.create, {"VM": other, "VDI": disk, "userdevice": "2",
                                   "bootable": False, "mode": "RO", "type": "CD",
                                   "empty": False, "other_config": {},
                                   "qos_algorithm_type": "", "qos_algorithm_params": {}})
    assert error == ["VDI_IN_USE", disk, "insert"]
    # Read-only media may be shared: a read-only VDI goes in while the disk is busy.
    shared = new_disk(x, sr_ref, read_only=True)
    x.VBD.insert(cd, shared)
    x.VBD.eject(cd)
    # Once nobody writes to it, the disk may go in; while the CD holds it in a running
    # VM, its owner may not write to it.
    x.VM.hard_shutdown(owner)
    x.VBD.insert(cd, disk)
    x.VM.start(other, False, False)
    assert failure(x.VM.start, owner, False, False) == ["VDI_IN_USE", disk, "attach"]
    x.VM.hard_shutdown(other)
    x.VBD.eject(cd)
    x.VM.start(owner, False, False)
    x.VM.hard_shutdown(owner)
    for vm in (owner, other):
        for ref in x.VM.get_VBDs(vm):
            x.VBD.destroy(ref)
        x.VM.destroy(vm)
    x.VDI.destroy(disk)
    x.VDI.destroy(shared)
