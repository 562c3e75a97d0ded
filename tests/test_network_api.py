"""network, PIF, PIF_metrics, VIF and VLAN through the real server (root namespace):
real bridges and veth NICs with unique names, removed again after each test."""
import json
import secrets
import subprocess
import time

import pytest
import XenAPI
from sdk_failures import failure

NULL = "OpaqueRef:NULL"


def link(name):
    out = subprocess.run(["ip", "-j", "-d", "link", "show", "dev", name], capture_output=True,
                         text=True)
    return json.loads(out.stdout)[0] if out.returncode == 0 else None


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


@pytest.fixture
def networks(xapi):
    made = []
    yield made
    for ref in made:
        try:
            for vif in xapi.network.get_VIFs(ref):
                xapi.VIF.destroy(vif)
            xapi.network.destroy(ref)
        except XenAPI.Failure:
            pass


def new_net(xapi, **fields):
    return xapi.network.create({"other_config": {}, **fields})


@pytest.fixture
def veth():
    """A test NIC: one end of a veth pair (unique names), deleted afterwards."""
    tag = secrets.token_hex(3)
    a, b = f"xtv{tag}a", f"xtv{tag}b"
    subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b], check=True)
    for end in (a, b):
        subprocess.run(["ip", "link", "set", end, "up"], check=True)
    yield a
    subprocess.run(["ip", "link", "del", a], capture_output=True)


def test_internal_management_network_exists(xapi):
    nets = xapi.network.get_by_name_label("Host internal management network")
    assert len(nets) == 1
    rec = xapi.network.get_record(nets[0])
    assert rec["other_config"]["is_host_internal_management_network"] == "true"
    assert rec["bridge"] == "xenapi"


