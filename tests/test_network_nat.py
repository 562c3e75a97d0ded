"""The host-internal NAT network (setting nat_network; services/network/nat.py): a server
in a network namespace of its own, an "outside" namespace behind a veth that has no
route to the guests' subnet. A tiny guest installed with a NIC on the NAT network gets
an address from the server's dnsmasq, reaches the outside through the host's
masquerading, and its address shows in VM_guest_metrics.networks and `xe vm-list`."""
import os
import shutil
import subprocess
import sys
import time

import pytest
import XenAPI

from guest.harness import MARK, build_or_skip, console_text, guest_vm
from nat_server import OUTSIDE, nat_host, sh
from serverproc import ROOT_PASSWORD

pytestmark = [pytest.mark.slow, pytest.mark.skipif(   # slow: boots a real guest
    not shutil.which("qemu-system-x86_64") or not shutil.which("dnsmasq")
    or not shutil.which("nft") or os.geteuid() != 0,
    reason="needs root, qemu-system-x86_64, dnsmasq and nft")]

SUBNET = "10.213.50.1/24"


@pytest.fixture(scope="module")
def nat_server(tmp_path_factory):
    guest = build_or_skip(str(tmp_path_factory.mktemp("guest-cache")), catch=Exception,
                          why="test guest cannot be built: ")
    with nat_host(tmp_path_factory, SUBNET, guest) as (proc, host_ns, out_ns):
        yield proc, guest, host_ns, out_ns


def markers(data_dir, uuid):
    return [line.split(MARK, 1)[1].strip()
            for line in console_text(data_dir, uuid).splitlines() if MARK in line]


def wait_for(what, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.5)
    return None


