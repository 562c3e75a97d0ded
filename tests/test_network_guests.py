"""Two tiny guests (tests/guest) on one internal network ping each other through a real
bridge; the tap is a port of the bridge while plugged; unplugging a VIF stops the
pings, plugging it again brings them back. A server of its own, on libvirt's
embedded QEMU driver (no daemon needed)."""
import json
import os
import shutil
import subprocess
import time

import pytest

from guest.harness import MARK, build_or_skip, console_text, guest_vm
from serverproc import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.skipif(   # slow: boots two real guests
    not shutil.which("qemu-system-x86_64") or os.geteuid() != 0,
    reason="needs root and qemu-system-x86_64")]


@pytest.fixture(scope="module")
def guest_server(tmp_path_factory):
    # Any failure to build (no kernel, no busybox) skips.
    guest = build_or_skip(str(tmp_path_factory.mktemp("guest-cache")), catch=Exception,
                          why="test guest cannot be built: ")
    data = str(tmp_path_factory.mktemp("xapi-net-guests"))
    from xapi_server.backends.hypervisor.libvirt_conn import embedded_uri
    proc = ServerProcess(data, libvirt_uri=embedded_uri(data),
                         env={"XAPI_BOOT_DIRS": os.path.dirname(guest["kernel"])}).start()
    yield proc, guest
    proc.stop()


def link(name):
    out = subprocess.run(["ip", "-j", "link", "show", "dev", name], capture_output=True,
                         text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def console(data_dir, uuid):
    """The guest's marker lines, without the marker."""
    return [line.split(MARK, 1)[1].strip()
            for line in console_text(data_dir, uuid).splitlines() if MARK in line]


def wait_console(data_dir, uuid, predicate, timeout=90.0, after=0):
    """Wait for a marker line (among those after the first `after` ones)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = console(data_dir, uuid)[after:]
        if any(predicate(line) for line in lines):
            return True
        time.sleep(0.5)
    raise AssertionError(f"console of {uuid}: {console(data_dir, uuid)[-15:]}")


def make_guest(xapi, guest, name, args, network):
    vm = guest_vm(xapi, guest, name, mib=192, args=args)
    vif = xapi.VIF.create({"VM": vm, "network": network, "device": "0", "MAC": "",
                           "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                           "qos_algorithm_params": {}})
    return vm, vif


def test_two_guests_ping_each_other_and_unplug_stops_it(guest_server):
    proc, guest = guest_server
    session = proc.session()
    xapi = session.xenapi
    net = xapi.network.create({"name_label": "guest lan", "other_config": {}})
    bridge = xapi.network.get_bridge(net)
    vms = []
    try:
        a, vif_a = make_guest(xapi, guest, "ping-a", "guestip=10.213.0.1/24 "
                              "guestping=10.213.0.2", net)
        b, vif_b = make_guest(xapi, guest, "ping-b", "guestip=10.213.0.2/24 "
                              "guestping=10.213.0.1", net)
        vms += [a, b]
        ua, ub = xapi.VM.get_uuid(a), xapi.VM.get_uuid(b)
        for vm in vms:
            xapi.VM.start(vm, False, False)
        for vif in (vif_a, vif_b):
            rec = xapi.VIF.get_record(vif)
            assert rec["currently_attached"]
            tap = link("xvif" + rec["uuid"].replace("-", "")[:10])
            assert tap is not None and tap["master"] == bridge
            assert tap["address"].lower()[3:] == rec["MAC"][3:]   # fe:.. on the host side
        wait_console(proc.data_dir, ua, lambda l: l == "PING 10.213.0.2 OK")
        wait_console(proc.data_dir, ub, lambda l: l == "PING 10.213.0.1 OK")

        # Unplug b's VIF: its tap leaves, a's pings fail.
        seen = len(console(proc.data_dir, ua))
        xapi.VIF.unplug(vif_b)
        tap_b = "xvif" + xapi.VIF.get_uuid(vif_b).replace("-", "")[:10]
        assert link(tap_b) is None
        assert not xapi.VIF.get_record(vif_b)["currently_attached"]
        wait_console(proc.data_dir, ua, lambda l: l == "PING 10.213.0.2 FAIL", after=seen)

        # Plug it again: the tap is back on the bridge and the guest sees its NIC
        # (the test guest configures an address only once, so no ping this time).
        seen = len(console(proc.data_dir, ub))
        xapi.VIF.plug(vif_b)
        assert link(tap_b)["master"] == bridge
        assert xapi.VIF.get_currently_attached(vif_b)
        mac = xapi.VIF.get_MAC(vif_b)
        wait_console(proc.data_dir, ub, lambda l: l == f"NET eth0={mac}", after=seen)

        # A tap deleted behind our back shows as detached.
        subprocess.run(["ip", "link", "set", tap_b, "nomaster"], check=True)
        assert not xapi.VIF.get_record(vif_b)["currently_attached"]
    finally:
        for vm in vms:
            if xapi.VM.get_power_state(vm) != "Halted":
                xapi.VM.hard_shutdown(vm)
            xapi.VM.destroy(vm)
        xapi.network.destroy(net)
        session.xenapi.session.logout()
    assert link(bridge) is None
