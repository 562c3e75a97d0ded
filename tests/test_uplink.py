"""The management NIC under its bridge (services/network/uplink.py, api/management.py):
a server in a network namespace of its own whose "NIC" is one end of a veth pair and
whose gateway is the other end, in a second namespace. The test reaches the API over a
third veth, so the move never cuts the test off; this machine's NIC is never touched.

First the failures, each leaving the kernel exactly as it was: the gateway already
unreachable (refused before anything changes), then the gateway lost by the move (a
firewall rule that drops what leaves through the new bridge: rolled back). Then the move
through `xe host-management-reconfigure`: addresses and routes on the bridge, the
gateway still answers, the PIF says so; and the management calls' other answers."""
import json
import os
import subprocess
import sys

import pytest

from serverproc import ROOT_PASSWORD, ServerProcess, logged_in
from sdk_failures import failure

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/usr/bin/ping"), reason="needs root and ping")

GW, HOST_IP, OTHER_NET = "10.96.0.1", "10.96.0.2", "10.95.7.0/24"
GW6, HOST_IP6 = "fd96::1", "fd96::2"


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def in_ns(ns, *argv, check=True):
    return sh("ip", "netns", "exec", ns, *argv, check=check)


@pytest.fixture(scope="module")
def uplink(tmp_path_factory):
    tag = f"{os.getpid() % 100000}"
    host_ns, gw_ns = f"xuph{tag}", f"xupg{tag}"
    api_net = 100 + os.getpid() % 50
    sh("ip", "netns", "add", host_ns)
    sh("ip", "netns", "add", gw_ns)
    try:
        for ns in (host_ns, gw_ns):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", f"xur{tag}", "type", "veth", "peer", "name", "api0",
           "netns", host_ns)
        sh("ip", "addr", "add", f"10.97.{api_net}.1/30", "dev", f"xur{tag}")
        sh("ip", "link", "set", f"xur{tag}", "up")
        sh("ip", "-n", host_ns, "addr", "add", f"10.97.{api_net}.2/30", "dev", "api0")
        sh("ip", "-n", host_ns, "link", "set", "api0", "up")
        # the host's NIC and, behind it, its gateway
        sh("ip", "-n", host_ns, "link", "add", "nic0", "type", "veth", "peer", "name", "gw0",
           "netns", gw_ns)
        sh("ip", "-n", gw_ns, "addr", "add", f"{GW}/24", "dev", "gw0")
        sh("ip", "-n", gw_ns, "addr", "add", f"{GW6}/64", "dev", "gw0", "nodad")
        sh("ip", "-n", gw_ns, "link", "set", "gw0", "up")
        sh("ip", "-n", host_ns, "addr", "add", f"{HOST_IP}/24", "dev", "nic0")
        sh("ip", "-n", host_ns, "addr", "add", f"{HOST_IP6}/64", "dev", "nic0", "nodad")
        sh("ip", "-n", host_ns, "link", "set", "nic0", "up")
        sh("ip", "-n", host_ns, "route", "add", "default", "via", GW, "dev", "nic0")
        sh("ip", "-n", host_ns, "route", "add", OTHER_NET, "via", GW, "dev", "nic0",
           "metric", "50")
        data = str(tmp_path_factory.mktemp("xapi-uplink"))
        proc = ServerProcess(data, netns=host_ns, host=f"10.97.{api_net}.2",
                             env={"XAPI_MANAGEMENT_PROBE_TIMEOUT": "3"})
        proc.start()
        try:
            yield proc, host_ns, gw_ns
        finally:
            proc.kill()
    finally:
        sh("ip", "link", "del", f"xur{tag}", check=False)
        sh("ip", "netns", "del", host_ns, check=False)
        sh("ip", "netns", "del", gw_ns, check=False)


@pytest.fixture
def x(uplink):
    yield from logged_in(uplink[0].session())


def kernel_state(ns) -> dict:
    """What the move changes: every link's master and global addresses, and the routes."""
    links = json.loads(sh("ip", "-n", ns, "-j", "addr", "show").stdout)
    routes = json.loads(sh("ip", "-n", ns, "-j", "route", "show").stdout) + \
        json.loads(sh("ip", "-n", ns, "-j", "-6", "route", "show").stdout)
    return {
        "links": {l["ifname"]: (l.get("master", ""), sorted(
            f"{a['local']}/{a['prefixlen']}" for a in l.get("addr_info", [])
            if a.get("scope") == "global")) for l in links},
        "routes": sorted((r["dst"], r.get("gateway", ""), r["dev"]) for r in routes
                         if not r["dst"].startswith("fe80")),
    }


def management(x):
    host = x.host.get_all()[0]
    return host, x.host.get_management_interface(host)


def test_the_scan_found_the_nic_of_the_default_route(x):
    host, pif = management(x)
    rec = x.PIF.get_record(pif)
    assert rec["device"] == "nic0" and rec["management"] and rec["currently_attached"]
    assert (rec["IP"], rec["gateway"]) == (HOST_IP, GW)


def test_an_unreachable_gateway_is_refused_before_anything_changes(uplink, x):
    proc, host_ns, gw_ns = uplink
    host, pif = management(x)
    before = kernel_state(host_ns)
    sh("ip", "-n", gw_ns, "addr", "del", f"{GW}/24", "dev", "gw0")
    try:
        details = failure(x.host.management_reconfigure, pif)
    finally:
        sh("ip", "-n", gw_ns, "addr", "add", f"{GW}/24", "dev", "gw0")
    assert details[:2] == ["PIF_CONFIGURATION_ERROR", pif]
    assert GW in details[2] and "nothing was changed" in details[2]
    assert kernel_state(host_ns) == before


