"""The host networking interface the API layer uses (the factory is the package's): Linux bridges, 802.1Q VLAN
devices, NICs and taps.

The API never runs `ip` itself: it speaks this small protocol. Every method is a
coroutine; the Linux implementation (`iproute.py`) runs iproute2 with argument
lists in an asyncio subprocess (never a shell, never blocking the event loop).
Names that come from API clients are checked first (`valid_name`; services/network/
names.check_name refuses them with INVALID_VALUE).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Protocol

IFNAMSIZ = 16          # the kernel's limit, including the terminating NUL
_BAD = re.compile(r"[\s/:]")   # ':' would be read as an alias label by iproute2


def valid_name(name: str) -> bool:
    """Linux rules (dev_valid_name): 1..15 bytes, no '/', no whitespace, not '.'
    or '..'. We also refuse ':' and a leading '-' (never an option to iproute2)."""
    if not isinstance(name, str) or not name or name in (".", ".."):
        return False
    if len(name.encode()) >= IFNAMSIZ or _BAD.search(name) or name.startswith("-"):
        return False
    return name.isprintable()


@dataclass
class Link:
    """One network device as the kernel reports it."""
    name: str
    ifindex: int = 0
    kind: str = ""              # "" (a NIC), bridge, vlan, veth, tun, ...
    mac: str = ""
    mtu: int = 1500
    up: bool = False            # administratively up (IFF_UP)
    carrier: bool = False       # lower layer up
    master: str = ""            # the bridge it is enslaved to
    parent: str = ""            # a VLAN's lower device
    vlan_id: int = -1
    physical: bool = False      # backed by a bus device (sysfs device link)
    addresses: list = field(default_factory=list)   # [(family, "a.b.c.d", prefix, dynamic)]


@dataclass
class NicInfo:
    """What PIF_metrics shows about a NIC (sysfs; empty when not applicable)."""
    speed: int = 0              # Mbit/s, 0 when unknown (no link, virtual device)
    duplex: bool = False
    vendor_id: str = ""
    device_id: str = ""
    pci_bus_path: str = ""
    driver: str = ""


@dataclass
class Route:
    """One route of the main table, enough to make it again on another device."""
    family: str                 # inet | inet6
    dst: str                    # "default" or a prefix
    gateway: str = ""
    metric: int = 0
    protocol: str = ""          # boot, static, dhcp ... ("" : the kernel's default)
    scope: str = ""
    src: str = ""

    def spec(self, dev: str) -> list[str]:
        """`ip route` arguments for this route through `dev` (no family option: they
        also serve `ip -batch`, whose lines take none; the addresses say it)."""
        dst = self.dst
        if dst == "default":
            dst = "::/0" if self.family == "inet6" else "0.0.0.0/0"
        args = ["route", "add", dst]
        if self.gateway:
            args += ["via", self.gateway]
        args += ["dev", dev]
        for key, value in (("metric", self.metric), ("proto", self.protocol),
                           ("scope", self.scope), ("src", self.src)):
            if value:
                args += [key, str(value)]
        return args


class NetworkError(Exception):
    """A host networking command failed; the text is what the tool said."""


class NetworkBackend(Protocol):
    async def links(self) -> dict[str, Link]:
        """Every device, by name, with its addresses."""
    async def link(self, name: str) -> Link | None: ...
    async def bridge_create(self, name: str, mtu: int | None = None) -> None:
        """A new bridge, up. NetworkError when the name is taken."""
    async def link_delete(self, name: str) -> None:
        """Delete a bridge, VLAN device or veth; no error when already gone."""
    async def set_mtu(self, name: str, mtu: int) -> None: ...
    async def set_up(self, name: str, up: bool = True) -> None: ...
    async def set_master(self, name: str, bridge: str | None) -> None:
        """Enslave `name` to `bridge` (None: release it)."""
    async def vlan_create(self, name: str, parent: str, tag: int) -> None: ...
    async def default_route_device(self) -> str: ...
    async def gateway(self, name: str) -> str: ...
    async def set_ipv4(self, name: str, address: str | None, prefix: int = 0) -> None:
        """Replace the device's IPv4 addresses by address/prefix (None: remove all)."""
    async def nic_info(self, name: str) -> NicInfo: ...
    async def routes(self, name: str) -> list[Route]:
        """The device's main-table routes that do not come back by themselves with its
        addresses (connected, router-advertised and link-local ones do)."""
    async def batch(self, commands: list[list[str]], force: bool = False) -> None:
        """Several `ip` commands in one process (`ip -batch`): no process start-up
        between them. force: go on past a failing line (still NetworkError after)."""
    async def set_ipv6(self, name: str, address: str | None, prefix: int = 0) -> None:
        """Replace the device's global IPv6 addresses (None: remove them)."""

