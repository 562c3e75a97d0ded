"""network: a Linux bridge, named by us (xapi<N>) unless the client gives a valid
name; made on first use, deleted by destroy (refused while VIFs or PIFs use it);
MTU, locking mode, purposes; the "Host internal management network" from the first
start on.

Server.startup calls `startup(server)`: the internal network record, a PIF.scan of
the host's NICs, the management NIC under its bridge when asked (setting
management_bridge, or done before: services/network/bridging.py), the first refresh
and the refresh poller (services/network/runtime).
"""
from __future__ import annotations

import logging

from ..backends.network import NetworkError
from ..dispatch.generic import constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.network.bridging import bridge_management_at_start
from ..services.network.errors import kernel_error
from ..services.network.names import check_name
from ..services.network.runtime import MTU_RANGE, NetRuntime
from . import pif

log = logging.getLogger(__name__)

INTERNAL_KEY = "is_host_internal_management_network"
INTERNAL = {
    "name_label": "Host internal management network",
    "name_description": "Network on which guests will be assigned a private link-local IP "
                        "address which can be used to talk XenAPI",
    "bridge": "xenapi",
    "other_config": {INTERNAL_KEY: "true", "is_guest_installer_network": "true"},
}


def net(ctx, network: str) -> NetRuntime:
    """The bridges of the host this server acts on for `network` (services/host.py)."""
    return ctx.server.runtime_of_network(network).net


def check_mtu(mtu: int):
    if not MTU_RANGE[0] <= mtu <= MTU_RANGE[1]:
        raise ApiError("INVALID_VALUE", "MTU", mtu)


@implements("network.create")
async def create(ctx, args):
    """The record only, as in xapi: the bridge is made when the network is first
    used (VM.start, VIF.plug, PIF.plug, VLAN.create) and deleted by destroy. Many
    networks are never used on a host; they leave no kernel object behind."""
    fields = constructor_fields(ctx, "network", args)
    fields.setdefault("MTU", 1500)
    check_mtu(fields["MTU"])
    rt = ctx.server.runtime(ctx.server.host_ref).net   # a new network has no PIF: here
    if fields.get("bridge"):
        name = check_name("bridge", fields["bridge"])
        if rt.bridge_in_use(name):
            raise ApiError("BRIDGE_NAME_EXISTS", name)
        existing = await rt.ip.link(name)
        if existing is not None and existing.kind != "bridge":
            raise ApiError("INVALID_VALUE", "bridge", name)   # e.g. a NIC's name
    else:
        fields["bridge"] = await rt.allocate_bridge_name()
    fields.update(VIFs=[], PIFs=[], purpose=[], assigned_ips={})
    return ctx.store.create("network", fields)


@implements("network.destroy")
async def destroy(ctx, self):
    rec = ctx.store.record("network", self)
    if rec["VIFs"]:
        raise ApiError("NETWORK_CONTAINS_VIF", *rec["VIFs"])
    if rec["PIFs"]:
        raise ApiError("NETWORK_CONTAINS_PIF", *rec["PIFs"])
    try:
        await net(ctx, self).delete_bridge(rec["bridge"])
    except NetworkError as exc:
        raise kernel_error(exc) from None
    ctx.store.delete("network", self)


@implements("network.set_MTU")
async def set_mtu(ctx, self, value):
    rec = ctx.store.record("network", self)
    check_mtu(value)
    rt = net(ctx, self)
    link = await rt.ip.link(rec["bridge"]) if rec["bridge"] else None
    if link is not None and rec["managed"]:
        try:
            await rt.ip.set_mtu(rec["bridge"], value)
        except NetworkError:
            # The kernel refuses a bridge MTU its ports cannot carry.
            raise ApiError("INVALID_VALUE", "MTU", value) from None
    ctx.store.update("network", self, MTU=value)


@implements("network.set_default_locking_mode")
def set_default_locking_mode(ctx, network, value):
    ctx.store.record("network", network)
    ctx.store.update("network", network, default_locking_mode=value)


@implements("network.add_purpose")
def add_purpose(ctx, self, value):
    purposes = ctx.store.record("network", self)["purpose"]
    # xapi: nbd and insecure_nbd exclude each other (on any network of the pool).
    other = {"nbd": "insecure_nbd", "insecure_nbd": "nbd"}[value]
    for ref, rec in ctx.store.tables["network"].items():
        if other in rec["purpose"]:
            raise ApiError("NETWORK_INCOMPATIBLE_PURPOSES", value, other)
    if value not in purposes:
        ctx.store.update("network", self, purpose=purposes + [value])


@implements("network.remove_purpose")
def remove_purpose(ctx, self, value):
    purposes = ctx.store.record("network", self)["purpose"]
    ctx.store.update("network", self, purpose=[p for p in purposes if p != value])


def ensure_internal_network(store) -> str:
    for ref, rec in store.tables["network"].items():
        if rec["other_config"].get(INTERNAL_KEY) == "true":
            return ref
    # Its bridge is made when a VIF first needs it, like any network's.
    return store.create("network", dict(INTERNAL, other_config=dict(INTERNAL["other_config"])))


async def startup(server):
    """After Server.startup has made this host's network runtime."""
    ensure_internal_network(server.store)
    try:
        await pif.scan_host(server)
        await bridge_management_at_start(server)
    except Exception as exc:   # the API stays up without host networking
        log.warning("PIF scan failed: %s", exc)
    await server.runtime(server.host_ref).net.start()
