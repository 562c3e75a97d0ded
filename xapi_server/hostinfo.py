"""Facts about the machine we run on, read from the kernel (no hypervisor needed)."""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess


def hostname() -> str:
    return socket.gethostname()


def addresses() -> list[str]:
    """Global IPv4 and IPv6 addresses of this host, from iproute2."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True,
                             timeout=5, check=True).stdout
        found = []
        for link in json.loads(out):
            for addr in link.get("addr_info", []):
                if addr.get("scope") == "global":
                    found.append(addr["local"])
        return found
    except (OSError, subprocess.SubprocessError, ValueError):
        return []


def primary_address() -> str:
    """The address other machines would use: the source of the default route."""
    for family, probe in ((socket.AF_INET, ("192.0.2.1", 9)), (socket.AF_INET6, ("2001:db8::1", 9))):
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect(probe)  # UDP connect sends nothing; it only picks a route
                return s.getsockname()[0]
        except OSError:
            continue
    found = addresses()
    return found[0] if found else "127.0.0.1"


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes."""
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts:
                values[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return values


def cpus() -> list[dict[str, str]]:
    """One dict per logical CPU from /proc/cpuinfo."""
    result, current = [], {}
    with open("/proc/cpuinfo") as f:
        for line in f:
            if not line.strip():
                if current:
                    result.append(current)
                current = {}
                continue
            key, _, value = line.partition(":")
            current[key.strip()] = value.strip()
    if current:
        result.append(current)
    return result


def cpu_info() -> dict[str, str]:
    """host.cpu_info as xapi fills it."""
    info = cpus()
    first = info[0] if info else {}
    flags = first.get("flags", "")
    return {
        "cpu_count": str(len(info) or os.cpu_count() or 1),
        "socket_count": str(len({c.get("physical id", "0") for c in info}) or 1),
        "vendor": first.get("vendor_id", ""),
        "speed": first.get("cpu MHz", "0"),
        "modelname": first.get("model name", platform.processor()),
        "family": first.get("cpu family", ""),
        "model": first.get("model", ""),
        "stepping": first.get("stepping", ""),
        "flags": flags,
        "features": "",
    }


def kernel_version() -> str:
    return platform.release()
