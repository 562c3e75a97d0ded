"""PIF: the host's NICs (and VLAN devices, see vlan.py). scan/introduce/forget,
plug/unplug (the NIC joins or leaves its network's bridge: only when the admin asks),
reconfigure_ip where safe, and PIF_metrics from the kernel.

The management PIF (the NIC of the host's default route) is never changed by us:
it is attached as it is, and reconfigure_ip, unplug and forget refuse it.
"""
from __future__ import annotations

import ipaddress

from ..backends.network import NetworkError
from ..dispatch.registry import implements, implements_fresh_reads
from ..errors import ApiError
from ..services.network.errors import kernel_error
from ..services.network.names import check_name
from ..services.network.runtime import NULL, now, vlan_device_name
from .vlan import create_vlan as make_vlan, destroy_vlan


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
    management = link.name == mgmt_dev
    pif = store.create("PIF", {
        "device": link.name, "network": network, "host": host, "MAC": link.mac,
        "MTU": link.mtu, "VLAN": -1, "metrics": metrics, "physical": True,
        "management": management, "managed": managed, "currently_attached": False,
        "DNS": _resolv_dns() if management else "",
        "gateway": await rt.ip.gateway(link.name) if management else ""})
    await rt.refresh_pif(pif)
    return pif


def _pif_of_device(store, host, device):
    for ref, rec in store.tables["PIF"].items():
        if rec["host"] == host and rec["device"] == device and rec["VLAN"] < 0:
            return ref
    return None


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
                _pif_of_device(server.store, host, link.name) is None:
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
    if _pif_of_device(ctx.store, host, device) is not None:
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
    if rec["currently_attached"]:
        await _release(ctx, self)
    if store.exists("PIF_metrics", rec["metrics"]):
        store.delete("PIF_metrics", rec["metrics"])
    store.delete("PIF", self)


def _device(rec) -> str:
    return rec["device"] if rec["VLAN"] < 0 else vlan_device_name(rec["device"], rec["VLAN"])


@implements("PIF.plug")
async def plug(ctx, self):
    """The NIC (or VLAN device) becomes a port of its network's bridge. Static IPv4
    addresses move to the bridge, as xapi's bridge does."""
    store, rt = ctx.store, ctx.server.runtime_of_pif(self).net
    rec = store.record("PIF", self)
    if rec["management"]:
        return   # attached as it is: we never re-plumb the management NIC
    dev = _device(rec)
    link = await rt.ip.link(dev)
    if link is None:
        raise ApiError("INTERNAL_ERROR", f"network: device {dev} does not exist")
    try:
        bridge, made = await rt.ensure_bridge(rec["network"])
    except NetworkError as exc:
        raise kernel_error(exc) from None
    try:
        await rt.ip.set_up(dev)
        await rt.ip.set_master(dev, bridge)
        v4 = [a for a in link.addresses if a[0] == "inet" and not a[3]]
        if v4:
            await rt.ip.set_ipv4(bridge, v4[0][1], v4[0][2])
            await rt.ip.set_ipv4(dev, None)
    except NetworkError as exc:
        if made:
            await rt.delete_bridge(bridge)
        elif (await rt.ip.link(dev) or link).master == bridge:
            await rt.ip.set_master(dev, None)
        raise kernel_error(exc) from None
    await rt.refresh_pif(self)


async def _release(ctx, pif):
    rt = ctx.server.runtime_of_pif(pif).net
    dev = _device(ctx.store.record("PIF", pif))
    if await rt.ip.link(dev) is not None:
        try:
            await rt.ip.set_master(dev, None)
        except NetworkError as exc:
            raise kernel_error(exc) from None
    await rt.refresh_pif(pif)


@implements("PIF.unplug")
async def unplug(ctx, self):
    rec = ctx.store.record("PIF", self)
    _refuse_management(rec, self)
    if rec["disallow_unplug"]:
        raise ApiError("PIF_DOES_NOT_ALLOW_UNPLUG", self)
    await _release(ctx, self)


@implements("PIF.reconfigure_ip")
async def reconfigure_ip(ctx, self, mode, IP, netmask, gateway, DNS):
    """Static or None on a PIF that is not the management interface. The gateway is
    recorded only: a default route belongs to the management interface alone."""
    store, rt = ctx.store, ctx.server.runtime_of_pif(self).net
    rec = store.record("PIF", self)
    _refuse_management(rec, self)
    if mode == "DHCP":
        raise ApiError("VALUE_NOT_SUPPORTED", "mode", mode, "this server runs no DHCP client")
    prefix = 0
    if mode == "Static":
        try:
            ipaddress.IPv4Address(IP)
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            raise ApiError("INVALID_IP_ADDRESS_SPECIFIED", "IP" if not _is_v4(IP)
                           else "netmask") from None
        if gateway and not _is_v4(gateway):
            raise ApiError("INVALID_IP_ADDRESS_SPECIFIED", "gateway")
    dev = _device(rec)
    link = await rt.ip.link(dev)
    if link is None:
        raise ApiError("INTERNAL_ERROR", f"network: device {dev} does not exist")
    carrier = link.master or dev      # a bridged NIC's address lives on the bridge
    try:
        await rt.ip.set_ipv4(carrier, IP if mode == "Static" else None, prefix)
    except NetworkError as exc:
        raise kernel_error(exc) from None
    store.update("PIF", self, gateway=gateway if mode == "Static" else "",
                 DNS=DNS if mode == "Static" else "")
    await rt.refresh_pif(self)


def _is_v4(text) -> bool:
    try:
        ipaddress.IPv4Address(text)
        return True
    except ValueError:
        return False


@implements("PIF.destroy")
async def destroy(ctx, self):
    rec = ctx.store.record("PIF", self)
    if rec["physical"] or rec["VLAN_master_of"] == NULL:
        raise ApiError("PIF_IS_PHYSICAL", self)
    await destroy_vlan(ctx, rec["VLAN_master_of"])


@implements("PIF.create_VLAN")
async def create_vlan(ctx, device, network, host, VLAN):
    _this_host(ctx, host)
    tagged = _pif_of_device(ctx.store, host, device)
    if tagged is None:
        raise ApiError("INVALID_VALUE", "device", device)
    vlan = await make_vlan(ctx, tagged, VLAN, network)
    return ctx.store.get("VLAN", vlan, "untagged_PIF")


async def _fresh(ctx, pif) -> dict:
    """Reads of one PIF see the kernel as it is now."""
    ctx.store.record("PIF", pif)
    await ctx.server.runtime_of_pif(pif).net.refresh_pif(pif)
    return ctx.store.record("PIF", pif)


implements_fresh_reads("PIF", _fresh)