def test_losing_the_gateway_by_the_move_rolls_it_back(uplink, x):
    proc, host_ns, gw_ns = uplink
    host, pif = management(x)
    bridge = x.network.get_bridge(x.PIF.get_network(pif))
    before = kernel_state(host_ns)
    # A firewall that only knows the NIC by name: what leaves through the bridge is lost.
    in_ns(host_ns, "nft", "add", "table", "inet", "xuptest")
    in_ns(host_ns, "nft", "add", "chain", "inet", "xuptest", "out",
          "{ type filter hook output priority 0 ; }")
    in_ns(host_ns, "nft", "add", "rule", "inet", "xuptest", "out", "oifname", bridge, "drop")
    try:
        details = failure(x.host.management_reconfigure, pif)
    finally:
        in_ns(host_ns, "nft", "delete", "table", "inet", "xuptest")
    assert details[:2] == ["PIF_CONFIGURATION_ERROR", pif]
    assert "stopped answering" in details[2] and "taken out of" in details[2]
    assert kernel_state(host_ns) == before              # addresses, routes, no bridge
    assert bridge not in before["links"]
    assert in_ns(host_ns, "ping", "-c1", "-W2", GW, check=False).returncode == 0
    rec = x.PIF.get_record(pif)
    assert rec["management"] and rec["IP"] == HOST_IP and rec["currently_attached"]


def test_xe_host_management_reconfigure_moves_addresses_and_routes(uplink, x):
    proc, host_ns, gw_ns = uplink
    host, pif = management(x)
    bridge = x.network.get_bridge(x.PIF.get_network(pif))
    xe = [os.path.join(os.path.dirname(sys.executable), "xe"), "-s", proc.host, "-p",
          str(proc.port), "-u", "root", "-pw", ROOT_PASSWORD, "--no-verify"]
    out = subprocess.run([*xe, "host-management-reconfigure",
                          f"pif-uuid={x.PIF.get_uuid(pif)}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    state = kernel_state(host_ns)
    assert state["links"]["nic0"] == (bridge, [])
    assert state["links"][bridge] == ("", sorted([f"{HOST_IP}/24", f"{HOST_IP6}/64"]))
    routes = state["routes"]
    assert ("default", GW, bridge) in routes and (OTHER_NET, GW, bridge) in routes
    assert not [r for r in routes if r[2] == "nic0"]
    # the bridge has the NIC's MAC: neighbours see the same host
    macs = {l["ifname"]: l["address"] for l in
            json.loads(sh("ip", "-n", host_ns, "-j", "link", "show").stdout)}
    assert macs[bridge] == macs["nic0"]
    for target in (GW, GW6):
        assert in_ns(host_ns, "ping", "-c1", "-W2", target, check=False).returncode == 0
    rec = x.PIF.get_record(pif)
    assert rec["management"] and rec["currently_attached"]
    assert (rec["IP"], rec["netmask"], rec["gateway"]) == (HOST_IP, "255.255.255.0", GW)
    assert x.host.get_management_interface(host) == pif
    # again: already there, nothing to do
    x.host.management_reconfigure(pif)
    assert kernel_state(host_ns) == state
    assert failure(x.PIF.unplug, pif) == ["PIF_IS_MANAGEMENT_INTERFACE", pif]


def test_management_calls_answer_as_xapi(uplink, x):
    proc, host_ns, gw_ns = uplink
    host, pif = management(x)
    assert failure(x.host.local_management_reconfigure, "nic0") == [
        "POOL_NOT_IN_EMERGENCY_MODE"]
    network = x.PIF.get_network(pif)
    other = x.network.create({"name_label": "no PIF here", "other_config": {}})
    assert failure(x.pool.management_reconfigure, other) == ["PIF_NOT_PRESENT", host, other]
    x.pool.management_reconfigure(network)             # already the management network
    assert x.host.get_management_interface(host) == pif
    x.host.management_disable()
    assert not x.PIF.get_management(pif)
    assert failure(x.host.get_management_interface, host) == ["HOST_HAS_NO_MANAGEMENT_IP"]
    x.host.management_reconfigure(pif)
    assert x.PIF.get_management(pif)
    x.network.destroy(other)


def test_the_move_is_made_again_at_the_next_start(uplink, x):
    """The kernel forgets at a reboot; the server remembers and moves it again."""
    proc, host_ns, gw_ns = uplink
    host, pif = management(x)
    bridge = x.network.get_bridge(x.PIF.get_network(pif))
    proc.kill()
    # as after a reboot: the NIC holds the addresses and routes, no bridge
    sh("ip", "-n", host_ns, "link", "del", bridge)
    sh("ip", "-n", host_ns, "addr", "add", f"{HOST_IP}/24", "dev", "nic0")
    sh("ip", "-n", host_ns, "addr", "add", f"{HOST_IP6}/64", "dev", "nic0", "nodad")
    sh("ip", "-n", host_ns, "route", "add", "default", "via", GW, "dev", "nic0")
    proc.start()
    state = kernel_state(host_ns)
    assert state["links"]["nic0"] == (bridge, [])
    assert ("default", GW, bridge) in state["routes"]
    assert in_ns(host_ns, "ping", "-c1", "-W2", GW, check=False).returncode == 0
