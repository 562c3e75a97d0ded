"""Maintenance mode and what goes with it (api/host_maintenance.py), through the real
server: disable/enable and allowed_operations, no VM starts on a disabled host, the
evacuation checks with a running VM and no other host, reboot/shutdown refused until the
host is disabled and runs no guest (then the configured command runs: here it writes a
file), dmesg and the server's log, the management interface, and the same through xe."""
import os
import subprocess
import sys
import time

import pytest

from serverproc import ROOT_PASSWORD, ServerProcess
from sdk_failures import failure


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    data = tmp_path_factory.mktemp("xapi-maint")
    marker = data / "rebooted"
    p = ServerProcess(str(data), env={
        "XAPI_HOST_REBOOT_COMMAND": f"touch {marker}",
        "XAPI_HOST_SHUTDOWN_COMMAND": f"touch {data / 'halted'}"}).start()
    p.marker = marker
    yield p
    p.stop()


@pytest.fixture
def x(proc):
    session = proc.session()
    yield session.xenapi
    session.xenapi.session.logout()


def new_vm(x, name):
    template = next(r for r, rec in x.VM.get_all_records().items() if rec["is_a_template"])
    vm = x.VM.clone(template, name)
    x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    return vm


def test_disable_stops_new_vms_and_enable_brings_them_back(x):
    host = x.host.get_all()[0]
    assert x.host.get_enabled(host)
    assert set(x.host.get_allowed_operations(host)) >= {"vm_start", "evacuate"}
    assert "reboot" not in x.host.get_allowed_operations(host)
    vm = new_vm(x, "maint-a")
    try:
        x.host.disable(host)
        assert not x.host.get_enabled(host)
        assert "vm_start" not in x.host.get_allowed_operations(host)
        assert "reboot" in x.host.get_allowed_operations(host)
        assert failure(x.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]
        assert failure(x.VM.start_on, vm, host, False, False) == ["HOST_DISABLED", host]
        assert x.VM.get_power_state(vm) == "Halted"
        x.host.enable(host)
        assert x.host.get_enabled(host)
        x.VM.start(vm, False, False)
        assert x.VM.get_power_state(vm) == "Running"
        # a running VM with nowhere to go keeps the host from being evacuated
        assert x.host.get_vms_which_prevent_evacuation(host) == {
            vm: ["HOST_NOT_ENOUGH_FREE_MEMORY", vm]}
        err = failure(x.host.assert_can_evacuate, host)
        assert err == ["CANNOT_EVACUATE_HOST", f"HOST_NOT_ENOUGH_FREE_MEMORY,{vm}"]
        assert failure(x.host.evacuate, host, "OpaqueRef:NULL", "0") == [
            "HOST_NOT_ENOUGH_FREE_MEMORY", vm]
        # reboot: disabled first, then no guest running
        assert failure(x.host.reboot, host) == ["HOST_NOT_DISABLED"]
        x.host.disable(host)
        assert failure(x.host.reboot, host) == ["HOST_IN_USE", host, "vm", vm]
        x.VM.hard_shutdown(vm)
        assert x.host.get_vms_which_prevent_evacuation(host) == {}
        x.host.assert_can_evacuate(host)
        x.host.evacuate(host, "OpaqueRef:NULL", "0")
    finally:
        if x.VM.get_power_state(vm) != "Halted":
            x.VM.hard_shutdown(vm)
        x.VM.destroy(vm)
        x.host.enable(host)


def test_reboot_runs_the_command_once_the_host_is_ready(proc, x):
    host = x.host.get_all()[0]
    x.host.disable(host)
    try:
        x.host.reboot(host)
        assert "reboot" in x.host.get_current_operations(host).values()
        deadline = time.monotonic() + 30
        while not proc.marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proc.marker.exists()
    finally:
        x.host.enable(host)


def test_disabled_without_auto_enable_stays_disabled_after_a_restart(tmp_path):
    p = ServerProcess(str(tmp_path / "d")).start()
    try:
        s = p.session()
        host = s.xenapi.host.get_all()[0]
        s.xenapi.host.disable(host, False)
        s.xenapi.session.logout()
        p.stop()
        p.start()
        s = p.session()
        assert not s.xenapi.host.get_enabled(host)
        s.xenapi.host.enable(host)
        s.xenapi.host.disable(host, True)      # auto_enable: back at the next start
        s.xenapi.session.logout()
        p.stop()
        p.start()
        s = p.session()
        assert s.xenapi.host.get_enabled(host)
        s.xenapi.session.logout()
    finally:
        p.stop()


def test_what_an_admin_reads(x):
    host = x.host.get_all()[0]
    assert isinstance(x.host.dmesg(host), str)
    log = x.host.get_log(host)
    assert "xapi_server" in log or log == ""
    pifs = [p for p in x.host.get_PIFs(host) if x.PIF.get_management(p)]
    if pifs:
        assert x.host.get_management_interface(host) == pifs[0]
    else:
        assert failure(x.host.get_management_interface, host) == [
            "HOST_HAS_NO_MANAGEMENT_IP"]


def test_xe_host_disable_enable(proc, x):
    host = x.host.get_all()[0]
    uuid = x.host.get_uuid(host)
    xe = [os.path.join(os.path.dirname(sys.executable), "xe"), "-s", "127.0.0.1", "-p",
          str(proc.port), "-u", "root", "-pw", ROOT_PASSWORD, "--no-verify"]
    for command, enabled in (("host-disable", False), ("host-enable", True)):
        out = subprocess.run([*xe, command, f"uuid={uuid}"], capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        assert x.host.get_enabled(host) is enabled
    out = subprocess.run([*xe, "host-reboot", f"uuid={uuid}"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 1 and "disabled" in out.stderr.lower()


def test_workload_balancing_answers_as_xapi_without_an_appliance(x):
    """No WLB server can be configured here: xapi's answers for a pool without one."""
    pool = x.pool.get_all()[0]
    host = x.host.get_all()[0]
    assert x.pool.get_wlb_url(pool) == ""
    for call, args in ((x.pool.deconfigure_wlb, ()), (x.pool.send_wlb_configuration, ({},)),
                       (x.pool.retrieve_wlb_configuration, ()),
                       (x.pool.retrieve_wlb_recommendations, ()),
                       (x.host.retrieve_wlb_evacuate_recommendations, (host,))):
        assert failure(call, *args) == ["WLB_NOT_INITIALIZED"], call
