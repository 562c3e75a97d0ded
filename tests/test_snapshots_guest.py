"""Checkpoints and the messages that act on a running guest, on one booted tiny guest
(tests/guest): VM.checkpoint keeps the guest running and records its memory; VM.revert
to it leaves the VM Suspended and VM.resume continues the guest from the checkpoint
(its tmpfs file and its disk as they were then, no new boot); send_sysrq, send_trigger,
VBD.unplug_force; VDI.revert with the disk's bytes checked; the xe snapshot commands."""
import os
import shutil
import subprocess
import tempfile
import time

import libvirt
import pytest
import XenAPI

from guest.harness import (URI, MARK, console, guest, guest_vm, real,  # noqa: F401 (fixtures)
                           wait_booted, wait_for, x)

pytestmark = pytest.mark.slow
MIB = 1 << 20
NULL = "OpaqueRef:NULL"


@pytest.fixture(scope="module")
def sr(real):
    path = tempfile.mkdtemp(prefix="xapi-py-snap-", dir="/var/tmp")
    os.chmod(path, 0o755)
    api = real.session().xenapi
    host = api.host.get_all()[0]
    ref = api.SR.create(host, {"path": path}, "0", "snapshot disks", "", "file", "user",
                        False, {})
    api.pool.set_default_SR(api.pool.get_all()[0], ref)
    yield ref, path
    shutil.rmtree(path, ignore_errors=True)


def disk(x, sr_ref, size=16 * MIB, name="disk"):
    return x.VDI.create({"SR": sr_ref, "virtual_size": str(size), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {},
                         "name_label": name})


def vbd(x, vm, vdi, userdevice="0"):
    return x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": True,
                         "mode": "RW", "type": "Disk", "empty": False,
                         "other_config": {"owner": ""}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})


@pytest.fixture(scope="module")
def booted(real, guest, sr):  # noqa: F811
    api = real.session().xenapi
    vm = guest_vm(api, guest, "snapguest", args="guestshell")
    vbd(api, vm, disk(api, sr[0]))
    api.VM.start(vm, False, False)
    wait_booted(real, api, vm)
    return vm


def type_line(api, vm, line: str):
    """Type a shell line on the guest's serial console (its guestshell)."""
    conn = libvirt.open(URI)
    try:
        dom = conn.lookupByUUIDString(api.VM.get_uuid(vm))
        stream = conn.newStream(0)
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        stream.send((line + "\n").encode())
        time.sleep(0.3)
        stream.finish()
    finally:
        conn.close()


def say(real, api, vm, command: str, expect: str, timeout=30):
    """Run `command` in the guest and wait for `expect` to appear after this point."""
    start = len(console(real, api, vm))
    type_line(api, vm, command)
    wait_for(lambda: expect in console(real, api, vm)[start:], timeout, expect)


def test_checkpoint_revert_resume_continues_the_guest(real, x, booted, sr):
    vm = booted
    say(real, x, vm, "echo before > /tmp/mark; echo DISKBEFORE | dd of=/dev/vda conv=fsync "
        "2>/dev/null; echo MARK1-$(cat /tmp/mark)", "MARK1-before")
    cp = x.VM.checkpoint(vm, "cp1")
    rec = x.VM.get_record(cp)
    assert x.VM.get_power_state(vm) == "Running"
    assert rec["power_state"] == "Suspended" and rec["is_a_snapshot"]
    assert rec["snapshot_of"] == vm and rec["snapshot_info"]["power-state-at-snapshot"] == "Running"
    assert rec["suspend_VDI"] != NULL and x.VDI.get_type(rec["suspend_VDI"]) == "suspend"
    assert x.VDI.get_virtual_size(rec["suspend_VDI"]) >= 32 * MIB   # a 128 MiB guest's memory
    assert cp in x.VM.get_snapshots(vm)
    # The guest runs on after the checkpoint and changes its file and disk.
    say(real, x, vm, "echo after > /tmp/mark; echo DISKAFTER | dd of=/dev/vda conv=fsync "
        "2>/dev/null; echo MARK2-$(cat /tmp/mark)", "MARK2-after")

    x.VM.revert(cp)
    assert x.VM.get_power_state(vm) == "Suspended"
    memory = x.VM.get_suspend_VDI(vm)
    assert memory not in (NULL, rec["suspend_VDI"])
    time.sleep(6)   # a full re-read of the hypervisor (every 5 s) keeps it Suspended
    assert x.VM.get_power_state(vm) == "Suspended"

    boots = console(real, x, vm).count(MARK + "BOOTED")
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_suspend_VDI(vm) == NULL and memory not in x.VDI.get_all()
    # The guest continues from the checkpoint: its tmpfs and its disk as they were then.
    say(real, x, vm, "echo MARK3-$(cat /tmp/mark) $(head -c 10 /dev/vda)",
        "MARK3-before DISKBEFORE")
    assert console(real, x, vm).count(MARK + "BOOTED") == boots   # no new boot
    assert all(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(vm))