def test_a_guest_on_the_nat_network_gets_an_address_and_reaches_outside(nat_server):
    proc, guest, host_ns, out_ns = nat_server
    session = proc.session()
    xapi = session.xenapi
    try:
        nets = [ref for ref, rec in xapi.network.get_all_records().items()
                if "xapi-py:nat" in rec["other_config"]]
        assert len(nets) == 1
        net = nets[0]
        assert "NAT" in xapi.network.get_name_label(net)
        bridge = xapi.network.get_bridge(net)
        # the bridge has the host's address; dnsmasq serves that bridge only
        assert "10.213.50.1/24" in sh("ip", "-n", host_ns, "-o", "addr", "show", "dev", bridge)
        # the outside has no way back to the guests' subnet: only masquerading can answer
        assert "10.213.50" not in sh("ip", "-n", out_ns, "route")

        vm = guest_vm(xapi, guest, "nat-guest", mib=192,
                      args=f"guestdhcp guestping={OUTSIDE}")
        xapi.VIF.create({"VM": vm, "network": net, "device": "0", "MAC": "", "MTU": "1500",
                         "other_config": {}, "qos_algorithm_type": "",
                         "qos_algorithm_params": {}})
        # a second guest asks for a fixed address: a DHCP reservation on this network
        fixed = guest_vm(xapi, guest, "nat-fixed", mib=192, args="guestdhcp")
        fixed_vif = xapi.VIF.create({
            "VM": fixed, "network": net, "device": "0", "MAC": "", "MTU": "1500",
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
        for bad, code in (("10.213.50.77", "INVALID_CIDR_ADDRESS_SPECIFIED"),
                          ("10.213.50.1/24", "INVALID_IP_ADDRESS_SPECIFIED"),
                          ("10.213.51.9/24", "INVALID_IP_ADDRESS_SPECIFIED")):
            with pytest.raises(XenAPI.Failure) as caught:
                xapi.VIF.configure_ipv4(fixed_vif, "Static", bad, "")
            assert caught.value.details[0] == code, bad
        xapi.VIF.configure_ipv4(fixed_vif, "Static", "10.213.50.77/24", "")
        assert xapi.VIF.get_ipv4_addresses(fixed_vif) == ["10.213.50.77/24"]
        uuid = xapi.VM.get_uuid(vm)
        xapi.VM.start(vm, False, False)
        xapi.VM.start(fixed, False, False)
        leased = wait_for(lambda: [m for m in markers(proc.data_dir, uuid)
                                   if m.startswith("DHCP ")])
        assert leased and leased[0].startswith("DHCP eth0 10.213.50."), \
            markers(proc.data_dir, uuid)[-10:]
        address = leased[0].split()[-1]
        assert wait_for(lambda: f"PING {OUTSIDE} OK" in markers(proc.data_dir, uuid)), \
            markers(proc.data_dir, uuid)[-10:]

        def shown():
            metrics = xapi.VM.get_guest_metrics(vm)
            return metrics != "OpaqueRef:NULL" and \
                xapi.VM_guest_metrics.get_networks(metrics).get("0/ip") == address
        assert wait_for(shown, timeout=20)
        listed = subprocess.run(
            [os.path.join(os.path.dirname(sys.executable), "xe"), "-s", proc.host, "-p",
             str(proc.port), "-u", "root", "-pw", ROOT_PASSWORD, "--no-verify", "vm-list",
             f"uuid={uuid}", "params=networks", "--minimal"],
            capture_output=True, text=True, timeout=60)
        assert f"0/ip: {address}" in listed.stdout, listed.stdout + listed.stderr
        fixed_uuid = xapi.VM.get_uuid(fixed)
        assert wait_for(lambda: "DHCP eth0 10.213.50.77" in markers(proc.data_dir,
                                                                     fixed_uuid)), \
            markers(proc.data_dir, fixed_uuid)[-10:]
        xapi.VM.hard_shutdown(vm)
        xapi.VM.hard_shutdown(fixed)
    finally:
        session.xenapi.session.logout()


def test_addresses_off_the_nat_network_need_a_guest_agent(nat_server):
    """As xapi without a guest agent: VM_LACKS_FEATURE (after the address checks)."""
    proc = nat_server[0]
    session = proc.session()
    xapi = session.xenapi
    try:
        template = next(r for r, rec in xapi.VM.get_all_records().items()
                        if rec["is_a_template"])
        vm = xapi.VM.clone(template, "agentless")
        lan = xapi.network.create({"name_label": "plain lan", "other_config": {}})
        vif = xapi.VIF.create({"VM": vm, "network": lan, "device": "0", "MAC": "",
                               "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                               "qos_algorithm_params": {}})
        for call, address in ((xapi.VIF.configure_ipv4, "192.0.2.5/24"),
                              (xapi.VIF.configure_ipv6, "2001:db8::5/64")):
            with pytest.raises(XenAPI.Failure) as caught:
                call(vif, "Static", address, "")
            assert caught.value.details == ["VM_LACKS_FEATURE", vm]
        with pytest.raises(XenAPI.Failure) as caught:
            xapi.VIF.configure_ipv6(vif, "Static", "2001:db8::5", "")
        assert caught.value.details == ["INVALID_CIDR_ADDRESS_SPECIFIED", "address"]
        xapi.VIF.destroy(vif)
        xapi.VM.destroy(vm)
        xapi.network.destroy(lan)
    finally:
        session.xenapi.session.logout()


def test_vm_install_gives_a_template_without_nics_one_on_the_nat_network(nat_server):
    proc = nat_server[0]
    session = proc.session()
    xapi = session.xenapi
    try:
        template = next(ref for ref, rec in xapi.VM.get_all_records().items()
                        if rec["is_a_template"] and not rec["VIFs"])
        xe = os.path.join(os.path.dirname(sys.executable), "xe")
        out = subprocess.run(
            [xe, "-s", proc.host, "-p", str(proc.port), "-u", "root", "-pw", ROOT_PASSWORD,
             "--no-verify", "vm-install", f"template-uuid={xapi.VM.get_uuid(template)}",
             "new-name-label=from-template"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        vm = xapi.VM.get_by_uuid(out.stdout.strip())
        vifs = xapi.VM.get_VIFs(vm)
        assert len(vifs) == 1
        assert "xapi-py:nat" in xapi.network.get_other_config(xapi.VIF.get_network(vifs[0]))
        xapi.VM.destroy(vm)
    finally:
        session.xenapi.session.logout()
