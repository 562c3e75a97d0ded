"""A host-internal NAT network, as libvirt's "default" network: a bridge with the host's
address on it, forwarding and masquerading (nftables) towards everything else, and
dnsmasq answering DHCP and DNS on the bridge alone.

Pure driver: plain values in, NetworkError out. The nftables rules live in a table of
their own (`ip xapi_py_nat`), replaced as a whole (nft -f is atomic), so they never mix
with the admin's rules and are removed in one step.
"""
from __future__ import annotations

import asyncio
import ipaddress
import os
import pwd
from dataclasses import dataclass

from .contract import NetworkError

TABLE = "xapi_py_nat"


@dataclass(frozen=True)
class NatPlan:
    """What the network looks like: `address` is the host's on the bridge (the guests'
    gateway and DNS server), the rest of the subnet is handed out by DHCP."""
    bridge: str
    address: str          # "10.213.0.1"
    prefix: int           # 24
    network: str          # "10.213.0.0/24"
    first: str            # first address DHCP hands out
    last: str

    @classmethod
    def from_cidr(cls, bridge: str, cidr: str) -> "NatPlan":
        """`cidr` is the host's address with the prefix ("10.213.0.1/24")."""
        try:
            iface = ipaddress.IPv4Interface(cidr)
        except ValueError as exc:
            raise NetworkError(f"nat_network {cidr!r}: {exc}") from None
        net = iface.network
        if net.prefixlen > 29 or iface.ip in (net.network_address, net.broadcast_address):
            raise NetworkError(f"nat_network {cidr!r}: a /29 or larger subnet, and a host "
                               "address inside it, are needed")
        hosts = [h for h in (net.network_address + 1, net.broadcast_address - 1)]
        first = iface.ip + 1 if iface.ip == hosts[0] else hosts[0]
        last = hosts[1] if iface.ip != hosts[1] else iface.ip - 1
        return cls(bridge, str(iface.ip), net.prefixlen, str(net), str(first), str(last))


async def _run(*argv: str, stdin: bytes | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE if stdin is not None else
        asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    if proc.returncode != 0:
        raise NetworkError(f"{argv[0]}: {err.decode(errors='replace').strip()}")
    return out.decode(errors="replace")


def enable_forwarding():
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1\n")


async def apply_masquerade(plan: NatPlan):
    """Guests' traffic leaving the subnet is masqueraded, and forwarded both ways even
    where the host's own forward policy drops (a table of ours, replaced whole)."""
    rules = f"""
table ip {TABLE}
delete table ip {TABLE}
table ip {TABLE} {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr {plan.network} ip daddr != {plan.network} masquerade
    }}
    chain forward {{
        type filter hook forward priority filter; policy accept;
        iifname "{plan.bridge}" accept
        oifname "{plan.bridge}" ct state established,related accept
    }}
}}
"""
    await _run("nft", "-f", "-", stdin=rules.encode())


async def remove_masquerade():
    await _run("nft", "-f", "-", stdin=f"table ip {TABLE}\ndelete table ip {TABLE}\n".encode())


def _dnsmasq_user() -> str:
    for name in ("dnsmasq", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return "root"


def dnsmasq_argv(plan: NatPlan, state_dir: str, reserved: dict[str, str]) -> list[str]:
    """dnsmasq on the bridge alone: no config file of the system's, no /etc/hosts of
    the host, the leases in our own file, and the reserved addresses (MAC -> address)
    on the command line: dnsmasq reads files only after it dropped to its own user,
    who may not reach the data dir."""
    return ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--bind-interfaces",
            f"--interface={plan.bridge}", "--except-interface=lo",
            f"--listen-address={plan.address}", "--strict-order", "--no-hosts",
            f"--dhcp-range={plan.first},{plan.last},12h", "--dhcp-authoritative",
            "--dhcp-no-override", f"--dhcp-leasefile={os.path.join(state_dir, 'leases')}",
            f"--pid-file={os.path.join(state_dir, 'dnsmasq.pid')}",
            f"--user={_dnsmasq_user()}", "--log-facility=-", "--quiet-dhcp",
            *(f"--dhcp-host={mac},{address}" for mac, address in sorted(reserved.items()))]


async def start_dnsmasq(plan: NatPlan, state_dir: str, reserved: dict[str, str]):
    """A running dnsmasq (the asyncio process); NetworkError if it exits at once."""
    os.makedirs(state_dir, mode=0o755, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(
        *dnsmasq_argv(plan, state_dir, reserved), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.wait_for(proc.wait(), 0.5)
    except asyncio.TimeoutError:
        return proc           # still running: it bound its sockets
    err = (await proc.stderr.read()).decode(errors="replace").strip()
    raise NetworkError(f"dnsmasq: {err or f'exited with {proc.returncode}'}")


def in_pool(plan: NatPlan, address: str) -> bool:
    """An address DHCP may hand out on this network (not the host's, not the subnet's
    own addresses)."""
    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        return False
    return ipaddress.IPv4Address(plan.first) <= ip <= ipaddress.IPv4Address(plan.last) \
        and str(ip) != plan.address


def read_leases(state_dir: str) -> dict[str, str]:
    """MAC -> IPv4 address of every lease dnsmasq holds (its lease file: expiry, MAC,
    address, name, client id a line)."""
    found = {}
    try:
        with open(os.path.join(state_dir, "leases")) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3:
                    found[parts[1].lower()] = parts[2]
    except FileNotFoundError:
        pass
    return found
