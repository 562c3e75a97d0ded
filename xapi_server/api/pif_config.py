"""A PIF's IP configuration and properties, applied to the kernel at once:
reconfigure_ip (IPv4), reconfigure_ipv6, set_property (gro, through ethtool).

Addresses go where the device's traffic is: its bridge when it is a port of one (as
xapi's bridge carries the PIF's address), else the device itself. A gateway is kept in
the record; the host's default route is the management interface's alone, so only that
PIF's IPv6 gateway becomes a route. The management PIF's IPv4 configuration is refused
(PIF_IS_MANAGEMENT_INTERFACE): it is how clients reach this server, and this server runs
no DHCP client to fall back on. xapi checks the same things in the same order
(xapi_pif.ml): managed, HA/redo log, then the addresses.
"""
from __future__ import annotations

import ipaddress

from ..backends.network import NetworkError
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.network.bridging import device_of
from ..services.network.errors import kernel_error
from .pif import assert_managed

PROPERTIES = {"gro": ("on", "off")}     # xapi's settable PIF properties


def _valid(version: int, text: str) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _check_ips(version: int, **values):
    for param, value in values.items():
        if value and not _valid(version, value):
            raise ApiError("INVALID_IP_ADDRESS_SPECIFIED", param)


def _check_dns(version: int, dns: str):
    for address in filter(None, dns.split(",")):
        if not _valid(version, address.strip()):
            raise ApiError("INVALID_IP_ADDRESS_SPECIFIED", "DNS")


def assert_no_protection(store, rec):
    """HA or the redo log depend on attached interfaces staying as they are."""
    if rec["currently_attached"]:
        pool = next(iter(store.tables["pool"].values()))
        if pool["ha_enabled"]:
            raise ApiError("HA_IS_ENABLED")
        if pool["redo_log_enabled"]:
            raise ApiError("REDO_LOG_IS_ENABLED")


async def _carrier(rt, rec) -> str:
    """The device that carries the PIF's addresses: its bridge, if it is a port."""
    dev = device_of(rec)
    link = await rt.ip.link(dev)
    if link is None:
        raise ApiError("INTERNAL_ERROR", f"network: device {dev} does not exist")
    return link.master or dev


@implements("PIF.reconfigure_ip")
async def reconfigure_ip(ctx, self, mode, IP, netmask, gateway, DNS):
    store, rt = ctx.store, ctx.server.runtime_of_pif(self).net
    rec = store.record("PIF", self)
    assert_managed(rec, self)
    assert_no_protection(store, rec)
    if mode == "Static":
        _check_ips(4, IP=IP or "-", netmask=netmask or "-")
    _check_ips(4, IP=IP, netmask=netmask, gateway=gateway)
    _check_dns(4, DNS)
    prefix = 0
    if mode == "Static":
        try:
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:      # 255.0.255.0: an address, but no netmask
            raise ApiError("INVALID_IP_ADDRESS_SPECIFIED", "netmask") from None
    if rec["management"]:
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", self)
    if mode == "DHCP":
        raise ApiError("VALUE_NOT_SUPPORTED", "mode", mode, "this server runs no DHCP client")
    try:
        await rt.ip.set_ipv4(await _carrier(rt, rec), IP if mode == "Static" else None, prefix)
    except NetworkError as exc:
        raise kernel_error(exc) from None
    store.update("PIF", self, gateway=gateway if mode == "Static" else "",
                 DNS=DNS if mode == "Static" else "")
    await rt.refresh_pif(self)


@implements("PIF.reconfigure_ipv6")
async def reconfigure_ipv6(ctx, self, mode, IPv6, gateway, DNS):
    """Static: IPv6 (address/prefix) replaces the global addresses; Autoconf: router
    adverts configure the device (SLAAC); None: no global address. DHCP needs a
    DHCPv6 client, which this server does not run."""
    store, rt = ctx.store, ctx.server.runtime_of_pif(self).net
    rec = store.record("PIF", self)
    assert_managed(rec, self)
    assert_no_protection(store, rec)
    _check_ips(6, gateway=gateway)
    network = None
    if IPv6:
        try:
            network = ipaddress.IPv6Interface(IPv6)
        except ValueError:
            raise ApiError("INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6") from None
        if "/" not in IPv6:
            raise ApiError("INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6")
    _check_dns(6, DNS)
    if rec["management"] and mode == "None" and rec["primary_address_type"] == "IPv6":
        raise ApiError("PIF_IS_MANAGEMENT_INTERFACE", self)
    if mode == "DHCP":
        raise ApiError("VALUE_NOT_SUPPORTED", "mode", mode, "this server runs no DHCPv6 client")
    if mode == "Static" and network is None:
        raise ApiError("INVALID_CIDR_ADDRESS_SPECIFIED", "IPv6")
    carrier = await _carrier(rt, rec)
    try:
        await rt.tools.set_ipv6_autoconf(carrier, mode == "Autoconf")
        static = network if mode == "Static" else None
        await rt.ip.set_ipv6(carrier, str(static.ip) if static else None,
                             static.network.prefixlen if static else 0)
        if rec["management"] and gateway and mode == "Static":
            await rt.ip.batch([["route", "replace", "::/0", "via", gateway, "dev", carrier]])
    except NetworkError as exc:
        raise kernel_error(exc) from None
    changes = {"ipv6_configuration_mode": mode, "ipv6_gateway": gateway}
    if DNS:
        changes["DNS"] = DNS
    store.update("PIF", self, **changes)
    await rt.refresh_pif(self)


@implements("PIF.set_property")
async def set_property(ctx, self, name, value):
    """gro=on|off: generic receive offload of the NIC, set with ethtool and kept."""
    store = ctx.store
    rec = store.record("PIF", self)
    if value not in PROPERTIES.get(name, ()):
        raise ApiError("INVALID_VALUE", "properties", f"{name} = {value}")
    if not (rec["physical"] or rec["bond_master_of"]) or rec["bond_slave_of"] != "OpaqueRef:NULL":
        raise ApiError("CANNOT_CHANGE_PIF_PROPERTIES", self)
    rt = ctx.server.runtime_of_pif(self).net
    if await rt.ip.link(device_of(rec)) is not None:
        try:
            await rt.tools.set_feature(device_of(rec), name, value)
        except NetworkError as exc:
            raise ApiError("PIF_CONFIGURATION_ERROR", self, str(exc)) from None
    store.update("PIF", self, properties={**rec["properties"], name: value})
