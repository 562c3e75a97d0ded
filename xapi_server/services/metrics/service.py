"""The metrics service: samples the host, its running VMs and their SRs every
`metrics_interval` seconds (5, as xcp-rrdd) into round-robin archives under
<data-dir>/rrd/, and answers what /rrd_updates, the RRD dumps, /metrics and the
data-source messages ask.

Every rrdtool call runs on the service's one worker thread, in order: the archives are
never read half-written and the event loop never waits on a disk. The store is read
in the event loop only. Archives of halted VMs stay (xapi keeps them on the master);
those of VMs and SRs that no longer exist go at startup and every hour.
"""
from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from ...backends.hypervisor import HypervisorError
from ...errors import ApiError
from . import collect
from .archive import TIMESCALES, Archive, ArchiveError
from .sources import describe

log = logging.getLogger(__name__)

NULL = "OpaqueRef:NULL"
KINDS = {"host": "host", "vm": "VM", "sr": "SR"}   # archive kind -> class
CLEANUP_EVERY = 3600.0       # seconds between sweeps of archives whose owner is gone


class NoData(Exception):
    """Nothing to export (no archive among those asked for)."""


@dataclass
class Updates:
    """What /rrd_updates returns: xapi's xport (rrd_updates.ml)."""
    start: int
    step: int
    end: int
    legend: list[str] = field(default_factory=list)
    rows: list[tuple[int, list]] = field(default_factory=list)   # newest first


