"""Resource controls: xapi's scheduling, bandwidth, disk and memory fields applied to the
domain, in its XML at every start (`decorate`) and live when they change (`apply_*`).

    VM.VCPUs_params weight (1..65535, default 256)  -> <cputune><shares> = weight * 4
        (xapi's default 256 is the kernel's default 1024 shares)
    VM.VCPUs_params cap (% of one host CPU, 0 none) -> <global_quota> = cap% of
        <global_period> 100 ms: the whole domain's CPU time, as Xen's credit cap
    VIF qos_algorithm_type ratelimit, params kbps   -> <bandwidth> inbound and outbound
        average, KiB/s (or the driver's own shaping: backends/hypervisor/libvirt_qos.py)
    VBD qos_algorithm_type iotune, params total_bytes_sec, read_bytes_sec,
        write_bytes_sec, total_iops_sec, read_iops_sec, write_iops_sec -> <iotune>
    VBD qos_algorithm_type ionice (xapi's: sched rt|real-time|be|best-effort|idle,
        class 0..7) -> checked and kept, no effect: it renices Xen's disk backend
        process, and QEMU has none (its I/O shares the guest's threads)
    VM memory_target (dynamic_max, or set_memory_target_live) -> <currentMemory>,
        the virtio balloon's target

Values that do not parse are refused by the setters (INVALID_VALUE); one a record got
some other way (VM.create, an import) is left out at start, as xenopsd ignores it.
"""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET

from ...backends.hypervisor import CPU_PERIOD_US, IOTUNE_NAMES, METADATA_NS
from ...errors import ApiError
from .calls import hv_call

log = logging.getLogger(__name__)

DEFAULT_WEIGHT = 256
SHARES_PER_WEIGHT = 4
_UINT16 = 65535
_IONICE_SCHEDS = {"rt", "real-time", "be", "best-effort", "idle"}
VIF_ALGORITHMS = ("ratelimit",)
VBD_ALGORITHMS = ("ionice", "iotune")


class _Lenient:
    """Collects what does not parse instead of refusing it (records read at start)."""
    def __init__(self, strict: bool):
        self.strict = strict

    def number(self, params: dict, key: str, lo: int, hi: int, field: str) -> int | None:
        raw = params.get(key, "")
        if raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            if self.strict:
                raise ApiError("INVALID_VALUE", f"{field}:{key}", raw)
            log.warning("ignoring %s:%s=%r (not an integer in %d..%d)", field, key, raw, lo, hi)
            return None
        return value


