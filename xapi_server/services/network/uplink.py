"""A NIC goes under its network's bridge, taking the host's addresses and routes with it,
as xapi and Proxmox hosts have their uplink: `eth0` becomes a port of `xapi0` and the
host is reached at `xapi0`'s addresses. Used by PIF.plug and host.management_reconfigure
(api/management.py), and at start with the setting `management_bridge`.

Linux has no transaction over links, addresses and routes, so the move is as close to
one as it allows:
1. plan: read the NIC's addresses and routes; refuse what cannot move (an address from
   DHCP: its client would renew it on the NIC); a probe address that must answer
   before (else nothing is changed and the caller is told why);
2. build: the bridge, down, with the NIC's MAC and MTU (neighbours' ARP caches and DHCP
   reservations stay valid);
3. move: one `ip -batch` (one process, no start-up gaps): routes and addresses off the
   NIC, the NIC into the bridge, the bridge up, addresses and routes on the bridge;
4. verify: the kernel shows the new state and the probe answers within the timeout;
5. otherwise roll back in one batch to the state read in 1 and delete the bridge if it
   was made here.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass, field

from ...backends.network import Link, NetworkError, Route

log = logging.getLogger(__name__)


class MoveRefused(Exception):
    """The move did not happen or was rolled back; the text says why (for the client)."""


@dataclass
class Plan:
    nic: str
    bridge: str
    addresses: list = field(default_factory=list)   # [(family, "addr/prefix")]
    routes: list = field(default_factory=list)      # [Route]
    probe: str = ""
    made_bridge: bool = False

    def move_commands(self) -> list[list[str]]:
        return _transfer(self, self.nic, self.bridge)

    def rollback_commands(self) -> list[list[str]]:
        return _transfer(self, self.bridge, self.nic, release=True)


def _transfer(plan: Plan, src: str, dst: str, release: bool = False) -> list[list[str]]:
    """Routes and addresses from `src` to `dst`; the NIC enters the bridge (or, on the
    way back, leaves it) between taking them off and putting them on, and `dst` is up
    before its routes are made (a gateway is reachable through an up link only)."""
    cmds = [_route_del(r, src) for r in plan.routes]
    cmds += [["address", "del", a, "dev", src] for _, a in plan.addresses]
    cmds.append(["link", "set", "dev", plan.nic] + (["nomaster"] if release
                                                     else ["master", plan.bridge]))
    cmds.append(["link", "set", "dev", dst, "up"])
    for family, a in plan.addresses:
        # the same address moves: no duplicate address detection to wait for
        cmds.append(["address", "add", a, "dev", dst] + (["nodad"] if family == "inet6" else []))
    cmds += [r.spec(dst) for r in plan.routes]
    return cmds


def _route_del(route: Route, dev: str) -> list[str]:
    spec = route.spec(dev)
    spec[1] = "del"
    return spec


def movable_addresses(link: Link) -> list:
    """(family, cidr) of the NIC's addresses that move; MoveRefused for a DHCP lease."""
    found = []
    for family, addr, prefix, dynamic in link.addresses:
        if family == "inet6" and ipaddress.IPv6Address(addr).is_link_local:
            continue                      # every link has its own
        if dynamic and family == "inet":
            raise MoveRefused(f"{link.name}'s address {addr} comes from DHCP: its client "
                              f"would renew it on {link.name}, not on the bridge")
        if dynamic:
            continue                      # SLAAC: the bridge configures itself
        found.append((family, f"{addr}/{prefix}"))
    return found


async def probe_answers(tools, address: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if await tools.answers(address, wait=1.0):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.2)


def default_gateway(routes: list) -> str:
    for route in routes:
        if route.dst == "default" and route.gateway and route.family == "inet":
            return route.gateway
    for route in routes:
        if route.dst == "default" and route.gateway:
            return route.gateway
    return ""


async def plan_move(ip, tools, nic: str, bridge: str, probe: str, probe_timeout: float) -> Plan:
    link = await ip.link(nic)
    if link is None:
        raise MoveRefused(f"device {nic} does not exist")
    if link.master and link.master != bridge:
        raise MoveRefused(f"{nic} is already a port of {link.master}")
    plan = Plan(nic=nic, bridge=bridge, addresses=movable_addresses(link),
                routes=await ip.routes(nic))
    plan.probe = probe or default_gateway(plan.routes)
    if plan.probe and not await probe_answers(tools, plan.probe, min(probe_timeout, 5.0)):
        raise MoveRefused(f"{plan.probe} does not answer ping before the move, so the move "
                          "could not be verified; nothing was changed (setting "
                          "management_probe names an address that answers)")
    return plan


