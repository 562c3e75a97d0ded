"""PIF: the host's NICs (and VLAN devices, see vlan.py). scan/introduce/forget,
plug/unplug (the NIC joins or leaves its network's bridge with its addresses and
routes: only when the admin asks), db_introduce/db_forget (records alone), and
PIF_metrics from the kernel. IP configuration and properties: pif_config.py; the
management interface: management.py.

The management PIF (the NIC of the host's default route) is attached as it is until
host.management_reconfigure moves it under its bridge; unplug and forget refuse it.
"""
from __future__ import annotations

from ..backends.network import NetworkError
from ..dispatch.generic import check_ref
from ..dispatch.registry import implements, implements_fresh_reads
from ..errors import ApiError
from ..services.network.bridging import (MANAGEMENT_DISABLED, bridge_pif, device_of,
                                         unbridge_pif)
from ..services.network.names import check_name
from ..services.network.runtime import NULL, now
from .vlan import create_vlan as make_vlan, destroy_vlan, pif_of_device

DEFAULT_PROPERTIES = {"gro": "on"}    # xapi's, for physical PIFs and bond masters


def _resolv_dns() -> str:
    try:
        with open("/etc/resolv.conf") as f:
            return ",".join(line.split()[1] for line in f
                            if line.startswith("nameserver") and len(line.split()) > 1)
    except OSError:
        return ""


async def _introduce(server, host: str, link, managed: bool = True) -> str:
    """A PIF (with metrics and a network of its own) for an existing NIC."""
    store, rt = server.store, server.runtime(host).net
    mgmt_dev = await rt.ip.default_route_device()
    network = store.create("network", {
        "name_label": f"Pool-wide network associated with {link.name}",
        "bridge": await rt.allocate_bridge_name(), "MTU": link.mtu, "managed": managed})
    metrics = store.create("PIF_metrics", {"last_updated": now()})
    management = link.name == mgmt_dev and not store.meta.get(MANAGEMENT_DISABLED)
    pif = store.create("PIF", {
        "device": link.name, "network": network, "host": host, "MAC": link.mac,
        "MTU": link.mtu, "VLAN": -1, "metrics": metrics, "physical": True,
        "management": management, "managed": managed, "currently_attached": False,
        "DNS": _resolv_dns() if management else "",
        "gateway": await rt.ip.gateway(link.name) if management else "",
        "properties": await _kernel_properties(rt, link.name)})
    await rt.refresh_pif(pif)
    return pif


async def _kernel_properties(rt, dev: str) -> dict:
    """The device's own GRO setting where ethtool can read it, else xapi's default."""
    try:
        return {**DEFAULT_PROPERTIES, **await rt.tools.features(dev)}
    except NetworkError:
        return dict(DEFAULT_PROPERTIES)


async def apply_properties(server, pif: str):
    """properties (gro) to the device, as xapi does when it brings a PIF up."""
    rec = server.store.record("PIF", pif)
    tools = server.runtime_of_pif(pif).net.tools
    for name, value in rec["properties"].items():
        try:
            await tools.set_feature(device_of(rec), name, value)
        except NetworkError as exc:
            raise ApiError("PIF_CONFIGURATION_ERROR", pif, str(exc)) from None


async def scan_host(server):
    """NICs backed by a bus device, and whatever carries the default route (in a
    container or VM that may be a virtual NIC), get a PIF if they have none."""
    host = server.host_ref
    rt = server.runtime(host).net
    links = await rt.ip.links()
    mgmt = await rt.ip.default_route_device()
    for link in links.values():
        if not link.mac or link.kind not in ("", "veth") or link.vlan_id >= 0:
            continue
        if (link.physical or link.name == mgmt) and \
                pif_of_device(server.store, host, link.name) is None:
            await _introduce(server, host, link)
    await rt.refresh()


def _this_host(ctx, host):
    ctx.store.record("host", host)
    if host != ctx.server.host_ref:
        raise ApiError("HOST_OFFLINE", host)


@implements("PIF.scan")
async def scan(ctx, host):
    _this_host(ctx, host)
    await scan_host(ctx.server)


@implements("PIF.introduce")
async def introduce(ctx, host, MAC, device, managed):
    _this_host(ctx, host)
    check_name("device", device)
    if pif_of_device(ctx.store, host, device) is not None:
        raise ApiError("DUPLICATE_PIF_DEVICE_NAME", device)
    link = await ctx.server.runtime(host).net.ip.link(device)
    if link is None or not link.mac or (MAC and MAC.lower() != link.mac.lower()):
        raise ApiError(
            "COULD_NOT_FIND_NETWORK_INTERFACE_WITH_SPECIFIED_DEVICE_NAME_AND_MAC_ADDRESS",
            device, MAC)
    return await _introduce(ctx.server, host, link, managed)


def _refuse_management(rec, pif):
    if rec["management"]:
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", pif)


@implements("PIF.forget")
async def forget(ctx, self):
    store = ctx.store
    rec = store.record("PIF", self)
    _refuse_management(rec, self)
    if rec["VLAN_slave_of"]:
        raise ApiError("PIF_VLAN_STILL_EXISTS", self)
    if rec["VLAN_master_of"] != NULL:
        await destroy_vlan(ctx, rec["VLAN_master_of"])
        return
    if rec["managed"]:
        await unbridge_pif(ctx.server, self, link_down=False)   # the NIC keeps its addresses
    if store.exists("PIF_metrics", rec["metrics"]):
        store.delete("PIF_metrics", rec["metrics"])
    store.delete("PIF", self)


