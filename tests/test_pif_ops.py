"""PIF operations and the host's name and system log, through a real server (root
namespace) on test veth NICs with unique names: plug/unplug move the NIC's addresses
to and from the bridge and set its link up and down, reconfigure_ipv6 and set_property
(gro, ethtool) act on the kernel, db_introduce/db_forget touch records only, VLANs across
the pool answer xapi's errors; set_hostname_live and syslog_reconfigure run the
configured (here harmless) commands and write the forwarding file in a temp folder;
and the xe commands for them."""
import json
import os
import secrets
import subprocess
import sys

import pytest
import XenAPI

from serverproc import ROOT_PASSWORD, ServerProcess, logged_in
from sdk_failures import failure

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/sbin/ethtool"), reason="needs root, ethtool")


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    data = tmp_path_factory.mktemp("xapi-pifops")
    recorder = data / "record-name"
    recorder.write_text(f"#!/bin/sh\necho \"$@\" > {data / 'hostname'}\n")
    recorder.chmod(0o755)
    p = ServerProcess(str(data), env={
        "XAPI_HOSTNAME_COMMAND": str(recorder),
        "XAPI_SYSLOG_FORWARD_FILE": str(data / "forward.conf"),
        "XAPI_SYSLOG_RESTART_COMMAND": f"touch {data / 'restarted'}"}).start()
    p.data = data
    yield p
    p.stop()


@pytest.fixture
def x(proc):
    yield from logged_in(proc.session())


@pytest.fixture
def veth():
    tag = secrets.token_hex(3)
    a, b = f"xpo{tag}a", f"xpo{tag}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    subprocess.run(["ip", "link", "set", b, "up"], check=True)
    yield a
    subprocess.run(["ip", "link", "del", a], capture_output=True)


