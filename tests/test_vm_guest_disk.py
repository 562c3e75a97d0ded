"""The first VM with a disk starts under qemu:///system whatever the data dir (issue 12,
item 1). QEMU runs as libvirt-qemu there and must search every folder above a disk
image; a data dir below a private (0700) folder, as mkdtemp makes, used to fail with
libvirt's "Cannot access storage file ... Permission denied".

The tiny guest (tests/guest) boots with a VDI of the server's own local SR and lists
the disk on its console. With qemu_search_fix = "refuse" the server names the folder
instead. Same prerequisites as test_vm_guest.py; fixtures from tests/guest/harness.py."""
import os
import pwd
import shutil
import stat
import subprocess
import tempfile

import pytest
import XenAPI

from serverproc import ServerProcess
from guest.harness import (URI, block_devices, console, guest, make_vm,  # noqa: F401 (fixture)
                           wait_booted, wait_for)

pytestmark = pytest.mark.slow   # boots real guests under QEMU: minutes; -m 'not slow' skips

MIB = 1 << 20
NULL = "OpaqueRef:NULL"


@pytest.fixture
def private_parent():
    """A folder only root may enter (mkdtemp makes it 0700), to hold the data dir."""
    path = tempfile.mkdtemp(prefix="xapi-py-private-")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_server():
    started = []

    def start(data_dir, **env):
        proc = ServerProcess(data_dir, libvirt_uri=URI, env=env).start()
        started.append(proc)
        return proc
    yield start
    for proc in started:
        proc.remove_vms_and_kill()


def disk_on_local_sr(x, vm):
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(16 * MIB), "type": "system",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "first disk"})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    return sr, vdi


def test_first_vm_with_a_disk_starts_below_a_private_folder(guest, private_parent,  # noqa: F811
                                                            start_server):
    real = start_server(os.path.join(private_parent, "data"))
    x = real.session().xenapi
    vm = make_vm(x, guest, "first disk")
    disk_on_local_sr(x, vm)
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    wait_for(lambda: "vda" in (block_devices(console(real, x, vm)) or []), 30,
             "the disk on the guest's console")
    # QEMU's user (alone) was given search permission on the private folder; nobody
    # else may enter it and its listing stays private.
    qemu_uid = pwd.getpwnam("libvirt-qemu").pw_uid
    acl = subprocess.run(["getfacl", "-n", "-p", private_parent], capture_output=True,
                         text=True, check=True).stdout
    assert f"user:{qemu_uid}:--x" in acl.splitlines(), acl
    assert stat.S_IMODE(os.stat(private_parent).st_mode) & 0o007 == 0
    x.VM.hard_shutdown(vm)


def test_refuse_names_the_folder_that_blocks(guest, private_parent, start_server):  # noqa: F811
    real = start_server(os.path.join(private_parent, "data"),
                        XAPI_QEMU_SEARCH_FIX="refuse")
    x = real.session().xenapi
    vm = make_vm(x, guest, "blocked disk")
    disk_on_local_sr(x, vm)
    with pytest.raises(XenAPI.Failure) as info:
        x.VM.start(vm, False, False)
    code, status, _, message = info.value.details
    assert (code, status) == ("SR_BACKEND_FAILURE", "EACCES")
    assert f"may not search the folder {private_parent}," in message, message
    assert "setfacl -m u:libvirt-qemu:x" in message, message
    assert x.VM.get_power_state(vm) == "Halted"
    # sr-create says it at once, and leaves nothing behind.
    host = x.host.get_all()[0]
    folder = os.path.join(private_parent, "more-disks")
    with pytest.raises(XenAPI.Failure) as info:
        x.SR.create(host, {"path": folder}, "0", "blocked", "", "file", "", False, {})
    assert info.value.details[:2] == ["SR_BACKEND_FAILURE", "EACCES"]
    assert private_parent in info.value.details[3]
    assert not os.path.exists(folder)
    assert x.SR.get_by_name_label("blocked") == []
