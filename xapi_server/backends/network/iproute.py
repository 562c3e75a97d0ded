"""NetworkBackend on iproute2: `ip -j ...` with argument lists in asyncio subprocesses.

Names reaching here were checked with `check_name` (no shell is involved anyway, and
`valid_name` refuses a leading '-', so a name can never become an option). An
optional network namespace (`ip -n NS`) lets tests run everything in a namespace of
their own.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import os

from .contract import Link, NetworkError, NicInfo, Route, valid_name

_ENV = {**os.environ, "LC_ALL": "C"}
TIMEOUT = 30.0


class IpRoute:
    def __init__(self, netns: str | None = None):
        self.netns = netns

    async def _ip(self, *args: str, parse: bool = False, stdin: bytes | None = None):
        argv = ["ip"] + (["-n", self.netns] if self.netns else []) + \
            (["-j"] if parse else []) + list(args)
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_ENV)
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if proc.returncode is None:   # never leave a child behind
                proc.kill()
                await proc.wait()
            raise
        if proc.returncode != 0:
            raise NetworkError(f"{' '.join(argv[1:])}: {err.decode(errors='replace').strip()}")
        if not parse:
            return None
        text = out.decode(errors="replace").strip()
        return json.loads(text) if text else []

    # -- reading ------------------------------------------------------------------------

    async def link_names(self) -> set[str]:
        """Names of all links: cheap (no `ip` process) in our own namespace, where
        network.create asks for every new network's bridge name."""
        if not self.netns:  # sysfs lives in memory: listing it does not block
            return set(os.listdir("/sys/class/net"))
        return set(await self.links())

    async def links(self) -> dict[str, Link]:
        rows = await self._ip("-d", "address", "show", parse=True)
        links = {}
        for row in rows:
            link = _link_of(row)
            if not self.netns:
                link.physical = await asyncio.to_thread(_has_bus_device, link.name)
            links[link.name] = link
        return links

    async def link(self, name: str) -> Link | None:
        if not valid_name(name):
            return None
        try:
            rows = await self._ip("-d", "address", "show", "dev", name, parse=True)
        except NetworkError:
            return None      # "Device does not exist"
        if not rows:
            return None
        link = _link_of(rows[0])
        if not self.netns:
            link.physical = await asyncio.to_thread(_has_bus_device, link.name)
        return link

    async def default_route_device(self) -> str:
        rows = await self._ip("-4", "route", "show", "default", parse=True)
        return rows[0].get("dev", "") if rows else ""

    async def gateway(self, name: str) -> str:
        rows = await self._ip("-4", "route", "show", "default", "dev", name, parse=True)
        return rows[0].get("gateway", "") if rows else ""

    async def routes(self, name: str) -> list[Route]:
        found = []
        for family in ("inet", "inet6"):
            flag = "-6" if family == "inet6" else "-4"
            for row in await self._ip(flag, "route", "show", "table", "main", "dev", name,
                                      parse=True):
                route = _route_of(family, row)
                if route is not None:
                    found.append(route)
        return found

    async def batch(self, commands: list[list[str]], force: bool = False) -> None:
        if not commands:
            return
        text = "".join(" ".join(cmd) + "\n" for cmd in commands)
        await self._ip(*(["-force"] if force else []), "-batch", "-", stdin=text.encode())

    async def nic_info(self, name: str) -> NicInfo:
        if self.netns:      # sysfs shows the root namespace's devices only
            return NicInfo()
        return await asyncio.to_thread(_sysfs_info, name)

    # -- changing -----------------------------------------------------------------------

    async def bridge_create(self, name: str, mtu: int | None = None) -> None:
        args = ["link", "add", "name", name]
        if mtu:
            args += ["mtu", str(mtu)]
        await self._ip(*args, "type", "bridge")
        try:
            await self._ip("link", "set", "dev", name, "up")
        except BaseException:
            await self.link_delete(name)   # nothing half-made
            raise

    async def vlan_create(self, name: str, parent: str, tag: int) -> None:
        await self._ip("link", "add", "link", parent, "name", name, "type", "vlan",
                       "id", str(int(tag)))
        try:
            await self._ip("link", "set", "dev", name, "up")
        except BaseException:
            await self.link_delete(name)
            raise

    async def link_delete(self, name: str) -> None:
        if await self.link(name) is None:
            return
        try:
            await self._ip("link", "delete", "dev", name)
        except NetworkError:
            if await self.link(name) is not None:  # someone else deleted it meanwhile: fine
                raise

    async def set_mtu(self, name: str, mtu: int) -> None:
        await self._ip("link", "set", "dev", name, "mtu", str(int(mtu)))

    async def set_up(self, name: str, up: bool = True) -> None:
        await self._ip("link", "set", "dev", name, "up" if up else "down")

    async def set_master(self, name: str, bridge: str | None) -> None:
        if bridge:
            await self._ip("link", "set", "dev", name, "master", bridge)
        else:
            await self._ip("link", "set", "dev", name, "nomaster")

    async def set_ipv4(self, name: str, address: str | None, prefix: int = 0) -> None:
        await self._ip("-4", "address", "flush", "dev", name)
        if address:
            await self._ip("address", "add", f"{address}/{int(prefix)}", "dev", name)

    async def set_ipv6(self, name: str, address: str | None, prefix: int = 0) -> None:
        await self._ip("-6", "address", "flush", "dev", name, "scope", "global")
        if address:
            await self._ip("-6", "address", "add", f"{address}/{int(prefix)}", "dev", name)