class MetricsService:
    def __init__(self, server):
        self.server = server
        self.settings = server.settings
        self.directory = os.path.join(server.settings.data_dir, "rrd")
        self.step = int(server.settings.metrics_interval)
        if self.step <= 0 or TIMESCALES[0][0] % self.step:
            raise ValueError("metrics_interval must divide 5 (1 or 5 seconds)")
        self.archives: dict[tuple[str, str], Archive] = {}
        self.latest: dict[tuple[str, str], dict] = {}   # values of the last sample
        self.last_sample = 0          # its time (Unix seconds)
        self.rates = collect.Rates()
        self.asked_memory_stats: set[str] = set()   # domains asked for balloon stats
        self.worker = ThreadPoolExecutor(1, thread_name_prefix="metrics")
        self.task: asyncio.Task | None = None
        self._swept = 0.0

    # -- life -------------------------------------------------------------------------
    async def start(self):
        await self.run(self._load_all)
        await self._sweep()
        self.task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        self.worker.shutdown(wait=True)

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.worker, fn, *args)

    def _load_all(self):
        for kind in KINDS:
            folder = os.path.join(self.directory, kind)
            for name in os.listdir(folder) if os.path.isdir(folder) else ():
                if name.endswith(".rrd"):
                    uuid = name[:-4]
                    try:
                        self.archives[(kind, uuid)] = Archive(
                            self.directory, kind, uuid, self.step).load()
                    except ArchiveError as exc:
                        log.error("archive %s/%s unreadable, ignored: %s", kind, uuid, exc)

    async def _loop(self):
        while True:
            began = time.monotonic()
            try:
                await self.sample()
                if began - self._swept > CLEANUP_EVERY:
                    await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("metrics sample failed")
            await asyncio.sleep(max(0.1, self.step - (time.monotonic() - began)))

    async def _sweep(self):
        self._swept = time.monotonic()
        store = self.server.store
        # list(): the worker may add an archive meanwhile (record_data_source)
        gone = [key for key in list(self.archives)
                if not _exists_uuid(store, KINDS[key[0]], key[1])]
        for key in gone:
            archive = self.archives.pop(key)
            self.latest.pop(key, None)
            await self.run(archive.remove)

    # -- sampling -----------------------------------------------------------------------
    async def sample(self):
        """One round: read everything, compute the values (event loop: the store), write
        the archives (worker)."""
        server, store = self.server, self.server.store
        host_ref = server.host_ref
        raw = await self.run(collect.read_host)
        domains = {}
        runtime = server.runtimes.get(host_ref)
        hv = runtime.vms.hv if runtime is not None and runtime.vms is not None else None
        if hv is not None:
            try:
                domains = await hv.domain_stats()
            except HypervisorError as exc:   # libvirt away: the host is still sampled
                log.warning("domain statistics unavailable: %s", exc)
        # Rates over the exact time between readings; the archives take whole seconds.
        measured = time.time()
        now = max(int(measured), self.last_sample + 1)
        samples = {}
        sr_io: dict[str, list] = {}
        for uuid, stats in domains.items():
            vm = _ref_of(store, "VM", uuid)
            if vm is None:
                continue
            samples[("vm", uuid)] = collect.vm_values(uuid, stats, self.rates, measured,
                                                      store, vm, sr_io)
            if stats.memory_free_kib is None and uuid not in self.asked_memory_stats:
                self.asked_memory_stats.add(uuid)
                await _ask_memory_stats(hv, uuid, self.step)
        self.asked_memory_stats &= set(domains)
        host = collect.host_values(raw, self.rates, measured, store, host_ref, domains)
        for sr in _local_srs(store, host_ref):
            io = sr_io.get(sr)
            samples[("sr", store.get("SR", sr, "uuid"))] = collect.sr_values(store, sr, io)
            if io is not None:
                host.update(collect.host_sr_values(store.get("SR", sr, "uuid"), io))
        samples[("host", store.get("host", host_ref, "uuid"))] = host
        self.rates.end_round()
        await self.run(self._write, now, samples)
        self.latest = samples
        self.last_sample = now

    def _write(self, now: int, samples: dict):
        for (kind, uuid), values in samples.items():
            archive = self._archive(kind, uuid)
            wanted = [n for n in values
                      if describe(kind, n).standard or n in archive.recorded]
            try:
                archive.ensure(wanted, now)
                archive.update(now, values)
            except (ArchiveError, OSError) as exc:
                log.error("archive %s/%s not updated: %s", kind, uuid, exc)

    def _archive(self, kind: str, uuid: str) -> Archive:
        key = (kind, uuid)
        if key not in self.archives:
            self.archives[key] = Archive(self.directory, kind, uuid, self.step)
        return self.archives[key]

    # -- data sources (the API messages) ----------------------------------------------
    async def data_sources(self, kind: str, uuid: str) -> list[dict]:
        """xapi's data_source records: every source sampled now or archived."""
        live = self.latest.get((kind, uuid), {})
        archive = self.archives.get((kind, uuid))
        recorded = set(archive.ids) if archive is not None else set()
        archived = await self.run(archive.latest) if recorded else {}
        out = []
        for name in sorted(set(live) | recorded):
            info = describe(kind, name)
            value = live.get(name)
            if value is None:
                value = archived.get(name)
            out.append({"name_label": name, "name_description": info.description,
                        "enabled": name in recorded, "standard": info.standard,
                        "units": info.units, "min": info.min, "max": info.max,
                        "value": _finite(value)})
        return out

    async def query(self, kind: str, uuid: str, name: str) -> float | None:
        """The latest value: the last sample's, else (a halted VM) the archive's last
        5 s row; None for a source this owner does not have. A rate with no earlier
        reading yet, or an unknown row, is 0.0 (the wire carries no NaN)."""
        live = self.latest.get((kind, uuid), {})
        if name in live:
            return _finite(live[name])
        archive = self.archives.get((kind, uuid))
        if archive is not None and name in archive.ids:
            return _finite((await self.run(archive.latest)).get(name))
        return None

    def known(self, kind: str, uuid: str, name: str) -> bool:
        archive = self.archives.get((kind, uuid))
        return name in self.latest.get((kind, uuid), {}) or \
            (archive is not None and name in archive.ids)

    async def record(self, kind: str, uuid: str, name: str):
        """Record `name` from the next sample on (a standard source already is)."""
        def add():
            archive = self._archive(kind, uuid)
            archive.recorded.add(name)
            archive.ensure([name], max(self.last_sample, int(time.time())))
        await self.run(add)

    async def forget(self, kind: str, uuid: str, name: str):
        """Drop the source's archive; a standard source starts a new one at the next
        sample, another is no longer recorded."""
        archive = self.archives.get((kind, uuid))
        if archive is not None:
            await self.run(archive.forget, name)

    # -- exports ------------------------------------------------------------------------
    async def updates(self, owners: list[tuple[str, str]], start: int, interval: int,
                      cf: str | None) -> Updates:
        return await self.run(self._updates, owners, start, interval, cf)

    def _updates(self, owners, start, interval, cf) -> Updates:
        archives = [a for a in (self.archives.get(o) for o in owners)
                    if a is not None and a.exists]
        if not archives or (cf is not None and cf != "AVERAGE"):
            raise NoData("No_RRA_Available")
        last = self.last_sample or archives[0].last
        if start < 0:
            start = last + start
        seconds, rows = _best_timescale(last, start, interval)
        end = last // seconds * seconds
        oldest = end - (rows - 1) * seconds
        first = max(oldest, -(-start // seconds) * seconds)
        out = Updates(start=start // seconds * seconds + seconds, step=seconds, end=end)
        times = list(range(end, first - 1, -seconds))
        columns = []
        for archive in archives:
            names, _step, data = archive.fetch(seconds, first, end)
            blank = [None] * len(names)
            out.legend += [f"AVERAGE:{archive.kind}:{archive.uuid}:{n}" for n in names]
            columns.append((data, blank))
        for t in times:
            row = []
            for data, blank in columns:
                row += data.get(t, blank)
            out.rows.append((t, row))
        return out

    async def dump(self, kind: str, uuid: str):
        """(archive, its info, [(seconds, rows, names, {time: values})], rrdtool's
        consolidation state) for the full dump, or None."""
        archive = self.archives.get((kind, uuid))
        if archive is None or not archive.exists:
            return None

        def read():
            info = archive.info()
            tables = []
            for seconds, rows in TIMESCALES:
                end = archive.last // seconds * seconds
                names, _step, data = archive.fetch(seconds, end - (rows - 1) * seconds, end)
                tables.append((seconds, rows, names, data))
            return info, tables, archive.consolidation_state()
        info, tables, state = await self.run(read)
        return archive, info, tables, state


def _best_timescale(last: int, start: int, interval: int) -> tuple[int, int]:
    """xapi's find_best_rras: the finest archive at least `interval` coarse that still
    covers `start`; else the coarsest."""
    for seconds, rows in TIMESCALES:
        if seconds < interval:
            continue
        end = last // seconds * seconds
        if start >= end - (rows - 1) * seconds - seconds:
            return seconds, rows
    return TIMESCALES[-1]


def _finite(value) -> float:
    return float(value) if value is not None and math.isfinite(value) else 0.0


def _exists_uuid(store, cname: str, uuid: str) -> bool:
    return _ref_of(store, cname, uuid) is not None


def _ref_of(store, cname: str, uuid: str) -> str | None:
    try:
        return store.by_uuid(cname, uuid)
    except ApiError:   # UUID_INVALID: no such object
        return None


def _local_srs(store, host_ref: str) -> list[str]:
    """SRs with a plugged PBD on this host."""
    return [store.get("PBD", p, "SR") for p in store.get("host", host_ref, "PBDs")
            if store.get("PBD", p, "currently_attached")]


async def _ask_memory_stats(hv, uuid: str, period: int):
    try:
        await hv.report_memory_stats(uuid, period)
    except HypervisorError as exc:   # no balloon device, or a guest without the driver
        log.debug("no balloon statistics for %s: %s", uuid, exc)
