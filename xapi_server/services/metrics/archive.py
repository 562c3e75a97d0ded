"""One owner's round-robin archive (a host, a VM or an SR): an rrdtool file plus the
names of its data sources.

xcp-rrdd keeps, per data source, AVERAGE archives of 5 s × 120 rows (10 min), 1 min × 120
(2 h), 1 h × 168 (a week) and 1 day × 366 (a year), xff 0.5: so do we, in rrdtool's own
file format (librrd through its Python binding), so `rrdtool dump/fetch/graph` read them.

rrdtool limits a data source's name to 19 characters of [A-Za-z0-9_]; xapi's names are
longer (`memory_internal_free`, `pif_<any interface>_rx_errors`). So inside the file the
sources are `d0`, `d1` ..., and `<uuid>.json` beside it maps xapi's names to them. A
source is added with `rrdtool tune DS:..` (its history starts unknown) and forgotten
with `tune DEL:..`, as xcp-rrdd adds and drops them while a VM runs.

Values are rates we compute ourselves from counter differences (services/metrics/
collect.py) and stored as GAUGE: rrdtool's DERIVE takes integers only and could not
turn nanoseconds of CPU into a fraction.

Not thread-safe: the MetricsService runs every call on its one worker thread.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import xml.etree.ElementTree as ET

import rrdtool

# (seconds per row, rows): xcp-rrdd's timescales (rrdd_shared.ml).
TIMESCALES = ((5, 120), (60, 120), (3600, 168), (86400, 366))
XFF = 0.5
CF = "AVERAGE"


class ArchiveError(Exception):
    """rrdtool refused (a damaged file, a full disk): its own message."""


def _rrd(fn, *args):
    try:
        return fn(*args)
    except rrdtool.OperationalError as exc:
        raise ArchiveError(str(exc)) from None


class Archive:
    def __init__(self, directory: str, kind: str, uuid: str, step: int):
        self.kind, self.uuid, self.step = kind, uuid, step
        folder = os.path.join(directory, kind)
        self.path = os.path.join(folder, uuid + ".rrd")
        self.names_path = os.path.join(folder, uuid + ".json")
        self.ids: dict[str, str] = {}     # xapi's data source name -> the file's "dN"
        self.next_id = 0
        self.recorded: set[str] = set()   # non-standard sources someone asked to record
        self.last = 0                     # the last update's time (Unix seconds)
        self.exists = False

    # -- on disk ----------------------------------------------------------------------
    def load(self) -> "Archive":
        if not os.path.exists(self.path):
            return self
        try:
            with open(self.names_path) as f:
                meta = json.load(f)
        except (OSError, ValueError):
            meta = {}
        info = _rrd(rrdtool.info, self.path)
        in_file = {k[3:-7] for k in info if k.startswith("ds[") and k.endswith("].index")}
        # A name whose source is not in the file (a crash between tune and the names
        # file) is dropped; a source without a name stays unused.
        self.ids = {n: i for n, i in meta.get("ids", {}).items() if i in in_file}
        self.next_id = max([int(i[1:]) + 1 for i in in_file] + [meta.get("next", 0)])
        self.recorded = set(meta.get("recorded", []))
        self.last = int(info["last_update"])
        self.exists = True
        return self

    def _save_names(self):
        tmp = self.names_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"ids": self.ids, "next": self.next_id,
                       "recorded": sorted(self.recorded)}, f)
        os.replace(tmp, self.names_path)

    def _ds(self, ds_id: str) -> str:
        # Heartbeat: three samples may be missed before a value is unknown.
        return f"DS:{ds_id}:GAUGE:{max(3 * self.step, 15)}:U:U"

    def ensure(self, names, now: int):
        """Create the file, or add the sources it lacks (their history unknown)."""
        new = [n for n in names if n not in self.ids]
        if self.exists and not new:
            return
        added = {}
        for name in new:
            added[name] = f"d{self.next_id}"
            self.next_id += 1
        if not self.exists:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            rras = [f"RRA:{CF}:{XFF}:{max(1, seconds // self.step)}:{rows}"
                    for seconds, rows in TIMESCALES]
            sources = [self._ds(i) for i in added.values()] or [self._ds("d0")]
            if not added:
                self.next_id = 1
            _rrd(rrdtool.create, self.path, "--start", str(now - 1), "--step",
                 str(self.step), *sources, *rras)
            self.last, self.exists = now - 1, True
        elif added:
            _rrd(rrdtool.tune, self.path, *[self._ds(i) for i in added.values()])
        self.ids.update(added)
        self._save_names()

    def update(self, now: int, values: dict[str, float]):
        """One sample; values of names the file does not hold are ignored."""
        if now <= self.last:
            return
        known = [(self.ids[n], v) for n, v in values.items() if n in self.ids]
        if not known:
            return
        template = ":".join(i for i, _ in known)
        sample = ":".join("U" if v is None or not math.isfinite(v) else repr(float(v))
                          for _, v in known)
        _rrd(rrdtool.update, self.path, "-t", template, f"{now}:{sample}")
        self.last = now

    def forget(self, name: str):
        ds_id = self.ids.pop(name, None)
        self.recorded.discard(name)
        if ds_id is not None and self.exists:
            if self.ids:
                _rrd(rrdtool.tune, self.path, f"DEL:{ds_id}")
            else:   # rrdtool keeps at least one source: start afresh
                self.remove()
                return
        self._save_names()

    def remove(self):
        for path in (self.path, self.names_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        self.ids, self.exists, self.next_id = {}, False, 0

    # -- reading ----------------------------------------------------------------------
    def fetch(self, row_seconds: int, first: int, last: int):
        """Rows of the archive with `row_seconds` per row, for the row end times
        first..last (multiples of row_seconds): (names, step, {time: [values]}), the
        values in the order of names (None: unknown)."""
        (start, _end, step), ds_ids, rows = _rrd(
            rrdtool.fetch, self.path, CF, "-r", str(row_seconds), "-s",
            str(first - row_seconds), "-e", str(last))
        by_id = {i: n for n, i in self.ids.items()}
        columns = [(k, by_id[i]) for k, i in enumerate(ds_ids) if i in by_id]
        out = {}
        for k, row in enumerate(rows):
            t = start + (k + 1) * step
            if first <= t <= last:
                out[t] = [row[c] for c, _ in columns]
        return [n for _, n in columns], step, out

    def latest(self) -> dict[str, float]:
        """The last complete 5 s row of every source (NaN where unknown)."""
        seconds = TIMESCALES[0][0]
        end = self.last // seconds * seconds
        names, _step, rows = self.fetch(seconds, end, end)
        values = rows.get(end) or [None] * len(names)
        return {n: math.nan if v is None else v for n, v in zip(names, values)}

    def info(self) -> dict:
        return _rrd(rrdtool.info, self.path)

    def consolidation_state(self) -> list[list[tuple[float, float]]]:
        """Per archive, per source (file order): rrdtool's (primary, secondary) value of
        the row being consolidated, which only `rrdtool dump` tells."""
        fd, tmp = tempfile.mkstemp(suffix=".xml", dir=os.path.dirname(self.path))
        os.close(fd)
        try:
            _rrd(rrdtool.dump, self.path, tmp)
            root = ET.parse(tmp).getroot()   # rrdtool's own output, not a client's
        finally:
            os.unlink(tmp)
        return [[(float(ds.findtext("primary_value")), float(ds.findtext("secondary_value")))
                 for ds in rra.find("cdp_prep")] for rra in root.findall("rra")]