async def build_bridge(ip, plan: Plan, link_mac: str, mtu: int):
    existing = await ip.link(plan.bridge)
    if existing is not None:
        if existing.kind != "bridge":
            raise MoveRefused(f"{plan.bridge} exists and is not a bridge")
        return
    await ip.batch([["link", "add", "name", plan.bridge, "mtu", str(mtu), "address", link_mac,
                     "type", "bridge"]])
    plan.made_bridge = True


async def move_under_bridge(ip, tools, nic: str, bridge: str, probe: str = "",
                            probe_timeout: float = 15.0) -> Plan:
    """Do it all (the module's docstring); MoveRefused when it did not happen or was
    rolled back. Returns the plan that was carried out."""
    link = await ip.link(nic)
    if link is not None and link.master == bridge:
        return Plan(nic=nic, bridge=bridge)          # already there
    plan = await plan_move(ip, tools, nic, bridge, probe, probe_timeout)
    await build_bridge(ip, plan, link.mac, link.mtu)
    try:
        await ip.batch(plan.move_commands())
        problem = await verify(ip, tools, plan, probe_timeout)
    except NetworkError as exc:
        problem = f"the kernel refused a step: {exc}"
    except BaseException:
        await roll_back(ip, plan)
        raise
    if problem:
        await roll_back(ip, plan)
        raise MoveRefused(f"{problem}; {nic} was taken out of {bridge} again with its "
                          "addresses and routes")
    log.info("%s is now a port of %s with %d addresses and %d routes", nic, bridge,
             len(plan.addresses), len(plan.routes))
    return plan


async def verify(ip, tools, plan: Plan, probe_timeout: float) -> str:
    """'' when the new state is there and the probe answers; else what is wrong."""
    nic, bridge = await ip.link(plan.nic), await ip.link(plan.bridge)
    if nic is None or nic.master != plan.bridge or bridge is None or not bridge.up:
        return f"{plan.nic} did not end up in {plan.bridge}"
    have = {f"{a}/{p}" for _, a, p, _ in bridge.addresses}
    missing = [a for _, a in plan.addresses if a not in have]
    if missing:
        return f"{plan.bridge} lacks {', '.join(missing)}"
    routes = {(r.family, r.dst, r.gateway) for r in await ip.routes(plan.bridge)}
    lost = [r.dst for r in plan.routes if (r.family, r.dst, r.gateway) not in routes]
    if lost:
        return f"{plan.bridge} lacks the routes to {', '.join(lost)}"
    if plan.probe and not await probe_answers(tools, plan.probe, probe_timeout):
        return f"{plan.probe} stopped answering within {probe_timeout:g} s after the move"
    return ""


async def roll_back(ip, plan: Plan):
    """Back to the state the plan was read from; every step is tried (-force)."""
    try:
        await ip.batch(plan.rollback_commands(), force=True)
    except NetworkError as exc:   # a step whose object was already gone, most likely
        log.warning("uplink roll-back of %s: %s", plan.nic, exc)
    if plan.made_bridge:
        try:
            await ip.link_delete(plan.bridge)
        except NetworkError as exc:
            log.warning("uplink roll-back: bridge %s: %s", plan.bridge, exc)
    log.warning("%s was taken out of %s again", plan.nic, plan.bridge)


async def move_back(ip, nic: str, bridge: str) -> None:
    """The reverse, for PIF.unplug: the bridge's addresses and routes return to the NIC
    and the NIC leaves the bridge (which stays, for VIFs on it)."""
    blink = await ip.link(bridge)
    plan = Plan(nic=nic, bridge=bridge)
    if blink is not None:
        plan.addresses = [(f, f"{a}/{p}") for f, a, p, dyn in blink.addresses
                          if not dyn and not (f == "inet6" and
                                              ipaddress.IPv6Address(a).is_link_local)]
        plan.routes = await ip.routes(bridge)
    await ip.batch(plan.rollback_commands())
