"""A PIF's NIC in and out of its network's bridge, in XenAPI terms (uplink.py does the
kernel work): PIF.plug / unplug and host.management_reconfigure call these, and
Server.startup calls `bridge_management_at_start` (setting `management_bridge`, or a
management interface moved under its bridge before: the kernel forgets it at a reboot).

Which PIF is the management interface is the store's `management` flag; the meta key
MANAGEMENT_BRIDGED says the admin had it bridged, MANAGEMENT_DISABLED that
host.management_disable left the host without one.
"""
from __future__ import annotations

import logging

from ...backends.network import NetworkError
from ...errors import ApiError
from .errors import kernel_error
from .names import check_name
from .runtime import vlan_device_name
from .uplink import MoveRefused, move_back, move_under_bridge

log = logging.getLogger(__name__)

MANAGEMENT_BRIDGED = "network.management_bridged"
MANAGEMENT_DISABLED = "network.management_disabled"


def device_of(rec) -> str:
    return rec["device"] if rec["VLAN"] < 0 else vlan_device_name(rec["device"], rec["VLAN"])


async def bridge_pif(server, pif: str) -> None:
    """The PIF's device under its network's bridge with its addresses and routes. A
    failed move leaves the kernel as it was: PIF_CONFIGURATION_ERROR says why."""
    store, rt = server.store, server.runtime_of_pif(pif).net
    rec = store.record("PIF", pif)
    net = store.record("network", rec["network"])
    bridge = check_name("bridge", net["bridge"])
    if not net["managed"] and await rt.ip.link(bridge) is None:
        raise ApiError("PIF_CONFIGURATION_ERROR", pif,
                       f"bridge {bridge} of an unmanaged network does not exist")
    settings = server.settings
    probe = settings.management_probe if rec["management"] else ""
    try:
        await rt.ip.set_up(device_of(rec))
        plan = await move_under_bridge(rt.ip, rt.tools, device_of(rec), bridge, probe,
                                       settings.management_probe_timeout)
    except MoveRefused as exc:
        await rt.refresh_pif(pif)
        raise ApiError("PIF_CONFIGURATION_ERROR", pif, str(exc)) from None
    except NetworkError as exc:
        raise kernel_error(exc) from None
    if plan.made_bridge:
        rt.mark_owned(bridge)
    await rt.refresh_pif(pif)


async def unbridge_pif(server, pif: str, link_down: bool = True) -> None:
    """The reverse: addresses and routes back on the device, the device out of the
    bridge and (unplug) its link down."""
    store, rt = server.store, server.runtime_of_pif(pif).net
    rec = store.record("PIF", pif)
    dev = device_of(rec)
    bridge = store.get("network", rec["network"], "bridge") \
        if store.exists("network", rec["network"]) else ""
    link = await rt.ip.link(dev)
    try:
        if link is not None and link.master and link.master == bridge:
            await move_back(rt.ip, dev, bridge)
        elif link is not None and link.master:
            await rt.ip.set_master(dev, None)
        if link is not None and link_down:
            await rt.ip.set_up(dev, False)
    except NetworkError as exc:
        raise kernel_error(exc) from None
    await rt.refresh_pif(pif)


def set_management(store, host: str, pif: str | None) -> None:
    """`pif` is the host's management interface from now on (None: it has none)."""
    for ref, rec in list(store.tables["PIF"].items()):
        if rec["host"] == host and rec["management"] != (ref == pif):
            store.update("PIF", ref, management=ref == pif)
    store.set_meta(MANAGEMENT_DISABLED, "" if pif else "true")


def management_pif(store, host: str) -> str | None:
    for ref, rec in store.tables["PIF"].items():
        if rec["host"] == host and rec["management"]:
            return ref
    return None


async def bridge_management_at_start(server) -> None:
    """At start: the management NIC under its bridge when the setting asks or the admin
    did it before. A failure is logged; the host stays reachable as it was."""
    store = server.store
    if not (server.settings.management_bridge or store.meta.get(MANAGEMENT_BRIDGED)):
        return
    pif = management_pif(store, server.host_ref)
    if pif is None:
        log.warning("management_bridge: this host has no management PIF")
        return
    try:
        await bridge_pif(server, pif)
        store.set_meta(MANAGEMENT_BRIDGED, "true")
    except ApiError as exc:
        log.warning("management NIC not moved under its bridge: %s", exc.description)