def _route_of(family: str, row: dict) -> Route | None:
    """None for what the kernel makes by itself with an address or router advert."""
    dst = row.get("dst", "")
    if row.get("protocol") in ("kernel", "ra") or row.get("type") not in (None, "unicast"):
        return None
    if family == "inet6" and dst != "default" and \
            ipaddress.ip_network(dst, strict=False).is_link_local:
        return None
    return Route(family=family, dst=dst, gateway=row.get("gateway", ""),
                 metric=int(row.get("metric", 0) or 0), protocol=row.get("protocol", ""),
                 scope=row.get("scope", "") if row.get("scope") != "global" else "",
                 src=row.get("prefsrc", ""))


def _link_of(row: dict) -> Link:
    info = row.get("linkinfo") or {}
    data = info.get("info_data") or {}
    flags = row.get("flags") or []
    kind = info.get("info_kind", "")
    addresses = [(a.get("family"), a.get("local", ""), int(a.get("prefixlen", 0)),
                  bool(a.get("dynamic")))
                 for a in row.get("addr_info") or [] if a.get("family") in ("inet", "inet6")]
    return Link(
        name=row["ifname"], ifindex=int(row.get("ifindex", 0)), kind=kind,
        mac=row.get("address", "") if row.get("link_type") == "ether" else "",
        mtu=int(row.get("mtu", 0)), up="UP" in flags, carrier="LOWER_UP" in flags,
        master=row.get("master", ""),
        parent=row.get("link", "") if kind == "vlan" else "",
        vlan_id=int(data.get("id", -1)) if kind == "vlan" else -1,
        addresses=addresses)


def _has_bus_device(name: str) -> bool:
    return os.path.exists(os.path.join("/sys/class/net", name, "device"))


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:     # EINVAL for speed/duplex when the link is down
        return ""


def _sysfs_info(name: str) -> NicInfo:
    base = os.path.join("/sys/class/net", name)
    speed = _read(os.path.join(base, "speed"))
    device = os.path.join(base, "device")
    bus_path = ""
    if os.path.islink(device):
        bus_path = os.path.basename(os.path.realpath(device))
    driver = os.path.join(device, "driver")
    return NicInfo(
        speed=int(speed) if speed.lstrip("-").isdigit() and int(speed) > 0 else 0,
        duplex=_read(os.path.join(base, "duplex")) == "full",
        vendor_id=_read(os.path.join(device, "vendor")).removeprefix("0x"),
        device_id=_read(os.path.join(device, "device")).removeprefix("0x"),
        pci_bus_path=bus_path,
        driver=os.path.basename(os.path.realpath(driver)) if os.path.islink(driver) else "")
