"""Resource controls of running libvirt domains: CPU scheduler shares and quota, disk
I/O limits, NIC bandwidth (the Hypervisor contract's set_cpu_tune, set_disk_iotune,
set_interface_bandwidth), as a mixin of LibvirtHypervisor.

NIC bandwidth needs traffic control in the host's kernel. libvirt's own recipe (an htb
class with an sfq leaf towards the guest, an ingress police filter from it) needs
sch_htb, sch_sfq and act_police; `kernel_shapes_like_libvirt` probes them once on a
scratch tap. A kernel without them (modules that cannot be loaded) would make libvirt
refuse the whole domain, so the domain XML then carries the wanted rate in our
metadata instead and this driver shapes what it can itself: a token bucket (tbf) on
the tap, which limits the traffic towards the guest; what the guest sends cannot be
policed on such a kernel.
"""
from __future__ import annotations

import os
import subprocess
import xml.etree.ElementTree as ET

import libvirt

from .contract import CPU_PERIOD_US, IOTUNE_NAMES, METADATA_NS

_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE


def _tc(*args) -> bool:
    return subprocess.run(["tc", *args], capture_output=True).returncode == 0


def kernel_shapes_like_libvirt() -> bool:
    """Can libvirt's <bandwidth> recipe run on this kernel? Tried on a scratch tap."""
    tap = f"xqosprobe{os.getpid() % 100000}"
    if subprocess.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"],
                      capture_output=True).returncode:
        return False
    try:
        return (_tc("qdisc", "add", "dev", tap, "root", "handle", "1:", "htb", "default", "1")
                and _tc("class", "add", "dev", tap, "parent", "1:", "classid", "1:1", "htb",
                        "rate", "800kbit")
                and _tc("qdisc", "add", "dev", tap, "parent", "1:1", "handle", "2:", "sfq")
                and _tc("qdisc", "add", "dev", tap, "ingress")
                and _tc("filter", "add", "dev", tap, "parent", "ffff:", "protocol", "all",
                        "u32", "match", "u32", "0", "0", "police", "rate", "100kbps",
                        "burst", "10kb", "drop", "flowid", ":1"))
    finally:
        subprocess.run(["ip", "link", "del", tap], capture_output=True)


def shape_tap(tap: str, kib_per_s: int) -> None:
    """Our own shaping of a tap (the fallback): a token bucket on what goes to the guest."""
    if not kib_per_s:
        _tc("qdisc", "del", "dev", tap, "root")
        return
    burst = max(16 * 1024, kib_per_s * 1024 // 10)   # at least 100 ms worth, never < 16 KiB
    if not _tc("qdisc", "replace", "dev", tap, "root", "tbf", "rate", f"{kib_per_s * 8}kbit",
               "burst", str(burst), "latency", "200ms"):
        raise libvirt.libvirtError(f"tc could not shape {tap}")


def _taps_by_mac(dom) -> dict[str, str]:
    out = {}
    for iface in ET.fromstring(dom.XMLDesc(0)).iter("interface"):
        mac, target = iface.find("mac"), iface.find("target")
        if mac is not None and target is not None:
            out[mac.get("address", "").lower()] = target.get("dev")
    return out


def wanted_rates(dom) -> dict[str, int]:
    """The NIC rates the domain XML asks this driver to apply itself (MAC -> KiB/s)."""
    try:
        meta = ET.fromstring(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
    except libvirt.libvirtError:
        return {}
    # libvirt hands our element back without its namespace
    return {el.get("mac", "").lower(): int(el.get("kib_per_s", "0"))
            for el in meta.iter("bandwidth")}


class QosCalls:
    """Mixed into LibvirtHypervisor: needs `_on_domain(uuid, fn)` (fn(dom) in a worker
    thread, errors as HypervisorError) and `shapes_like_libvirt`."""
    shapes_like_libvirt: bool

    async def set_cpu_tune(self, uuid, shares, quota_us):
        params = {"cpu_shares": shares, "global_period": CPU_PERIOD_US,
                  "global_quota": quota_us if quota_us else -1}   # -1: no quota
        await self._on_domain(uuid, lambda d: d.setSchedulerParametersFlags(params, _LIVE))

    async def set_disk_iotune(self, uuid, target, limits):
        params = {name: int(limits.get(name, 0)) for name in IOTUNE_NAMES}
        await self._on_domain(uuid, lambda d: d.setBlockIoTune(target, params, _LIVE))

    async def set_interface_bandwidth(self, uuid, mac, kib_per_s):
        def apply(dom):
            tap = _taps_by_mac(dom).get(mac.lower())
            if tap is None:
                raise libvirt.libvirtError(f"the domain has no NIC {mac}")
            if self.shapes_like_libvirt:
                rate = {"inbound.average": kib_per_s, "outbound.average": kib_per_s}
                dom.setInterfaceParameters(tap, rate, _LIVE)
            else:
                shape_tap(tap, kib_per_s)
        await self._on_domain(uuid, apply)

    def _shape_started(self, dom) -> None:
        """After a start or restore: the rates the XML left to us, on the new taps."""
        rates = wanted_rates(dom)
        if rates:
            taps = _taps_by_mac(dom)
            for mac, rate in rates.items():
                if mac in taps:
                    shape_tap(taps[mac], rate)
