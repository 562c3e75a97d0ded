"""network-create/-destroy, vif-create/-plug/-unplug/-destroy, pif-scan, vlan-create."""
from __future__ import annotations

import random

from ..errors import CliFailure
from ..table import command
from .storage import _simple
from .vm import uuid_of


@command("network-create", reqd=("name-label",),
         optional=("name-description", "MTU", "bridge", "managed"), std=True,
         help="Create a network (a bridge); prints its uuid.")
async def network_create(ctx):
    try:
        mtu = int(ctx.param("MTU", "1500"))
    except ValueError:
        raise CliFailure(f"Failed to parse field 'MTU': expecting an integer, "
                         f"got '{ctx.param('MTU')}'") from None
    rec = {"name_label": ctx.reqd("name-label"),
           "name_description": ctx.param("name-description", ""), "MTU": mtu,
           "bridge": ctx.param("bridge", ""), "other_config": {},
           "managed": ctx.param("managed") is None or ctx.flag("managed")}
    await ctx.items([await uuid_of(ctx, "network", await ctx.call("network.create", rec))])


_simple("network-destroy", "network", "network.destroy", "Destroy the network.")
_simple("vif-plug", "VIF", "VIF.plug", "Hot-plug the VIF into its running VM.")
_simple("vif-destroy", "VIF", "VIF.destroy", "Destroy the VIF.")


def _random_mac() -> str:
    first = (random.randrange(256) & 0xFC) | 0x02        # locally administered, unicast
    return ":".join(f"{b:02x}" for b in [first, *(random.randrange(256) for _ in range(5))])


@command("vif-create", reqd=("vm-uuid", "network-uuid", "device"), optional=("mac",),
         help="Create a VIF (mac=random for a random one; none: the server picks); "
              "prints its uuid.")
async def vif_create(ctx):
    network = await ctx.by_uuid("network", ctx.reqd("network-uuid"))
    mac = ctx.param("mac", "")
    rec = {"VM": await ctx.by_uuid("VM", ctx.reqd("vm-uuid")), "network": network,
           "device": ctx.reqd("device"), "MAC": _random_mac() if mac == "random" else mac,
           "MTU": await ctx.call("network.get_MTU", network), "other_config": {},
           "qos_algorithm_type": "", "qos_algorithm_params": {}}
    await ctx.items([await uuid_of(ctx, "VIF", await ctx.call("VIF.create", rec))])


@command("vif-unplug", reqd=("uuid",), optional=("force",),
         help="Hot-unplug the VIF from its running VM.")
async def vif_unplug(ctx):
    vif = await ctx.by_uuid("VIF", ctx.reqd("uuid"))
    await ctx.call("VIF.unplug_force" if ctx.flag("force") else "VIF.unplug", vif)


@command("pif-scan", reqd=("host-uuid",), help="Create PIFs for the host's new NICs.")
async def pif_scan(ctx):
    await ctx.call("PIF.scan", await ctx.by_uuid("host", ctx.reqd("host-uuid")))


@command("vlan-create", reqd=("pif-uuid", "vlan", "network-uuid"),
         help="Create a VLAN on the PIF, tagged vlan, into the network; prints the uuid "
              "of the new PIF.")
async def vlan_create(ctx):
    try:
        tag = int(ctx.reqd("vlan"))
    except ValueError:
        raise CliFailure(f"Failed to parse field 'vlan': expecting an integer, "
                         f"got '{ctx.reqd('vlan')}'") from None
    vlan = await ctx.call("VLAN.create", await ctx.by_uuid("PIF", ctx.reqd("pif-uuid")), tag,
                          await ctx.by_uuid("network", ctx.reqd("network-uuid")))
    pif = await ctx.call("VLAN.get_untagged_PIF", vlan)
    await ctx.items([await uuid_of(ctx, "PIF", pif)])
