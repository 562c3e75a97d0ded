"""The real thing: the tiny Linux guest (tests/guest) under QEMU/TCG on qemu:///system,
driven through the API, and changed behind our back with virsh.

Needs root, libvirtd (started here with scripts/libvirt-setup.sh when it is not
running), qemu-system-x86, busybox-static and linux-image-cloud-amd64."""
import os
import time

import pytest

from guest.harness import (console, guest, make_vm, real, virsh,  # noqa: F401 (fixtures)
                           wait_booted, wait_for, wait_state, x)
from serverproc import ServerProcess

pytestmark = pytest.mark.slow   # boots real guests under QEMU: minutes; -m 'not slow' skips

MIB = 1 << 20


def test_start_console_and_acpi_shutdown(real, x, guest):
    vm = make_vm(x, guest, "acpi")
    x.VM.start(vm, False, False)
    rec = x.VM.get_record(vm)
    assert rec["power_state"] == "Running" and int(rec["domid"]) > 0
    wait_booted(real, x, vm)
    assert x.VM_metrics.get_memory_actual(rec["metrics"]) == str(128 * MIB)
    task = x.Async.VM.clean_shutdown(vm)
    wait_for(lambda: x.task.get_status(task) != "pending", 60, "clean_shutdown")
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    assert x.VM.get_power_state(vm) == "Halted"
    assert "XAPI-TEST-GUEST POWEROFF" in console(real, x, vm)  # the guest acted on ACPI


def test_reboot_pause_suspend_resume_hard_shutdown(real, x, guest):
    vm = make_vm(x, guest, "cycle")
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    x.VM.clean_reboot(vm)
    wait_booted(real, x, vm, count=2)
    assert x.VM.get_power_state(vm) == "Running"
    x.VM.pause(vm)
    assert virsh("domstate", f"xapi-{x.VM.get_uuid(vm)}").strip() == "paused"
    x.VM.unpause(vm)
    x.VM.suspend(vm)
    assert x.VM.get_power_state(vm) == "Suspended"
    assert virsh("domstate", f"xapi-{x.VM.get_uuid(vm)}").strip() == "shut off"
    x.VM.resume(vm, False, False)
    assert x.VM.get_power_state(vm) == "Running"
    # Restored, not rebooted: the guest goes on from where it was.
    time.sleep(1)
    assert console(real, x, vm).count("XAPI-TEST-GUEST BOOTED") == 2
    x.VM.hard_reboot(vm)
    wait_booted(real, x, vm, count=3)
    x.VM.hard_shutdown(vm)
    assert x.VM.get_power_state(vm) == "Halted"


def test_clone_and_start_the_clone(real, x, guest):
    vm = make_vm(x, guest, "original")
    copy = x.VM.clone(vm, "the clone")
    assert x.VM.get_PV_kernel(copy) == guest["kernel"]
    assert x.VM.get_uuid(copy) != x.VM.get_uuid(vm)
    x.VM.start(copy, False, False)
    wait_booted(real, x, copy)
    assert console(real, x, vm) == ""          # only the clone ran
    x.VM.hard_shutdown(copy)


def test_changes_behind_our_back_show_within_a_second(real, x, guest):
    vm = make_vm(x, guest, "behind")
    name = f"xapi-{x.VM.get_uuid(vm)}"
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    for command, state in (("suspend", "Paused"), ("resume", "Running")):
        virsh(command, name)
        wait_state(x, vm, state, 1.0)
    virsh("destroy", name)
    wait_state(x, vm, "Halted", 1.0)
    assert x.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    virsh("start", name)
    wait_state(x, vm, "Running", 1.0)
    assert int(x.VM.get_domid(vm)) > 0
    wait_booted(real, x, vm, count=2)
    virsh("shutdown", name)                     # the guest powers itself off via ACPI
    wait_for(lambda: virsh("domstate", name).strip() == "shut off", 60, "guest poweroff")
    wait_state(x, vm, "Halted", 1.0)
    # Each change behind our back was also told to the administrator as a message.
    told = [m["name"] for m in x.message.get("VM", x.VM.get_uuid(vm),
                                              "19700101T00:00:00Z").values()]
    assert {"VM_PAUSED", "VM_STARTED", "VM_SHUTDOWN"} <= set(told), told


def test_foreign_domains_are_left_alone(real, x, guest):
    """A domain without our metadata is neither listed, changed nor undefined."""
    uuid = "0badc0de-0000-4000-8000-000000000001"
    xml = (f"<domain type='qemu'><name>not-ours</name><uuid>{uuid}</uuid>"
           f"<memory unit='MiB'>64</memory><os><type arch='x86_64'>hvm</type>"
           f"<kernel>{guest['kernel']}</kernel></os></domain>")
    path = os.path.join(real.data_dir, "foreign.xml")
    with open(path, "w") as f:
        f.write(xml)
    virsh("define", path)
    try:
        time.sleep(0.5)
        assert not any(r["uuid"] == uuid for r in x.VM.get_all_records().values())
        assert "not-ours" in virsh("list", "--all", "--name")
    finally:
        virsh("undefine", "not-ours", check=False)


def test_restart_matches_libvirt(real, x, guest):
    """While the server is down, one VM is stopped and another started with virsh:
    after the restart both records say what libvirt says."""
    a, b = make_vm(x, guest, "was running"), make_vm(x, guest, "was halted")
    x.VM.start(a, False, False)
    x.VM.start(b, False, False)
    x.VM.hard_shutdown(b)                        # b is defined but halted
    name_a, name_b = (f"xapi-{x.VM.get_uuid(v)}" for v in (a, b))
    real.kill()
    virsh("destroy", name_a)
    virsh("start", name_b)
    real.start()
    x = real.session().xenapi
    assert x.VM.get_power_state(a) == "Halted"
    assert x.VM.get_power_state(b) == "Running"
    assert x.VM.get_resident_on(b) == x.host.get_all()[0]
    x.VM.hard_shutdown(b)


def test_embedded_driver_without_daemon_connection(guest, tmp_path):
    """qemu:///embed (what `auto` picks when no libvirtd answers): the server runs
    QEMU itself, with the qemu.conf it writes into the embed root."""
    data = tmp_path / "embed"
    root = "/var/tmp/xapi-py-test-embed"   # reused: libvirt caches its QEMU probe there
    proc = ServerProcess(str(data), libvirt_uri=f"qemu:///embed?root={root}").start()
    try:
        x = proc.session().xenapi
        vm = make_vm(x, guest, "embedded")
        x.VM.start(vm, False, False)
        wait_booted(proc, x, vm)
        assert 'user = "root"' in open(f"{root}/etc/qemu.conf").read()
        x.VM.clean_shutdown(vm)
        assert x.VM.get_power_state(vm) == "Halted"
        x.VM.destroy(vm)
    finally:
        proc.kill()
