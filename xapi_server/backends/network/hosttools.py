"""Host network tools beside iproute2: ethtool (offload features such as GRO), ping (is an
address reachable?) and IPv6 sysctls, optionally inside a network namespace
(`ip netns exec NS ...`) as IpRoute is. Argument lists, never a shell.
"""
from __future__ import annotations

import asyncio
import os

from .contract import NetworkError, valid_name

TIMEOUT = 30.0
# ethtool's names for the features a PIF's `properties` map can set
FEATURES = {"gro": "generic-receive-offload"}


class HostTools:
    def __init__(self, netns: str | None = None):
        self.netns = netns

    async def _run(self, *argv: str, timeout: float = TIMEOUT) -> tuple[int, str, str]:
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        try:
            proc = await asyncio.create_subprocess_exec(
                *inside, *argv, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "LC_ALL": "C"})
        except FileNotFoundError:
            raise NetworkError(f"{argv[0]} is not installed") from None
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    async def features(self, dev: str) -> dict[str, str]:
        """{property: "on"|"off"} for the FEATURES the device reports."""
        _check(dev)
        rc, out, err = await self._run("ethtool", "-k", dev)
        if rc != 0:
            raise NetworkError(f"ethtool -k {dev}: {err.strip() or out.strip()}")
        found = {}
        for line in out.splitlines():
            key, _, value = line.partition(":")
            for prop, name in FEATURES.items():
                if key.strip() == name:
                    found[prop] = value.split()[0] if value.split() else "off"
        return found

    async def set_feature(self, dev: str, prop: str, value: str) -> None:
        _check(dev)
        if prop not in FEATURES or value not in ("on", "off"):
            raise NetworkError(f"unknown feature {prop}={value}")
        rc, out, err = await self._run("ethtool", "-K", dev, prop, value)
        if rc != 0:
            raise NetworkError(f"ethtool -K {dev} {prop} {value}: {err.strip() or out.strip()}")

    async def answers(self, address: str, wait: float = 1.0) -> bool:
        """One ICMP echo to `address`, answered within `wait` seconds."""
        rc, _, _ = await self._run("ping", "-n", "-q", "-c", "1", "-W", str(max(1, int(wait))),
                                   address, timeout=wait + 5)
        return rc == 0

    async def set_ipv6_autoconf(self, dev: str, on: bool) -> None:
        """Router advertisements and stateless autoconfiguration on the device."""
        _check(dev)
        value = "1" if on else "0"
        for key in ("accept_ra", "autoconf"):
            rc, out, err = await self._run(
                "sysctl", "-q", "-w", f"net.ipv6.conf.{dev.replace('.', '/')}.{key}={value}")
            if rc != 0:
                raise NetworkError(f"sysctl {key} on {dev}: {err.strip() or out.strip()}")


def _check(dev: str):
    if not valid_name(dev):
        raise NetworkError(f"invalid device name {dev!r}")