VIF_BASE = {"MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}}


def new_vm(xapi, name):
    template = xapi.VM.get_by_name_label("Other install media")[0]
    vm = xapi.VM.clone(template, name)
    xapi.VM.set_is_a_template(vm, False)
    return vm


def test_bridge_made_on_first_use_and_deleted_by_destroy(xapi, networks):
    net = new_net(xapi, name_label="n1", MTU="1400", other_config={"a": "b"})
    networks.append(net)
    rec = xapi.network.get_record(net)
    bridge = rec["bridge"]
    assert bridge.startswith("xapi") and rec["managed"]
    assert rec["other_config"] == {"a": "b"} and rec["MTU"] == "1400"
    assert link(bridge) is None                  # like xapi: made when first needed
    vm = new_vm(xapi, "bridge user")
    try:
        vif = xapi.VIF.create({**VIF_BASE, "VM": vm, "network": net, "device": "0",
                               "MAC": ""})
        xapi.VM.start(vm, False, False)          # the VIF's bridge is made for the start
        kernel = link(bridge)
        assert kernel["linkinfo"]["info_kind"] == "bridge" and kernel["mtu"] == 1400
        assert xapi.VIF.get_currently_attached(vif)
        xapi.network.set_MTU(net, "1300")
        assert link(bridge)["mtu"] == 1300
        assert failure(xapi.network.set_MTU, net, "20") == ["INVALID_VALUE", "MTU", "20"]
        assert failure(xapi.network.destroy, net) == ["NETWORK_CONTAINS_VIF", vif]
        # Deleted behind our back: the next start makes it again.
        xapi.VM.hard_shutdown(vm)
        assert not xapi.VIF.get_currently_attached(vif)
        subprocess.run(["ip", "link", "del", bridge], check=True)
        xapi.VM.start(vm, False, False)
        assert link(bridge) is not None
        xapi.VM.hard_shutdown(vm)
    finally:
        xapi.VM.destroy(vm)
    xapi.network.set_name_label(net, "renamed")
    xapi.network.add_to_other_config(net, "k", "v")
    assert xapi.network.get_other_config(net) == {"a": "b", "k": "v"}
    xapi.network.destroy(net)
    assert link(bridge) is None


def test_two_networks_get_distinct_bridges(xapi, networks):
    a = new_net(xapi, name_label="a")
    b = new_net(xapi, name_label="b")
    networks += [a, b]
    assert xapi.network.get_bridge(a) != xapi.network.get_bridge(b)


def test_given_bridge_name_is_validated(xapi, networks):
    for bad in ("a b", "x" * 16, "../x", "a;b c", "-x", ".", "eth0/1"):
        assert failure(xapi.network.create, {"name_label": "bad", "bridge": bad, "other_config": {}}) == [
            "INVALID_VALUE", "bridge", bad]
    name = f"xtb{secrets.token_hex(3)}"
    net = new_net(xapi, name_label="mine", bridge=name)
    networks.append(net)
    assert xapi.network.get_bridge(net) == name
    assert failure(xapi.network.create, {"name_label": "dup", "bridge": name, "other_config": {}}) == [
        "BRIDGE_NAME_EXISTS", name]


def test_existing_bridge_is_adopted_not_deleted(xapi, networks):
    name = f"xtb{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        net = new_net(xapi, name_label="adopted", bridge=name)
        xapi.network.destroy(net)
        assert link(name) is not None          # the admin's bridge stays
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def test_nic_name_is_not_a_bridge(xapi, veth):
    assert failure(xapi.network.create, {"name_label": "x", "bridge": veth, "other_config": {}}) == [
        "INVALID_VALUE", "bridge", veth]
    assert link(veth) is not None


def test_pif_scan_finds_the_management_nic(xapi):
    host = xapi.host.get_all()[0]
    xapi.PIF.scan(host)
    pifs = xapi.PIF.get_all_records()
    mgmt = [r for r in pifs.values() if r["management"]]
    assert len(mgmt) == 1
    rec = mgmt[0]
    kernel = link(rec["device"])
    assert rec["MAC"] == kernel["address"] and int(rec["MTU"]) == kernel["mtu"]
    assert rec["physical"] and rec["currently_attached"] and rec["VLAN"] == "-1"
    assert rec["IP"] and rec["netmask"] and rec["ip_configuration_mode"] in ("Static", "DHCP")
    metrics = xapi.PIF_metrics.get_record(rec["metrics"])
    assert metrics["carrier"] is True
    scanned = len(pifs)
    xapi.PIF.scan(host)
    assert len(xapi.PIF.get_all()) == scanned          # scanning twice adds nothing
    pif = [r for r, v in pifs.items() if v["management"]][0]
    for fn, args in ((xapi.PIF.unplug, ()), (xapi.PIF.forget, ()),
                     (xapi.PIF.reconfigure_ip, ("Static", "10.9.9.9", "255.0.0.0", "", ""))):
        assert failure(fn, pif, *args) == ["PIF_IS_MANAGEMENT_INTERFACE", pif]


def test_pif_introduce_plug_unplug_forget(xapi, veth, networks):
    host = xapi.host.get_all()[0]
    assert failure(xapi.PIF.introduce, host, "", "no such dev") == [
        "INVALID_VALUE", "device", "no such dev"]
    pif = xapi.PIF.introduce(host, "", veth)
    rec = xapi.PIF.get_record(pif)
    assert rec["device"] == veth and rec["MAC"] == link(veth)["address"]
    assert not rec["currently_attached"] and not rec["management"]
    net = rec["network"]
    bridge = xapi.network.get_bridge(net)
    assert link(bridge) is None                 # nothing bridged until the admin asks
    assert xapi.PIF_metrics.get_carrier(rec["metrics"]) is True
    assert failure(xapi.network.destroy, net) == ["NETWORK_CONTAINS_PIF", pif]

    xapi.PIF.plug(pif)
    assert link(veth)["master"] == bridge
    assert xapi.PIF.get_currently_attached(pif)
    xapi.PIF.reconfigure_ip(pif, "Static", "10.250.7.1", "255.255.255.0", "10.250.7.254", "")
    addrs = json.loads(subprocess.run(["ip", "-j", "addr", "show", "dev", bridge],
                                      capture_output=True, text=True).stdout)[0]["addr_info"]
    assert any(a["local"] == "10.250.7.1" and a["prefixlen"] == 24 for a in addrs)
    rec = xapi.PIF.get_record(pif)
    assert (rec["IP"], rec["netmask"], rec["ip_configuration_mode"]) == (
        "10.250.7.1", "255.255.255.0", "Static")
    assert rec["gateway"] == "10.250.7.254"
    assert failure(xapi.PIF.reconfigure_ip, pif, "Static", "10.1.1", "255.0.0.0", "", "") == [
        "INVALID_IP_ADDRESS_SPECIFIED", "IP"]
    xapi.PIF.reconfigure_ip(pif, "None", "", "", "", "")
    assert xapi.PIF.get_record(pif)["IP"] == ""

    # The NIC leaves the bridge behind our back: the PIF says so.
    subprocess.run(["ip", "link", "set", veth, "nomaster"], check=True)
    assert not xapi.PIF.get_record(pif)["currently_attached"]
    xapi.PIF.plug(pif)
    xapi.PIF.unplug(pif)
    assert "master" not in link(veth)
    xapi.PIF.forget(pif)
    assert pif not in xapi.PIF.get_all()
    assert link(veth) is not None               # forgetting leaves the NIC alone
    xapi.network.destroy(net)
    assert link(bridge) is None


def test_vlan_create_checks_and_cleans_up(xapi, veth, networks):
    host = xapi.host.get_all()[0]
    pif = xapi.PIF.introduce(host, "", veth)
    net = new_net(xapi, name_label="vlan net")
    networks.append(net)
    bridge = xapi.network.get_bridge(net)
    for tag in ("-1", "4095"):
        assert failure(xapi.VLAN.create, pif, tag, net) == ["VLAN_TAG_INVALID", tag]
    try:
        vlan = xapi.VLAN.create(pif, "42", net)
    except XenAPI.Failure as exc:
        # Kernels without CONFIG_VLAN_8021Q refuse the device: nothing is left behind.
        assert exc.details[0] == "INTERNAL_ERROR" and "Unknown device type" in exc.details[1]
        assert link(f"{veth}.42") is None
        assert xapi.VLAN.get_all() == [] and xapi.network.get_PIFs(net) == []
        assert link(bridge) is None                # made for the VLAN: removed again
        xapi.PIF.forget(pif)
        pytest.skip("this kernel has no 802.1Q VLAN support")
    untagged = xapi.VLAN.get_untagged_PIF(vlan)
    assert xapi.PIF.get_VLAN(untagged) == "42"
    assert link(f"{veth}.42")["master"] == bridge
    assert failure(xapi.VLAN.create, pif, "42", new_net(xapi))[0] == \
        "PIF_VLAN_EXISTS"
    xapi.VLAN.destroy(vlan)
    assert link(f"{veth}.42") is None
    xapi.PIF.forget(pif)


def test_vif_create_mac_and_devices(xapi, networks):
    net = new_net(xapi, name_label="vifs")
    networks.append(net)
    vm = new_vm(xapi, "vif test")
    try:
        base = {**VIF_BASE, "VM": vm, "network": net}
        vif = xapi.VIF.create({**base, "device": "0", "MAC": ""})
        rec = xapi.VIF.get_record(vif)
        mac = rec["MAC"]
        first = int(mac[:2], 16)
        assert len(mac) == 17 and first & 2 and not first & 1   # local, unicast
        assert rec["MAC_autogenerated"] and not rec["currently_attached"]
        assert "0" not in xapi.VM.get_allowed_VIF_devices(vm)
        assert failure(xapi.VIF.create, {**base, "device": "0", "MAC": ""}) == [
            "DEVICE_ALREADY_EXISTS", "0"]
        assert failure(xapi.VIF.create, {**base, "device": "x", "MAC": ""}) == [
            "INVALID_DEVICE", "x"]
        assert failure(xapi.VIF.create, {**base, "device": "1", "MAC": "zz"}) == [
            "MAC_INVALID", "zz"]
        assert failure(xapi.VIF.create, {**base, "device": "1", "MAC": "01:00:00:00:00:01"})[0] \
            == "MAC_INVALID"
        vif1 = xapi.VIF.create({**base, "device": "1", "MAC": "02:AB:00:00:00:01"})
        assert xapi.VIF.get_MAC(vif1) == "02:ab:00:00:00:01"
        assert not xapi.VIF.get_MAC_autogenerated(vif1)
        macs = {xapi.VIF.create({**base, "device": str(d), "MAC": ""}) for d in range(2, 6)}
        assert len({xapi.VIF.get_MAC(v) for v in macs} | {mac}) == 5
        assert failure(xapi.network.destroy, net)[0] == "NETWORK_CONTAINS_VIF"
        assert failure(xapi.VIF.plug, vif) == ["VM_BAD_POWER_STATE", vm, "running", "halted"]
        xapi.VIF.set_locking_mode(vif, "disabled")
        assert xapi.VIF.get_locking_mode(vif) == "disabled"
        xapi.VIF.destroy(vif)
        assert vif not in xapi.network.get_VIFs(net)
    finally:
        xapi.VM.destroy(vm)


@pytest.fixture
def nic_vm(xapi, networks):
    """(vm, network, made): a VM and a network of the test's own; every VM in `made`
    (the first one, and those the test adds) is removed after, its VIFs first."""
    net = new_net(xapi, name_label="nic tests")
    networks.append(net)
    made = [new_vm(xapi, "nic source")]
    yield made[0], net, made
    for ref in reversed(made):
        for vif in xapi.VM.get_VIFs(ref):
            xapi.VIF.destroy(vif)
        xapi.VM.destroy(ref)


def test_clone_and_copy_keep_the_nics_with_new_macs(xapi, nic_vm):
    """As xapi: each VIF of the source comes along (device, network, MTU, settings),
    with a MAC of its own and none of the source's address configuration."""
    vm, net, made = nic_vm
    base = {**VIF_BASE, "VM": vm, "network": net}
    xapi.VIF.create({**base, "device": "0", "MAC": "02:ab:00:00:00:07", "MTU": "9000",
                     "other_config": {"k": "v"}})
    xapi.VIF.create({**base, "device": "2", "MAC": ""})
    source = {r["device"]: r for r in
              (xapi.VIF.get_record(v) for v in xapi.VM.get_VIFs(vm))}
    sr = xapi.pool.get_default_SR(xapi.pool.get_all()[0])
    clone = xapi.VM.clone(vm, "nic clone")
    made.append(clone)
    copies = [clone]
    if sr != "OpaqueRef:NULL":
        copies.append(xapi.VM.copy(vm, "nic copy", sr))
        made.append(copies[-1])
    for new in copies:
        got = {r["device"]: r for r in
               (xapi.VIF.get_record(v) for v in xapi.VM.get_VIFs(new))}
        assert sorted(got) == ["0", "2"]
        for device, rec in got.items():
            assert rec["network"] == net and rec["VM"] == new
            assert rec["MTU"] == source[device]["MTU"]
            assert rec["other_config"] == source[device]["other_config"]
            assert rec["MAC"] != source[device]["MAC"] and rec["MAC_autogenerated"]
            assert rec["ipv4_configuration_mode"] == "None"
    assert len(xapi.VM.get_VIFs(vm)) == 2                 # the source keeps its own


def test_snapshot_keeps_the_nics_and_revert_brings_them_back(xapi, nic_vm):
    """As xapi (preserve_mac_address for snapshots): a snapshot's VIFs carry the VM's
    MACs, and VM.revert replaces whatever NICs the VM has since with the snapshot's."""
    vm, net, made = nic_vm
    base = {**VIF_BASE, "VM": vm, "network": net}
    xapi.VIF.create({**base, "device": "0", "MAC": "02:ab:00:00:01:07", "MTU": "1400"})
    snap = xapi.VM.snapshot(vm, "with one nic")
    made.append(snap)
    (snap_vif,) = xapi.VM.get_VIFs(snap)
    assert xapi.VIF.get_MAC(snap_vif) == "02:ab:00:00:01:07"
    assert xapi.VIF.get_network(snap_vif) == net
    # The VM changes its NICs after the snapshot ...
    for vif in xapi.VM.get_VIFs(vm):
        xapi.VIF.destroy(vif)
    xapi.VIF.create({**base, "device": "1", "MAC": "02:ab:00:00:01:08"})
    xapi.VIF.create({**base, "device": "2", "MAC": ""})
    # ... and the revert gives it back exactly the snapshot's.
    xapi.VM.revert(snap)
    got = [xapi.VIF.get_record(v) for v in xapi.VM.get_VIFs(vm)]
    assert [(r["device"], r["MAC"], r["MTU"]) for r in got] == \
        [("0", "02:ab:00:00:01:07", "1400")]
    assert got[0]["VM"] == vm and got[0]["network"] == net
    assert xapi.VM.get_VIFs(snap) == [snap_vif]           # the snapshot keeps its own
