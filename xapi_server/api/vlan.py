"""VLAN: an 802.1Q device `<nic>.<tag>` on the tagged PIF's NIC, enslaved to the
bridge of `network`, shown as a (non-physical) PIF with VLAN=tag, the untagged PIF.

Every kernel step is undone when a later one fails: nothing half-made is left.
"""
from __future__ import annotations

from ..backends.network import NetworkError
from ..dispatch.generic import check_ref
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.network.errors import kernel_error
from ..services.network.runtime import now, vlan_device_name


async def create_vlan(ctx, tagged_PIF, tag, network) -> str:
    store, rt = ctx.store, ctx.server.runtime_of_pif(tagged_PIF).net
    parent = store.record("PIF", tagged_PIF)
    check_ref(ctx, "network", network)
    store.record("network", network)
    if not 0 <= tag <= 4094:
        raise ApiError("VLAN_TAG_INVALID", tag)
    if parent["VLAN"] >= 0:
        raise ApiError("PIF_IS_VLAN", tagged_PIF)
    for vlan in parent["VLAN_slave_of"]:
        if store.get("VLAN", vlan, "tag") == tag:
            raise ApiError("PIF_VLAN_EXISTS", parent["device"])
    for pif in store.get("network", network, "PIFs"):
        if store.get("PIF", pif, "host") == parent["host"]:
            raise ApiError("NETWORK_ALREADY_CONNECTED", network, pif)
    dev = vlan_device_name(parent["device"], tag)
    made_bridge = made_dev = False
    bridge = ""
    try:
        bridge, made_bridge = await rt.ensure_bridge(network)
        await rt.ip.vlan_create(dev, parent["device"], tag)
        made_dev = True
        await rt.ip.set_master(dev, bridge)
    except NetworkError as exc:
        if made_dev:
            await rt.ip.link_delete(dev)
        if made_bridge:
            await rt.delete_bridge(bridge)
        raise kernel_error(exc) from None
    link = await rt.ip.link(dev)
    metrics = store.create("PIF_metrics", {"last_updated": now()})
    pif = store.create("PIF", {
        "device": parent["device"], "network": network, "host": parent["host"],
        "MAC": link.mac if link else parent["MAC"], "MTU": link.mtu if link else 1500,
        "VLAN": tag, "metrics": metrics, "physical": False, "currently_attached": True,
        "managed": True})
    vlan = store.create("VLAN", {"tagged_PIF": tagged_PIF, "untagged_PIF": pif, "tag": tag})
    store.update("PIF", pif, VLAN_master_of=vlan)
    await rt.refresh_pif(pif)
    return vlan


async def destroy_vlan(ctx, vlan):
    store = ctx.store
    rec = store.record("VLAN", vlan)
    pif = rec["untagged_PIF"]
    if store.exists("PIF", pif):
        prec, rt = store.record("PIF", pif), ctx.server.runtime_of_pif(pif).net
        try:
            await rt.ip.link_delete(vlan_device_name(prec["device"], prec["VLAN"]))
        except NetworkError as exc:
            raise kernel_error(exc) from None
        if store.exists("PIF_metrics", prec["metrics"]):
            store.delete("PIF_metrics", prec["metrics"])
        store.delete("PIF", pif)
    store.delete("VLAN", vlan)


@implements("VLAN.create")
async def create(ctx, tagged_PIF, tag, network):
    return await create_vlan(ctx, tagged_PIF, tag, network)


@implements("VLAN.destroy")
async def destroy(ctx, self):
    await destroy_vlan(ctx, self)


def pif_of_device(store, host, device):
    """The host's PIF of that NIC (not a VLAN), else None."""
    for ref, rec in store.tables["PIF"].items():
        if rec["host"] == host and rec["device"] == device and rec["VLAN"] < 0:
            return ref
    return None


async def _on_each(ctx, tagged_pifs, tag, network) -> list[str]:
    """A VLAN on each tagged PIF, all or none (made ones are destroyed on a failure);
    the untagged PIFs."""
    made = []
    try:
        for tagged in tagged_pifs:
            made.append(await create_vlan(ctx, tagged, tag, network))
    except BaseException:
        for vlan in made:
            await destroy_vlan(ctx, vlan)
        raise
    return [ctx.store.get("VLAN", vlan, "untagged_PIF") for vlan in made]


@implements("pool.create_VLAN")
async def pool_create_vlan(ctx, device, network, VLAN):
    """The VLAN on the NIC named `device` of every host (deprecated in xapi)."""
    tagged = []
    for host in ctx.store.tables["host"]:
        pif = pif_of_device(ctx.store, host, device)
        if pif is None:
            raise ApiError("INVALID_VALUE", "device", device)
        tagged.append(pif)
    return await _on_each(ctx, tagged, VLAN, network)


@implements("pool.create_VLAN_from_PIF")
async def pool_create_vlan_from_pif(ctx, pif, network, VLAN):
    """The VLAN on every live host's PIF of the same network as `pif`."""
    store = ctx.store
    base = store.get("PIF", pif, "network")
    tagged = []
    for other in store.get("network", base, "PIFs"):
        metrics = store.get("host", store.get("PIF", other, "host"), "metrics")
        if store.exists("host_metrics", metrics) and store.get("host_metrics", metrics, "live"):
            tagged.append(other)
    return await _on_each(ctx, tagged, VLAN, network)
