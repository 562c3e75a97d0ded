"""network-create/-destroy, vif-create/-plug/-unplug/-destroy, pif-* (scan, introduce,
forget, plug, unplug, reconfigure-ip/-ipv6), vlan-create, pool-vlan-create, and the
host's management interface, name and system log (host-management-*,
host-set-hostname-live, host-syslog-reconfigure)."""
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


def _tag(ctx) -> int:
    try:
        return int(ctx.reqd("vlan"))
    except ValueError:
        raise CliFailure(f"Failed to parse field 'vlan': expecting an integer, "
                         f"got '{ctx.reqd('vlan')}'") from None


@command("vlan-create", reqd=("pif-uuid", "vlan", "network-uuid"),
         help="Create a VLAN on the PIF, tagged vlan, into the network; prints the uuid "
              "of the new PIF.")
async def vlan_create(ctx):
    vlan = await ctx.call("VLAN.create", await ctx.by_uuid("PIF", ctx.reqd("pif-uuid")),
                          _tag(ctx),
                          await ctx.by_uuid("network", ctx.reqd("network-uuid")))
    pif = await ctx.call("VLAN.get_untagged_PIF", vlan)
    await ctx.items([await uuid_of(ctx, "PIF", pif)])


_simple("pif-plug", "PIF", "PIF.plug",
        "Attach the PIF: its NIC joins its network's bridge with its addresses and routes.")
_simple("pif-unplug", "PIF", "PIF.unplug",
        "Detach the PIF: its NIC leaves the bridge and its link goes down.")
_simple("pif-forget", "PIF", "PIF.forget", "Forget the PIF (the NIC is left alone).")


@command("pif-db-forget", reqd=("uuid",), hidden=True,
         help="Delete the PIF's record alone (nothing is done to the host).")
async def pif_db_forget(ctx):
    await ctx.call("PIF.db_forget", await ctx.by_uuid("PIF", ctx.reqd("uuid")))


@command("pif-introduce", reqd=("host-uuid", "device"), optional=("mac", "managed"),
         help="Create a PIF for an existing NIC; prints its uuid.")
async def pif_introduce(ctx):
    managed = ctx.param("managed") is None or ctx.flag("managed")
    pif = await ctx.call("PIF.introduce", await ctx.by_uuid("host", ctx.reqd("host-uuid")),
                         ctx.param("mac", ""), ctx.reqd("device"), managed)
    await ctx.items([await uuid_of(ctx, "PIF", pif)])


def _mode(text: str, modes: dict) -> str:
    """xe takes modes in any case (dhcp, Static ...); xapi's words when it is none."""
    mode = modes.get(text.lower())
    if mode is None:
        names = [f"'{m}'" for m in modes]
        raise CliFailure(f"Expected {', '.join(names[:-1])} or {names[-1]}, got {text}")
    return mode


@command("pif-reconfigure-ip", reqd=("uuid", "mode"),
         optional=("IP", "netmask", "gateway", "DNS"),
         help="Set the PIF's IPv4 configuration: mode=static IP= netmask= [gateway= DNS=], "
              "or mode=none.")
async def pif_reconfigure_ip(ctx):
    mode = _mode(ctx.reqd("mode"), {"dhcp": "DHCP", "none": "None", "static": "Static"})
    await ctx.call("PIF.reconfigure_ip", await ctx.by_uuid("PIF", ctx.reqd("uuid")), mode,
                   ctx.param("IP", ""), ctx.param("netmask", ""), ctx.param("gateway", ""),
                   ctx.param("DNS", ""))


@command("pif-reconfigure-ipv6", reqd=("uuid", "mode"), optional=("IPv6", "gateway", "DNS"),
         help="Set the PIF's IPv6 configuration: mode=static IPv6=<address/prefix> "
              "[gateway= DNS=], mode=autoconf or mode=none.")
async def pif_reconfigure_ipv6(ctx):
    mode = _mode(ctx.reqd("mode"), {"dhcp": "DHCP", "none": "None", "static": "Static",
                                    "autoconf": "Autoconf"})
    await ctx.call("PIF.reconfigure_ipv6", await ctx.by_uuid("PIF", ctx.reqd("uuid")), mode,
                   ctx.param("IPv6", ""), ctx.param("gateway", ""), ctx.param("DNS", ""))


@command("pool-vlan-create", reqd=("pif-uuid", "vlan", "network-uuid"),
         help="Create the VLAN on every host's PIF of the same network as the PIF; prints "
              "the uuids of the new PIFs.")
async def pool_vlan_create(ctx):
    pifs = await ctx.call("pool.create_VLAN_from_PIF",
                          await ctx.by_uuid("PIF", ctx.reqd("pif-uuid")),
                          await ctx.by_uuid("network", ctx.reqd("network-uuid")), _tag(ctx))
    await ctx.items([await uuid_of(ctx, "PIF", pif) for pif in pifs])


@command("host-management-reconfigure", reqd=("pif-uuid",),
         help="Make the PIF the management interface: its NIC goes under its network's "
              "bridge with the host's addresses and routes (back again if the gateway "
              "stops answering).")
async def host_management_reconfigure(ctx):
    await ctx.call("host.management_reconfigure",
                   await ctx.by_uuid("PIF", ctx.reqd("pif-uuid")))


@command("host-management-disable",
         help="Leave the host without a management interface.")
async def host_management_disable(ctx):
    await ctx.call("host.management_disable")


@command("host-set-hostname-live", reqd=("host-uuid", "host-name"),
         help="Rename the host now.")
async def host_set_hostname_live(ctx):
    await ctx.call("host.set_hostname_live", await ctx.by_uuid("host", ctx.reqd("host-uuid")),
                   ctx.reqd("host-name"))


@command("host-syslog-reconfigure", reqd=("host-uuid",),
         help="Forward the system log to the host's logging:syslog_destination (none: "
              "stop forwarding).")
async def host_syslog_reconfigure(ctx):
    await ctx.call("host.syslog_reconfigure", await ctx.by_uuid("host", ctx.reqd("host-uuid")))