def test_send_sysrq_and_triggers(real, x, booted):
    vm = booted
    start = len(console(real, x, vm))
    x.VM.send_sysrq(vm, "s")
    wait_for(lambda: "sysrq: Emergency Sync" in console(real, x, vm)[start:], 20, "sysrq s")
    for bad in ("", "ss", "!"):
        with pytest.raises(XenAPI.Failure) as e:
            x.VM.send_sysrq(vm, bad)
        assert e.value.details == ["INVALID_VALUE", "key", bad]
    x.VM.send_trigger(vm, "nmi")
    wait_for(lambda: "NMI" in console(real, x, vm)[start:], 20, "the NMI in the guest")
    with pytest.raises(XenAPI.Failure) as e:
        x.VM.send_trigger(vm, "sleepy")
    assert e.value.details == ["INVALID_VALUE", "trigger", "sleepy"]


def test_unplug_force_of_a_disk_not_unpluggable(real, x, booted, sr):
    vm = booted
    extra = vbd(x, vm, disk(x, sr[0], 8 * MIB, "extra"), userdevice="1")
    x.VBD.plug(extra)
    x.VBD.set_unpluggable(extra, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VBD.unplug(extra)
    assert e.value.details[0] == "VBD_NOT_UNPLUGGABLE"
    x.VBD.unplug_force(extra)
    assert not x.VBD.get_currently_attached(extra)
    with pytest.raises(XenAPI.Failure) as e:
        x.VBD.unplug_force(extra)
    assert e.value.details == ["DEVICE_ALREADY_DETACHED", extra]


def qemu_io(path, command):
    return subprocess.run(["qemu-io", "-f", "qcow2", "-U", "-c", command, path],
                          capture_output=True, text=True, check=True).stdout


def test_vdi_revert_puts_the_snapshot_bytes_back(real, x, sr):
    sr_ref, path = sr
    vdi = disk(x, sr_ref, 4 * MIB, "revert me")
    file = os.path.join(path, x.VDI.get_location(vdi) + ".qcow2")
    qemu_io(file, "write -P 0xaa 0 1M")
    snap = x.VDI.snapshot(vdi, {})
    qemu_io(file, "write -P 0xbb 0 1M")
    x.VDI.resize(vdi, str(8 * MIB))
    uuid = x.VDI.get_uuid(vdi)
    x.VDI.revert(snap)
    assert x.VDI.get_uuid(vdi) == uuid and x.VDI.get_virtual_size(vdi) == str(4 * MIB)
    assert "Pattern verification failed" not in qemu_io(file, "read -P 0xaa 0 1M")
    assert snap in x.VDI.get_all()   # the snapshot stays
    with pytest.raises(XenAPI.Failure) as e:
        x.VDI.revert(vdi)   # not a snapshot
    assert e.value.details[0] == "OPERATION_NOT_ALLOWED"
