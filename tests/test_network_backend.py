"""The iproute2 backend on real kernel objects, inside a network namespace each test
creates (and deletes): bridges, VLAN devices, veth pairs, enslaving, addresses."""
import asyncio
import secrets
import subprocess

import pytest

from xapi_server.backends.network import NetworkError, valid_name
from xapi_server.backends.network.iproute import IpRoute
from xapi_server.errors import ApiError
from xapi_server.services.network.names import check_name


@pytest.fixture
def ns():
    name = f"xtn-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    yield name
    subprocess.run(["ip", "netns", "delete", name], check=False)


def run(coro):
    return asyncio.run(coro)


def kernel_has_8021q(ns) -> bool:
    """Some kernels (e.g. minimal VM kernels) are built without 802.1Q VLAN devices."""
    probe = subprocess.run(["ip", "-n", ns, "link", "add", "link", "lo", "name", "xprobe",
                            "type", "vlan", "id", "2"], capture_output=True, text=True)
    subprocess.run(["ip", "-n", ns, "link", "del", "xprobe"], capture_output=True)
    return "Unknown device type" not in probe.stderr


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a b", "tab\there", "x" * 16,
                                  "-h", "eth0:1", "br\n0", "a;rm -rf /", "é" * 8])
def test_invalid_names_are_refused(name):
    assert not valid_name(name)
    with pytest.raises(ApiError) as info:
        check_name("bridge", name)
    assert info.value.description == ["INVALID_VALUE", "bridge", name]


def test_valid_names():
    for name in ("xapi0", "x" * 15, "eth0.100", "br-lan", "a"):
        assert valid_name(name)


def test_odd_but_valid_name_is_just_a_name(ns):
    """Shell metacharacters in a (valid) name are harmless: no shell runs."""
    ip = IpRoute(ns)
    name = "a;touch${IFS}x"
    assert valid_name(name)
    run(ip.bridge_create(name))
    assert run(ip.link(name)).kind == "bridge"
    run(ip.link_delete(name))


def test_bridge_lifecycle(ns):
    ip = IpRoute(ns)
    run(ip.bridge_create("xbr0", mtu=1400))
    link = run(ip.link("xbr0"))
    assert (link.kind, link.mtu, link.up) == ("bridge", 1400, True)
    assert "xbr0" in run(ip.links())
    run(ip.set_mtu("xbr0", 1300))
    assert run(ip.link("xbr0")).mtu == 1300
    with pytest.raises(NetworkError):
        run(ip.bridge_create("xbr0"))          # the kernel refuses a taken name
    run(ip.link_delete("xbr0"))
    assert run(ip.link("xbr0")) is None
    run(ip.link_delete("xbr0"))                # already gone: fine


def test_vlan_on_veth_enslaved_to_bridge(ns):
    if not kernel_has_8021q(ns):
        pytest.skip("this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q)")
    ip = IpRoute(ns)
    subprocess.run(["ip", "-n", ns, "link", "add", "xv0", "type", "veth", "peer", "name",
                    "xv1"], check=True)
    run(ip.set_up("xv0"))
    run(ip.set_up("xv1"))
    run(ip.bridge_create("xbr1"))
    run(ip.vlan_create("xv0.42", "xv0", 42))
    vlan = run(ip.link("xv0.42"))
    assert (vlan.kind, vlan.parent, vlan.vlan_id, vlan.up) == ("vlan", "xv0", 42, True)
    run(ip.set_master("xv0.42", "xbr1"))
    assert run(ip.link("xv0.42")).master == "xbr1"
    run(ip.set_master("xv0.42", None))
    assert run(ip.link("xv0.42")).master == ""
    veth = run(ip.link("xv0"))
    assert veth.kind == "veth" and len(veth.mac) == 17 and veth.carrier
    assert not veth.physical
    with pytest.raises(NetworkError):
        run(ip.vlan_create("xv0.42b", "nosuchdev", 5))
    assert run(ip.link("xv0.42b")) is None
    run(ip.link_delete("xv0.42"))
    assert run(ip.link("xv0.42")) is None


def test_vlan_failure_leaves_nothing(ns):
    """Whether or not the kernel has 802.1Q: a failed create leaves no device."""
    ip = IpRoute(ns)
    with pytest.raises(NetworkError):
        run(ip.vlan_create("xq.7", "nosuchdev", 7))
    assert run(ip.link("xq.7")) is None


def test_veth_enslaved_to_bridge(ns):
    ip = IpRoute(ns)
    subprocess.run(["ip", "-n", ns, "link", "add", "xw0", "type", "veth", "peer", "name",
                    "xw1"], check=True)
    run(ip.bridge_create("xbr2"))
    run(ip.set_master("xw0", "xbr2"))
    assert run(ip.link("xw0")).master == "xbr2"
    assert {"xw0", "xw1", "xbr2"} <= set(run(ip.links()))
    run(ip.link_delete("xbr2"))                 # ports are released with the bridge
    assert run(ip.link("xw0")).master == ""


def test_addresses_and_gateway(ns):
    ip = IpRoute(ns)
    subprocess.run(["ip", "-n", ns, "link", "add", "xa0", "type", "veth", "peer", "name",
                    "xa1"], check=True)
    run(ip.set_up("xa0"))
    run(ip.set_ipv4("xa0", "10.77.0.5", 24))
    link = run(ip.link("xa0"))
    assert ("inet", "10.77.0.5", 24, False) in link.addresses
    subprocess.run(["ip", "-n", ns, "route", "add", "default", "via", "10.77.0.1"], check=True)
    assert run(ip.gateway("xa0")) == "10.77.0.1"
    assert run(ip.default_route_device()) == "xa0"
    run(ip.set_ipv4("xa0", None))
    assert not [a for a in run(ip.link("xa0")).addresses if a[0] == "inet"]