def cpu_tune(params: dict, strict: bool = False) -> tuple[int, int | None]:
    """(cgroup shares, quota in microseconds per CPU_PERIOD_US or None) of VCPUs_params."""
    check = _Lenient(strict)
    weight = check.number(params, "weight", 1, _UINT16, "VCPUs_params") or DEFAULT_WEIGHT
    cap = check.number(params, "cap", 0, _UINT16, "VCPUs_params") or 0
    return weight * SHARES_PER_WEIGHT, (cap * CPU_PERIOD_US // 100 if cap else None)


def vif_rate(rec: dict, strict: bool = False) -> int:
    """KiB/s a VIF is limited to both ways, 0 for none."""
    if rec["qos_algorithm_type"] != "ratelimit":
        return 0
    return _Lenient(strict).number(rec["qos_algorithm_params"], "kbps", 1, 2**31 - 1,
                                   "qos_algorithm_params") or 0


def vbd_limits(rec: dict, strict: bool = False) -> dict[str, int]:
    """The VBD's <iotune> values (only the nonzero ones); ionice is checked only."""
    params, kind = rec["qos_algorithm_params"], rec["qos_algorithm_type"]
    check = _Lenient(strict)
    if kind == "ionice":
        sched = params.get("sched", "")
        if sched and sched not in _IONICE_SCHEDS:
            if strict:
                raise ApiError("INVALID_VALUE", "qos_algorithm_params:sched", sched)
        check.number(params, "class", 0, 7, "qos_algorithm_params")
        return {}
    if kind != "iotune":
        return {}
    limits = {name: check.number(params, name, 0, 2**53, "qos_algorithm_params")
              for name in IOTUNE_NAMES}
    limits = {k: v for k, v in limits.items() if v}
    for kind_ in ("bytes", "iops"):     # libvirt refuses a total beside read/write
        if f"total_{kind_}_sec" in limits and (f"read_{kind_}_sec" in limits
                                               or f"write_{kind_}_sec" in limits):
            if strict:
                raise ApiError("INVALID_VALUE", f"qos_algorithm_params:total_{kind_}_sec",
                               "a total cannot be combined with read or write limits")
            limits.pop(f"total_{kind_}_sec")
    return limits


def check_vif(rec: dict) -> None:
    vif_rate(rec, strict=True)


def check_vbd(rec: dict) -> None:
    vbd_limits(rec, strict=True)


def balloon_target(vm: dict) -> int:
    """What the balloon leaves the guest: memory_target when it lies in the dynamic
    range, else dynamic_max (xapi's target when the host has room)."""
    target = vm["memory_target"]
    if vm["memory_dynamic_min"] <= target <= vm["memory_dynamic_max"] and target:
        return target
    return vm["memory_dynamic_max"]


# -- the domain XML (services/vm/domxml.py calls it after the device contributors) -------

def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def decorate(ctx, dom: ET.Element, ours: ET.Element, devices: ET.Element) -> None:
    """Add the resource controls of ctx.vm and its VIFs and VBDs to the domain XML."""
    if not ctx.capabilities.tunes_resources:
        return
    store, vm = ctx.store, ctx.vm
    params = vm["VCPUs_params"]
    if params.get("weight") or params.get("cap"):
        shares, quota = cpu_tune(params)
        tune = ET.Element("cputune")
        _sub(tune, "shares", shares)
        if quota:
            _sub(tune, "global_period", CPU_PERIOD_US)
            _sub(tune, "global_quota", quota)
        dom.insert(list(dom).index(dom.find("vcpu")) + 1, tune)
    vifs = {store.get("VIF", v, "MAC").lower(): v for v in vm["VIFs"] if store.exists("VIF", v)}
    for iface in devices.iter("interface"):
        mac = iface.find("mac")
        vif = vifs.get(mac.get("address", "").lower()) if mac is not None else None
        rate = vif_rate(store.record("VIF", vif)) if vif else 0
        if not rate:
            continue
        if ctx.capabilities.nic_bandwidth_in_xml:
            bandwidth = _sub(iface, "bandwidth")
            _sub(bandwidth, "inbound", average=rate)
            _sub(bandwidth, "outbound", average=rate)
        else:
            _sub(ours, f"{{{METADATA_NS}}}bandwidth", mac=mac.get("address"), kib_per_s=rate)
    by_serial = {store.get("VBD", v, "uuid")[:20]: v for v in vm["VBDs"]
                 if store.exists("VBD", v)}
    for disk in devices.iter("disk"):
        serial = disk.find("serial")
        vbd = by_serial.get(serial.text) if serial is not None else None
        if vbd is None or disk.find("source") is None:   # an empty drive cannot throttle
            continue
        limits = vbd_limits(store.record("VBD", vbd))
        if limits:
            iotune = _sub(disk, "iotune")
            for name in IOTUNE_NAMES:
                if name in limits:
                    _sub(iotune, name, limits[name])


# -- live: the running domain follows a changed record -----------------------------------

def _running_hv(server, vm: str):
    """The hypervisor of the VM's host when the VM runs there and limits reach it."""
    if server.store.get("VM", vm, "power_state") not in ("Running", "Paused"):
        return None
    hv = server.runtime_of_vm(vm).vms.hv
    return hv if hv.capabilities.tunes_resources else None


async def apply_cpu(server, vm: str) -> None:
    hv = _running_hv(server, vm)
    if hv is not None:
        rec = server.store.record("VM", vm)
        await hv_call(hv.set_cpu_tune(rec["uuid"], *cpu_tune(rec["VCPUs_params"])))


async def apply_vif(server, vif: str) -> None:
    store = server.store
    rec = store.record("VIF", vif)
    hv = _running_hv(server, rec["VM"])
    if hv is not None and rec["currently_attached"]:
        await hv_call(hv.set_interface_bandwidth(store.get("VM", rec["VM"], "uuid"),
                                                 rec["MAC"], vif_rate(rec)))


async def apply_vbd(server, vbd: str) -> None:
    store = server.store
    rec = store.record("VBD", vbd)
    hv = _running_hv(server, rec["VM"])
    if hv is not None and rec["currently_attached"] and not rec["empty"] and rec["device"]:
        await hv_call(hv.set_disk_iotune(store.get("VM", rec["VM"], "uuid"), rec["device"],
                                         vbd_limits(rec)))
