"""Checkpoints and the messages that act on a running guest, on one booted tiny guest
(tests/guest): VM.checkpoint keeps the guest running and records its memory; VM.revert
to it leaves the VM Suspended and VM.resume continues the guest from the checkpoint
(its tmpfs file and its disk as they were then, no new boot); send_sysrq, send_trigger,
VBD.unplug_force; VDI.revert with the disk's bytes checked; the xe snapshot commands."""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import XenAPI

from guest.harness import (MARK, block_devices, console, guest,  # noqa: F401 (fixtures)
                           guest_vm, real, run_in_guest, sdk, wait_booted,
                           wait_for)
from serverproc import ROOT_PASSWORD

pytestmark = pytest.mark.slow
MIB = 1 << 20
NULL = "OpaqueRef:NULL"


@pytest.fixture(scope="module")
def x(sdk):
    return sdk.xenapi


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
def booted(real, x, guest, sr):  # noqa: F811
    api = x
    vm = guest_vm(api, guest, "snapguest", args="guestshell")
    vbd(api, vm, disk(api, sr[0]))
    api.VM.start(vm, False, False)
    wait_booted(real, api, vm, timeout=180)   # the machine may be busy
    return vm


def in_guest(real, sdk, vm, command: str, expect: str) -> str:
    return run_in_guest(real, sdk.xenapi, sdk._session, vm, command, expect)


def test_checkpoint_revert_resume_continues_the_guest(real, sdk, x, booted, sr):
    vm = booted
    in_guest(real, sdk, vm, "echo before > /tmp/mark; echo DISKBEFORE | dd of=/dev/vda "
                 "conv=fsync 2>/dev/null; echo MARK1-$(cat /tmp/mark)", "MARK1-before")
    cp = x.VM.checkpoint(vm, "cp1")
    rec = x.VM.get_record(cp)
    assert x.VM.get_power_state(vm) == "Running"
    assert rec["power_state"] == "Suspended" and rec["is_a_snapshot"]
    assert rec["snapshot_of"] == vm and rec["snapshot_info"]["power-state-at-snapshot"] == "Running"
    assert rec["suspend_VDI"] != NULL and x.VDI.get_type(rec["suspend_VDI"]) == "suspend"
    assert int(x.VDI.get_virtual_size(rec["suspend_VDI"])) >= 32 * MIB   # a 128 MiB guest's memory
    assert cp in x.VM.get_snapshots(vm)
    # The guest runs on after the checkpoint and changes its file and disk.
    in_guest(real, sdk, vm, "echo after > /tmp/mark; echo DISKAFTER | dd of=/dev/vda "
                 "conv=fsync 2>/dev/null; echo MARK2-$(cat /tmp/mark)", "MARK2-after")

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
    in_guest(real, sdk, vm, "echo MARK3-$(cat /tmp/mark) $(head -c 10 /dev/vda)",
                 "MARK3-before DISKBEFORE")
    assert console(real, x, vm).count(MARK + "BOOTED") == boots   # no new boot
    assert all(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(vm))


