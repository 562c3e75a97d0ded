"""Samples: the host's counters from /proc and the domains' from the hypervisor, turned
into xapi's data source values (rates per second from the difference of two samples).

`read_host()` runs on the metrics worker thread (it reads files); `Rates` and the value
builders run in the event loop (they read the store).
"""
from __future__ import annotations

import os

from ..network.runtime import tap_name

NULL = "OpaqueRef:NULL"


class Rates:
    """The previous reading of every counter, to turn the next one into a rate. A
    counter that went down (a domain restarted, a device replaced) gives no value."""

    def __init__(self):
        self._seen: dict[tuple, tuple[float, float]] = {}
        self._round: set = set()

    def rate(self, key: tuple, now: float, value: float, scale: float = 1.0) -> float | None:
        self._round.add(key)
        before = self._seen.get(key)
        self._seen[key] = (now, value)
        if before is None or now <= before[0] or value < before[1]:
            return None
        return (value - before[1]) / (now - before[0]) * scale

    def end_round(self):
        """Forget counters not read this round (stopped domains, unplugged devices)."""
        for key in set(self._seen) - self._round:
            del self._seen[key]
        self._round = set()


# -- the host -----------------------------------------------------------------------------

def read_host(proc: str = "/proc") -> dict:
    """Raw counters: cpu jiffies (busy, total) per CPU and overall, loadavg, memory
    (KiB) and every interface's byte and error counters."""
    cpus = {}
    with open(os.path.join(proc, "stat")) as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            name, *fields = line.split()
            ticks = [int(x) for x in fields[:8]]
            idle = ticks[3] + ticks[4]          # idle + iowait
            cpus[name] = (sum(ticks) - idle, sum(ticks))
    with open(os.path.join(proc, "loadavg")) as f:
        load = float(f.read().split()[0])
    mem = {}
    with open(os.path.join(proc, "meminfo")) as f:
        for line in f:
            key, _, rest = line.partition(":")
            mem[key] = int(rest.split()[0])
    nets = {}
    with open(os.path.join(proc, "net", "dev")) as f:
        for line in f.readlines()[2:]:
            dev, _, rest = line.partition(":")
            v = [int(x) for x in rest.split()]
            nets[dev.strip()] = (v[0], v[8], v[2], v[10])   # rx, tx bytes; rx, tx errs
    return {"cpus": cpus, "load": load, "mem_total": mem.get("MemTotal", 0),
            "mem_free": mem.get("MemAvailable", mem.get("MemFree", 0)), "nets": nets}


def host_values(raw: dict, rates: Rates, now: float, store, host_ref: str,
                running: dict) -> dict[str, float | None]:
    """xapi's host data sources from a read_host() sample; `running` the domains'
    stats (for running_vcpus/running_domains)."""
    out: dict[str, float | None] = {}
    cpus = raw["cpus"]
    for name, (busy, total) in cpus.items():
        rate_busy = rates.rate(("host", name, "busy"), now, busy)
        rate_total = rates.rate(("host", name, "total"), now, total)
        value = None if not rate_total or rate_busy is None else \
            min(1.0, rate_busy / rate_total)
        out["cpu_avg" if name == "cpu" else name] = value
    count = max(1, len(cpus) - 1)
    out["loadavg"] = raw["load"]
    out["hostload"] = raw["load"] / count
    out["memory_total_kib"] = float(raw["mem_total"])
    out["memory_free_kib"] = float(raw["mem_free"])
    out["running_domains"] = float(len(running))
    out["running_vcpus"] = float(sum(len(s.vcpu_time_ns) for s in running.values()))
    physical = {store.get("PIF", p, "device") for p in store.get("host", host_ref, "PIFs")
                if store.get("PIF", p, "physical")}
    aggregate = {"rx": 0.0, "tx": 0.0}
    for dev, (rx, tx, rx_err, tx_err) in raw["nets"].items():
        if dev == "lo" or dev.startswith(tap_name("")[:4]):   # loopback, VM taps
            continue
        for direction, counter in (("rx", rx), ("tx", tx)):
            value = rates.rate(("host", dev, direction), now, counter)
            out[f"pif_{dev}_{direction}"] = value
            if dev in physical and value is not None:
                aggregate[direction] += value
        out[f"pif_{dev}_rx_errors"] = rates.rate(("host", dev, "rxe"), now, rx_err)
        out[f"pif_{dev}_tx_errors"] = rates.rate(("host", dev, "txe"), now, tx_err)
    out["pif_aggr_rx"], out["pif_aggr_tx"] = aggregate["rx"], aggregate["tx"]
    return out