def link(name):
    out = subprocess.run(["ip", "-j", "addr", "show", "dev", name], capture_output=True,
                         text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def addresses(name):
    return sorted(f"{a['local']}/{a['prefixlen']}" for a in link(name)["addr_info"]
                  if a.get("scope") == "global")


def gro(dev):
    out = subprocess.run(["ethtool", "-k", dev], capture_output=True, text=True).stdout
    return next(line.split(":")[1].split()[0] for line in out.splitlines()
                if line.startswith("generic-receive-offload"))


def xe(proc, *args):
    cmd = [os.path.join(os.path.dirname(sys.executable), "xe"), "-s", "127.0.0.1", "-p",
           str(proc.port), "-u", "root", "-pw", ROOT_PASSWORD, "--no-verify", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def introduce(x, veth):
    return x.PIF.introduce(x.host.get_all()[0], "", veth)


def test_plug_and_unplug_move_addresses_and_set_the_link(x, veth):
    pif = introduce(x, veth)
    bridge = x.network.get_bridge(x.PIF.get_network(pif))
    try:
        x.PIF.reconfigure_ip(pif, "Static", "10.251.3.1", "255.255.255.0", "", "")
        assert addresses(veth) == ["10.251.3.1/24"]        # unplugged: on the NIC
        x.PIF.plug(pif)
        assert link(veth)["master"] == bridge and "UP" in link(veth)["flags"]
        assert addresses(bridge) == ["10.251.3.1/24"] and addresses(veth) == []
        assert x.PIF.get_currently_attached(pif) and x.PIF.get_IP(pif) == "10.251.3.1"
        x.PIF.unplug(pif)
        assert "master" not in link(veth) and "UP" not in link(veth)["flags"]
        assert addresses(veth) == ["10.251.3.1/24"] and addresses(bridge) == []
        assert not x.PIF.get_currently_attached(pif)
        x.PIF.set_disallow_unplug(pif, True)
        x.PIF.plug(pif)
        assert failure(x.PIF.unplug, pif) == ["PIF_DOES_NOT_ALLOW_UNPLUG", pif]
        x.PIF.set_disallow_unplug(pif, False)
        x.PIF.unplug(pif)
    finally:
        network = x.PIF.get_network(pif)
        x.PIF.forget(pif)
        x.network.destroy(network)


def test_unmanaged_pifs_are_left_alone(x, veth):
    pif = x.PIF.introduce(x.host.get_all()[0], "", veth, False)
    try:
        for fn, args in ((x.PIF.plug, ()), (x.PIF.unplug, ()),
                         (x.PIF.reconfigure_ip, ("None", "", "", "", "")),
                         (x.PIF.reconfigure_ipv6, ("None", "", "", ""))):
            assert failure(fn, pif, *args) == ["PIF_UNMANAGED", pif]
    finally:
        network = x.PIF.get_network(pif)
        x.PIF.forget(pif)
        x.network.destroy(network)


def test_reconfigure_ipv6(x, veth):
    pif = introduce(x, veth)
    try:
        x.PIF.reconfigure_ipv6(pif, "Static", "fd51::7/64", "fd51::1", "")
        assert addresses(veth) == ["fd51::7/64"]
        rec = x.PIF.get_record(pif)
        assert rec["ipv6_configuration_mode"] == "Static" and rec["ipv6_gateway"] == "fd51::1"
        assert "fd51::7/64" in rec["IPv6"]
        for args, error in ((("Static", "fd51::7", "", ""), "INVALID_CIDR_ADDRESS_SPECIFIED"),
                            (("Static", "nonsense/64", "", ""), "INVALID_CIDR_ADDRESS_SPECIFIED"),
                            (("Static", "fd51::8/64", "10.0.0.1", ""),
                             "INVALID_IP_ADDRESS_SPECIFIED"),
                            (("Static", "fd51::8/64", "", "1.2.3.4"),
                             "INVALID_IP_ADDRESS_SPECIFIED")):
            assert failure(x.PIF.reconfigure_ipv6, pif, *args)[0] == error
        assert addresses(veth) == ["fd51::7/64"]             # refused: unchanged
        x.PIF.reconfigure_ipv6(pif, "Autoconf", "", "", "")
        with open(f"/proc/sys/net/ipv6/conf/{veth}/accept_ra") as f:
            assert f.read().strip() == "1"
        assert addresses(veth) == []
        x.PIF.reconfigure_ipv6(pif, "None", "", "", "")
        with open(f"/proc/sys/net/ipv6/conf/{veth}/autoconf") as f:
            assert f.read().strip() == "0"
        assert x.PIF.get_ipv6_configuration_mode(pif) == "None"
        assert failure(x.PIF.reconfigure_ipv6, pif, "DHCP", "", "", "")[0] == \
            "VALUE_NOT_SUPPORTED"
    finally:
        network = x.PIF.get_network(pif)
        x.PIF.forget(pif)
        x.network.destroy(network)


def test_set_property_gro_and_db_records(x, veth):
    pif = introduce(x, veth)
    network = x.PIF.get_network(pif)
    host = x.host.get_all()[0]
    try:
        assert x.PIF.get_properties(pif)["gro"] == gro(veth)
        x.PIF.set_property(pif, "gro", "off")
        assert gro(veth) == "off" and x.PIF.get_properties(pif)["gro"] == "off"
        x.PIF.set_property(pif, "gro", "on")
        assert gro(veth) == "on"
        assert failure(x.PIF.set_property, pif, "gro", "maybe") == [
            "INVALID_VALUE", "properties", "gro = maybe"]
        assert failure(x.PIF.set_property, pif, "mtu", "on") == [
            "INVALID_VALUE", "properties", "mtu = on"]
        # a record alone: db_introduce does nothing to the host, and a non-physical PIF
        # has no properties
        other = x.PIF.db_introduce(
            "xpo-none", network, host, "02:00:00:00:00:01", "1500", "7", False, "None",
            "", "", "", "", "OpaqueRef:NULL", "OpaqueRef:NULL", False, {}, False, "None",
            [], "", "IPv4", True, {})
        rec = x.PIF.get_record(other)
        assert (rec["device"], rec["VLAN"], rec["physical"]) == ("xpo-none", "7", False)
        assert not rec["currently_attached"] and link("xpo-none") is None
        assert failure(x.PIF.set_property, other, "gro", "off") == [
            "CANNOT_CHANGE_PIF_PROPERTIES", other]
        assert failure(x.PIF.db_introduce, "d", "OpaqueRef:nope", host, "", "1500", "-1",
                       True, "None", "", "", "", "", "OpaqueRef:NULL", "OpaqueRef:NULL",
                       False, {}, False, "None", [], "", "IPv4", True, {})[0] == \
            "HANDLE_INVALID"
        x.PIF.db_forget(other)
        assert other not in x.PIF.get_all() and link(veth) is not None
    finally:
        x.PIF.forget(pif)
        x.network.destroy(network)


def test_pool_vlans_answer_as_xapi(x, veth):
    pif = introduce(x, veth)
    network = x.network.create({"name_label": "pool vlan", "other_config": {}})
    try:
        assert failure(x.pool.create_VLAN, "no-such-nic", network, "5") == [
            "INVALID_VALUE", "device", "no-such-nic"]
        assert failure(x.pool.create_VLAN_from_PIF, pif, network, "4095") == [
            "VLAN_TAG_INVALID", "4095"]
        try:
            pifs = x.pool.create_VLAN_from_PIF(pif, network, "12")
        except XenAPI.Failure as exc:
            # no 802.1Q in this kernel: refused, nothing left behind
            assert "Unknown device type" in exc.details[1]
            assert x.VLAN.get_all() == [] and x.network.get_PIFs(network) == []
        else:
            assert [x.PIF.get_VLAN(p) for p in pifs] == ["12"]
            x.VLAN.destroy(x.PIF.get_VLAN_master_of(pifs[0]))
    finally:
        pif_network = x.PIF.get_network(pif)
        x.PIF.forget(pif)
        x.network.destroy(pif_network)
        x.network.destroy(network)


def test_set_hostname_live_runs_the_command(proc, x):
    host = x.host.get_all()[0]
    for name, reason in (("", "hostname empty"), ("a" * 256, "hostname is too long"),
                         ("bad name", "hostname contains invalid characters"),
                         ("-lead", "hostname contains invalid characters"),
                         ("x;reboot", "hostname contains invalid characters")):
        assert failure(x.host.set_hostname_live, host, name) == ["HOST_NAME_INVALID", reason]
    assert not (proc.data / "hostname").exists()
    x.host.set_hostname_live(host, "xenhost-7.lab")
    assert (proc.data / "hostname").read_text().strip() == "xenhost-7.lab"
    assert x.host.get_hostname(host) == "xenhost-7.lab"


def test_syslog_reconfigure_writes_the_forwarding_file(proc, x):
    host = x.host.get_all()[0]
    forward, restarted = proc.data / "forward.conf", proc.data / "restarted"
    x.host.set_logging(host, {"syslog_destination": "logs.example.org:5514"})
    x.host.syslog_reconfigure(host)
    assert "*.* @logs.example.org:5514" in forward.read_text().splitlines()
    assert restarted.exists()
    x.host.set_logging(host, {"syslog_destination": "evil\n*.* /etc/passwd"})
    assert failure(x.host.syslog_reconfigure, host)[0] == "INVALID_VALUE"
    assert "*.* @logs.example.org:5514" in forward.read_text().splitlines()
    restarted.unlink()
    x.host.set_logging(host, {})
    x.host.syslog_reconfigure(host)                     # no destination: no forwarding
    assert not forward.exists() and restarted.exists()


def test_xe_pif_commands(proc, x, veth):
    pif = introduce(x, veth)
    uuid = x.PIF.get_uuid(pif)
    bridge = x.network.get_bridge(x.PIF.get_network(pif))
    try:
        out = xe(proc, "pif-reconfigure-ip", f"uuid={uuid}", "mode=static",
                 "IP=10.251.9.1", "netmask=255.255.255.0")
        assert out.returncode == 0, out.stderr
        assert addresses(veth) == ["10.251.9.1/24"]
        out = xe(proc, "pif-reconfigure-ipv6", f"uuid={uuid}", "mode=static",
                 "IPv6=fd52::1/64")
        assert out.returncode == 0, out.stderr
        assert "fd52::1/64" in addresses(veth)
        out = xe(proc, "pif-reconfigure-ip", f"uuid={uuid}", "mode=sometimes")
        assert out.returncode != 0 and "sometimes" in out.stdout + out.stderr
        out = xe(proc, "pif-param-set", f"uuid={uuid}", "properties:gro=off")
        assert out.returncode == 0, out.stderr
        assert gro(veth) == "off" and x.PIF.get_properties(pif)["gro"] == "off"
        out = xe(proc, "pif-param-set", f"uuid={uuid}", "properties:gro=perhaps")
        assert out.returncode != 0 and "gro = perhaps" in out.stdout + out.stderr
        assert xe(proc, "pif-plug", f"uuid={uuid}").returncode == 0
        assert link(veth)["master"] == bridge and "10.251.9.1/24" in addresses(bridge)
        assert xe(proc, "pif-unplug", f"uuid={uuid}").returncode == 0
        assert "master" not in link(veth) and "10.251.9.1/24" in addresses(veth)
        mgmt = [p for p in x.PIF.get_all() if x.PIF.get_management(p)]
        if mgmt:     # this machine's NIC: refused, never touched
            out = xe(proc, "pif-unplug", f"uuid={x.PIF.get_uuid(mgmt[0])}")
            assert out.returncode != 0 and "management" in (out.stdout + out.stderr).lower()
        out = xe(proc, "host-management-disable")
        assert out.returncode == 0, out.stderr
        assert not [p for p in x.PIF.get_all() if x.PIF.get_management(p)]
    finally:
        network = x.PIF.get_network(pif)
        x.PIF.forget(pif)
        x.network.destroy(network)