def xe(real, *args) -> str:
    proc = subprocess.run([os.path.join(os.path.dirname(sys.executable), "xe"), "-s",
                           "127.0.0.1", "-p", str(real.port), "-pw", ROOT_PASSWORD,
                           "--no-verify", *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_xe_vm_checkpoint_and_snapshot_uninstall(real, x, booted):
    uuid = xe(real, "vm-checkpoint", "vm=snapguest", "new-name-label=cp-xe").strip()
    cp = x.VM.get_by_uuid(uuid)
    assert x.VM.get_snapshot_of(cp) == booted and x.VM.get_power_state(cp) == "Suspended"
    assert x.VM.get_power_state(booted) == "Running"
    memory = x.VM.get_suspend_VDI(cp)
    listed = xe(real, "snapshot-list", "snapshot-of=" + x.VM.get_uuid(booted),
                "params=name-label,power-state")
    assert "cp-xe" in listed and "suspended" in listed
    xe(real, "snapshot-uninstall", f"snapshot-uuid={uuid}", "--force")
    assert cp not in x.VM.get_all() and memory not in x.VDI.get_all()


def qemu_pid(x, vm) -> int:
    with open(f"/run/libvirt/qemu/xapi-{x.VM.get_uuid(vm)}.pid") as f:
        return int(f.read())


def test_restart_device_models_keeps_the_guest(real, sdk, x, booted):
    vm = booted
    in_guest(real, sdk, vm, "echo kept > /tmp/dm; echo DM1-$(cat /tmp/dm)", "DM1-kept")
    pid, boots = qemu_pid(x, vm), console(real, x, vm).count(MARK + "BOOTED")
    x.VM.restart_device_models(vm)
    assert x.VM.get_power_state(vm) == "Running"
    assert qemu_pid(x, vm) != pid   # a new QEMU process ...
    time.sleep(1)   # the domain's stop in between released nothing: its disks stay
    assert all(x.VBD.get_currently_attached(b) for b in x.VM.get_VBDs(vm))
    in_guest(real, sdk, vm, "echo DM2-$(cat /tmp/dm)", "DM2-kept")   # ... same guest
    assert console(real, x, vm).count(MARK + "BOOTED") == boots


def test_bios_strings_reach_the_firmware(real, x, guest):  # noqa: F811
    vm = guest_vm(x, guest, "biosguest")
    x.VM.set_bios_strings(vm, {"system-manufacturer": "ACME Corp", "system-serial-number":
                               "SN-77", "bios-vendor": "ACME BIOS"})
    x.VM.start(vm, False, False)
    try:
        with open(f"/proc/{qemu_pid(x, vm)}/cmdline", "rb") as f:
            argv = f.read().decode().split("\0")
        smbios = [argv[i + 1] for i, a in enumerate(argv) if a == "-smbios"]
        assert any("manufacturer=ACME Corp" in a and "serial=SN-77" in a for a in smbios), argv
        assert any("vendor=ACME BIOS" in a for a in smbios), smbios
        assert any("MS_VM_CERT" in a for a in smbios), smbios   # xapi's OEM strings
    finally:
        x.VM.hard_shutdown(vm)


def test_send_sysrq_and_triggers(real, x, booted):
    vm = booted
    start = len(console(real, x, vm))
    x.VM.send_sysrq(vm, "s")
    wait_for(lambda: "sysrq: Emergency Sync" in console(real, x, vm)[start:], 60, "sysrq s")
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
    # An unplug request the guest gets while it still probes the new disk is lost.
    wait_for(lambda: "vdb" in (block_devices(console(real, x, vm)) or []), 60, "vdb plugged")
    x.VBD.set_unpluggable(extra, False)
    with pytest.raises(XenAPI.Failure) as e:
        x.VBD.unplug(extra)
    assert e.value.details[0] == "VBD_NOT_UNPLUGGABLE"
    x.VBD.unplug_force(extra)
    assert not x.VBD.get_currently_attached(extra)
    wait_for(lambda: "vdb" not in block_devices(console(real, x, vm)), 30, "vdb gone")
    with pytest.raises(XenAPI.Failure) as e:
        x.VBD.unplug_force(extra)
    assert e.value.details == ["DEVICE_ALREADY_DETACHED", extra]


def test_resize_online_grows_the_disk_the_guest_sees(real, sdk, x, booted):
    vbd0 = next(v for v in x.VM.get_VBDs(booted) if x.VBD.get_userdevice(v) == "0")
    vdi = x.VBD.get_VDI(vbd0)
    size = int(x.VDI.get_virtual_size(vdi))
    x.VDI.resize_online(vdi, str(size + 16 * MIB))
    assert int(x.VDI.get_virtual_size(vdi)) == size + 16 * MIB
    sectors = (size + 16 * MIB) // 512
    in_guest(real, sdk, booted, "echo SIZE-$(cat /sys/block/vda/size)-END",
                 f"SIZE-{sectors}-END")
    with pytest.raises(XenAPI.Failure) as e:
        x.VDI.resize_online(vdi, str(MIB))   # no shrinking
    assert e.value.details[0] == "VDI_TOO_SMALL"


def qemu_io(path, command):
    return subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path],
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
