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


# host.bios_strings as xapi fills them from dmidecode (bios_strings.ml), read here from
# the kernel's DMI files: xapi's key -> the sysfs file holding that SMBIOS string.
_DMI_NAMED = (("bios-vendor", "bios_vendor"), ("bios-version", "bios_version"),
              ("system-manufacturer", "sys_vendor"), ("system-product-name", "product_name"),
              ("system-version", "product_version"),
              ("system-serial-number", "product_serial"),
              ("baseboard-manufacturer", "board_vendor"),
              ("baseboard-product-name", "board_name"),
              ("baseboard-version", "board_version"),
              ("baseboard-serial-number", "board_serial"))
_OEM_STRINGS_TYPE = 11   # SMBIOS structure type of the OEM strings


def _visible(text: str) -> str:
    """What xapi keeps of a BIOS string: printable ASCII, trimmed; dmidecode's
    "Not Specified" is no value."""
    text = "".join(c for c in text if " " <= c <= "~").strip()
    return "" if text == "Not Specified" else text


def _read(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")
    except OSError:   # absent (no DMI, as in many VMs) or root-only (serial numbers)
        return ""


def oem_strings(entries_dir: str) -> list[str]:
    """The OEM strings (SMBIOS type 11) in the raw DMI tables the kernel exposes:
    each structure is a formatted area (its length in byte 1) then NUL-terminated
    strings ending with an empty one."""
    found = []
    try:
        names = sorted(n for n in os.listdir(entries_dir)
                       if n.startswith(f"{_OEM_STRINGS_TYPE}-"))
    except OSError:
        return found
    for name in names:
        try:
            with open(os.path.join(entries_dir, name, "raw"), "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if len(raw) < 5 or raw[0] != _OEM_STRINGS_TYPE:
            continue
        strings = raw[raw[1]:].split(b"\0")
        for value in strings[:raw[4]]:   # byte 4: how many strings
            found.append(_visible(value.decode("latin-1")))
    return found


def bios_strings(dmi_dir: str, entries_dir: str) -> dict[str, str]:
    """host.bios_strings: the named SMBIOS strings ("" where the machine has none),
    the non-empty OEM strings as oem-1, oem-2 ..., and hp-rombios, which xapi reads
    from /dev/mem and is empty on anything but an old Compaq ROM."""
    result = {key: _visible(_read(os.path.join(dmi_dir, file))) for key, file in _DMI_NAMED}
    oem = [s for s in oem_strings(entries_dir) if s]
    result.update({f"oem-{i}": value for i, value in enumerate(oem, start=1)})
    result["hp-rombios"] = ""
    return result