def assert_managed(rec, pif):
    if not rec["managed"]:
        raise ApiError("PIF_UNMANAGED", pif)


@implements("PIF.plug")
async def plug(ctx, self):
    """The NIC (or VLAN device) is brought up as a port of its network's bridge; its
    addresses and routes move to the bridge (services/network/bridging.py). The
    management PIF is attached as it is (host.management_reconfigure bridges it)."""
    rec = ctx.store.record("PIF", self)
    assert_managed(rec, self)
    if rec["bond_slave_of"] != NULL:
        raise ApiError("CANNOT_PLUG_BOND_SLAVE", self)
    if rec["management"]:
        return
    if await ctx.server.runtime_of_pif(self).net.ip.link(device_of(rec)) is None:
        raise ApiError("INTERNAL_ERROR", f"network: device {device_of(rec)} does not exist")
    await bridge_pif(ctx.server, self)
    await apply_properties(ctx.server, self)


def assert_no_vifs_in_use(store, network: str, host: str):
    """Unplugging the NIC would cut guests of this host off (xapi: VIF_IN_USE)."""
    for vif in store.get("network", network, "VIFs"):
        rec = store.record("VIF", vif)
        if rec["currently_attached"] and store.exists("VM", rec["VM"]) and \
                store.get("VM", rec["VM"], "resident_on") == host:
            raise ApiError("VIF_IN_USE", network, vif)


@implements("PIF.unplug")
async def unplug(ctx, self):
    """The device leaves the bridge, taking its addresses back, and its link goes down."""
    rec = ctx.store.record("PIF", self)
    assert_managed(rec, self)
    _refuse_management(rec, self)
    assert_no_vifs_in_use(ctx.store, rec["network"], rec["host"])
    if rec["disallow_unplug"]:
        raise ApiError("PIF_DOES_NOT_ALLOW_UNPLUG", self)
    await unbridge_pif(ctx.server, self)


@implements("PIF.db_introduce")
def db_introduce(ctx, device, network, host, MAC, MTU, VLAN, physical, ip_configuration_mode,
                 IP, netmask, gateway, DNS, bond_slave_of, VLAN_master_of, management,
                 other_config, disallow_unplug, ipv6_configuration_mode, IPv6, ipv6_gateway,
                 primary_address_type, managed, properties):
    """A PIF record as given, nothing done to the kernel (xapi uses it when a host joins
    a pool); not attached until plugged."""
    store = ctx.store
    for cls, ref in (("network", network), ("host", host)):
        check_ref(ctx, cls, ref)
        store.record(cls, ref)
    check_ref(ctx, "Bond", bond_slave_of)
    check_ref(ctx, "VLAN", VLAN_master_of)
    metrics = store.create("PIF_metrics", {"last_updated": now()})
    return store.create("PIF", {
        "device": device, "network": network, "host": host, "MAC": MAC, "MTU": MTU,
        "VLAN": VLAN, "metrics": metrics, "physical": physical, "currently_attached": False,
        "ip_configuration_mode": ip_configuration_mode, "IP": IP, "netmask": netmask,
        "gateway": gateway, "DNS": DNS, "bond_slave_of": bond_slave_of,
        "VLAN_master_of": VLAN_master_of, "management": management,
        "other_config": other_config, "disallow_unplug": disallow_unplug,
        "ipv6_configuration_mode": ipv6_configuration_mode, "IPv6": IPv6,
        "ipv6_gateway": ipv6_gateway, "primary_address_type": primary_address_type,
        "managed": managed, "properties": properties})


@implements("PIF.db_forget")
def db_forget(ctx, self):
    """The record alone goes (and its metrics); the kernel is left as it is."""
    rec = ctx.store.record("PIF", self)
    if ctx.store.exists("PIF_metrics", rec["metrics"]):
        ctx.store.delete("PIF_metrics", rec["metrics"])
    ctx.store.delete("PIF", self)


@implements("PIF.destroy")
async def destroy(ctx, self):
    rec = ctx.store.record("PIF", self)
    if rec["physical"] or rec["VLAN_master_of"] == NULL:
        raise ApiError("PIF_IS_PHYSICAL", self)
    await destroy_vlan(ctx, rec["VLAN_master_of"])


@implements("PIF.create_VLAN")
async def create_vlan(ctx, device, network, host, VLAN):
    _this_host(ctx, host)
    tagged = pif_of_device(ctx.store, host, device)
    if tagged is None:
        raise ApiError("INVALID_VALUE", "device", device)
    vlan = await make_vlan(ctx, tagged, VLAN, network)
    return ctx.store.get("VLAN", vlan, "untagged_PIF")


async def _fresh(ctx, pif) -> dict:
    """Reads of one PIF see the kernel as it is now (a pool member's PIF: as the member
    last reported it)."""
    if ctx.store.record("PIF", pif)["host"] not in ctx.server.runtimes:
        return ctx.store.record("PIF", pif)
    await ctx.server.runtime_of_pif(pif).net.refresh_pif(pif)
    return ctx.store.record("PIF", pif)


implements_fresh_reads("PIF", _fresh)