# -- VMs ------------------------------------------------------------------------------------

def vm_values(uuid: str, stats, rates: Rates, now: float, store, vm_ref: str,
              sr_io: dict) -> dict[str, float | None]:
    """xapi's VM data sources from one DomainStats; adds the VM's disk traffic to
    `sr_io` (SR ref -> [read B/s, write B/s, read req/s, write req/s])."""
    out: dict[str, float | None] = {}
    ns = 1e-9   # CPU time is in nanoseconds: a rate of ns/s times 1e-9 is a fraction
    for n, t in enumerate(stats.vcpu_time_ns):
        out[f"cpu{n}"] = _fraction(rates.rate((uuid, "vcpu", n), now, t, ns))
    usage = rates.rate((uuid, "cpu"), now, stats.cpu_time_ns, ns)
    out["cpu_usage"] = None if usage is None else \
        usage / max(1, len(stats.vcpu_time_ns))
    out["memory"] = stats.memory_kib * 1024.0
    target = store.get("VM", vm_ref, "memory_target") if vm_ref else 0
    out["memory_target"] = float(target or stats.memory_kib * 1024)
    if stats.memory_free_kib is not None:
        out["memory_internal_free"] = float(stats.memory_free_kib)
    vif_device = {}
    disk_sr = {}
    if vm_ref:
        for vif in store.get("VM", vm_ref, "VIFs"):
            rec = store.record("VIF", vif)
            vif_device[tap_name(rec["uuid"])] = rec["device"]
        for vbd in store.get("VM", vm_ref, "VBDs"):
            rec = store.record("VBD", vbd)
            if rec["VDI"] != NULL and store.exists("VDI", rec["VDI"]):
                disk_sr[rec["device"]] = store.get("VDI", rec["VDI"], "SR")
    for dev, rx, tx, rx_err, tx_err in stats.nets:
        # libvirt reports a tap's counters as the guest sees them (rx: guest received).
        n = vif_device.get(dev)
        if n is None:
            continue
        out[f"vif_{n}_rx"] = rates.rate((uuid, dev, "rx"), now, rx)
        out[f"vif_{n}_tx"] = rates.rate((uuid, dev, "tx"), now, tx)
        out[f"vif_{n}_rx_errors"] = rates.rate((uuid, dev, "rxe"), now, rx_err)
        out[f"vif_{n}_tx_errors"] = rates.rate((uuid, dev, "txe"), now, tx_err)
    for dev, rd, wr, rd_req, wr_req in stats.disks:
        # A VBD's device is its target in the domain (vda, hdc: storage/attach.target_of).
        values = [rates.rate((uuid, dev, k), now, c)
                  for k, c in (("rd", rd), ("wr", wr), ("rdq", rd_req), ("wrq", wr_req))]
        out[f"vbd_{dev}_read"], out[f"vbd_{dev}_write"] = values[0], values[1]
        out[f"vbd_{dev}_iops_read"], out[f"vbd_{dev}_iops_write"] = values[2], values[3]
        sr = disk_sr.get(dev)
        if sr is not None:
            totals = sr_io.setdefault(sr, [0.0, 0.0, 0.0, 0.0])
            for k, value in enumerate(values):
                totals[k] += value or 0.0
    return out


def _fraction(value):
    return None if value is None else min(1.0, value)


def sr_values(store, sr_ref: str, io: list | None) -> dict[str, float | None]:
    rec = store.record("SR", sr_ref)
    out = {"physical_utilisation": float(rec["physical_utilisation"]),
           "physical_size": float(rec["physical_size"])}
    read, write, read_req, write_req = io or (0.0, 0.0, 0.0, 0.0)
    out.update(read=read, write=write, iops_read=read_req, iops_write=write_req)
    return out


def host_sr_values(sr_uuid: str, io: list) -> dict[str, float]:
    """The host's per-SR sources (xapi's rrdp-iostat names, by the SR's first 8 chars)."""
    s = sr_uuid[:8]
    read, write, read_req, write_req = io
    mib = 1 / (1 << 20)
    return {f"read_{s}": read, f"write_{s}": write,
            f"io_throughput_read_{s}": read * mib, f"io_throughput_write_{s}": write * mib,
            f"io_throughput_total_{s}": (read + write) * mib,
            f"iops_read_{s}": read_req, f"iops_write_{s}": write_req,
            f"iops_total_{s}": read_req + write_req}
