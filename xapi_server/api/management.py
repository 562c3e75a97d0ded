"""The host's management interface (xapi_host.ml, xapi_pool.ml):

- host.management_reconfigure(pif): the PIF's NIC goes under its network's bridge with
  the host's addresses and routes, and becomes the management interface. The move is
  verified (the gateway, or setting management_probe, must answer ping) and rolled back
  when the host would lose its connectivity (services/network/uplink.py); the failure
  is PIF_CONFIGURATION_ERROR with what happened. Remembered: the next start moves it
  again (the kernel forgets at a reboot).
- host.management_disable: no PIF is the management interface any more (listening
  stays as the server's settings say: one server process serves every address).
- host.local_management_reconfigure: for a pool member in emergency mode only, as xapi;
  this server never is (POOL_NOT_IN_EMERGENCY_MODE).
- pool.management_reconfigure(network): every host's PIF on the network, as above.
"""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.network.bridging import (MANAGEMENT_BRIDGED, bridge_pif, management_pif,
                                         set_management)

NULL = "OpaqueRef:NULL"


def _pool(store) -> dict:
    return next(iter(store.tables["pool"].values()))


def _assert_no_ha(store):
    if _pool(store)["ha_enabled"]:
        raise ApiError("HA_IS_ENABLED")


def assert_usable_for_management(store, pif: str, rec: dict):
    if rec["bond_slave_of"] != NULL:
        raise ApiError("CANNOT_PLUG_BOND_SLAVE", pif)
    if rec["primary_address_type"] == "IPv6":
        if rec["ipv6_configuration_mode"] == "None":
            raise ApiError("PIF_HAS_NO_V6_NETWORK_CONFIGURATION", pif)
    elif rec["ip_configuration_mode"] == "None":
        raise ApiError("PIF_HAS_NO_NETWORK_CONFIGURATION", pif)


@implements("host.management_reconfigure")
async def management_reconfigure(ctx, pif):
    store = ctx.store
    _assert_no_ha(store)
    await ctx.server.runtime_of_pif(pif).net.refresh_pif(pif)   # the kernel's addresses now
    rec = store.record("PIF", pif)
    if rec["host"] != ctx.server.host_ref:
        raise ApiError("HOST_OFFLINE", rec["host"])
    if rec["managed"]:
        assert_usable_for_management(store, pif, rec)
        current = management_pif(store, rec["host"])
        if current and store.get("PIF", current, "primary_address_type") != \
                rec["primary_address_type"]:
            raise ApiError("PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE", pif)
    previous = management_pif(store, rec["host"])
    set_management(store, rec["host"], pif)          # the move's probe is the manager's
    try:
        await bridge_pif(ctx.server, pif)
    except ApiError:
        set_management(store, rec["host"], previous)
        raise
    store.set_meta(MANAGEMENT_BRIDGED, "true")


@implements("host.management_disable")
def management_disable(ctx):
    _assert_no_ha(ctx.store)
    set_management(ctx.store, ctx.server.host_ref, None)
    ctx.store.set_meta(MANAGEMENT_BRIDGED, "")


@implements("host.local_management_reconfigure")
def local_management_reconfigure(ctx, interface):
    raise ApiError("POOL_NOT_IN_EMERGENCY_MODE")


@implements("pool.management_reconfigure")
async def pool_management_reconfigure(ctx, network):
    store = ctx.store
    _assert_no_ha(store)
    pifs = store.record("network", network)["PIFs"]
    by_host = {store.get("PIF", p, "host"): p for p in pifs}
    for host in store.tables["host"]:
        if host not in by_host:
            raise ApiError("PIF_NOT_PRESENT", host, network)
    address_type = store.get("PIF", pifs[0], "primary_address_type")
    for pif in pifs:
        rec = store.record("PIF", pif)
        if rec["primary_address_type"] != address_type:
            raise ApiError("PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE", pif)
        assert_usable_for_management(store, pif, rec)
    # members first, this host (the coordinator) last, as xapi
    for host in sorted(by_host, key=lambda h: h == ctx.server.host_ref):
        await management_reconfigure(ctx, by_host[host])
