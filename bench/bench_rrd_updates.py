"""Time per /rrd_updates poll with 100 VMs' archives, against rrdtool itself in the same run.

A real server (libvirt's test driver) gets 100 VM records; while it is stopped each VM
gets an archive with ten data sources (cpu0, cpu1, cpu_usage, memory, memory_target,
memory_internal_free, vbd_xvda_read/write, vif_0_rx/tx) fed an hour of 5 s samples,
through the server's own archive code (services/metrics/archive.py, librrd); then the
server is started again and polled over HTTPS with one keep-alive connection:

    xo          start=now-600, interval=5, json, host=true, vm_uuid= every VM
                (Xen Orchestra's 10-minute window: 120 rows x ~1000 columns)
    xencenter   the same as XML
    5s tail     start=-10 (the newest row: a dashboard's poll)

Yardsticks, same files, same run: rrdtool.fetch of the same 10 minutes from one archive,
and from all 100 one after the other (what the server has to read anyway).

    .venv/bin/python bench/bench_rrd_updates.py [--vms 100] [--polls 20]
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import ssl
import statistics
import sys
import tempfile
import time

import rrdtool

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, os.path.join(HERE, ".."))
from serverproc import ServerProcess  # noqa: E402
from xapi_server.services.metrics.archive import Archive  # noqa: E402

SOURCES = ("cpu0", "cpu1", "cpu_usage", "memory", "memory_target", "memory_internal_free",
           "vbd_xvda_read", "vbd_xvda_write", "vif_0_rx", "vif_0_tx")


def feed(data_dir: str, uuids: list[str], seconds: int):
    """An hour (or `seconds`) of 5 s samples for every VM, ending now."""
    now = int(time.time())
    directory = os.path.join(data_dir, "rrd")
    for n, uuid in enumerate(uuids):
        archive = Archive(directory, "vm", uuid, 5)
        archive.ensure(SOURCES, now - seconds)
        for t in range(now - seconds + 5, now + 1, 5):
            phase = (t / 300.0) + n
            archive.update(t, {
                "cpu0": 0.5 + 0.4 * math.sin(phase), "cpu1": 0.3, "cpu_usage": 0.4,
                "memory": 2.0 ** 30, "memory_target": 2.0 ** 30,
                "memory_internal_free": 524288.0 + t % 1000, "vbd_xvda_read": 1e6 * n,
                "vbd_xvda_write": 2e5, "vif_0_rx": 1234.5, "vif_0_tx": 987.0})


def timed(fn, count: int) -> list[float]:
    out = []
    for _ in range(count):
        began = time.perf_counter()
        fn()
        out.append(time.perf_counter() - began)
    return out


def ms(samples: list[float]) -> str:
    return f"median {statistics.median(samples) * 1000:.1f} ms, " \
           f"max {max(samples) * 1000:.1f} ms"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=100)
    parser.add_argument("--polls", type=int, default=20)
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()
    data_dir = tempfile.mkdtemp(prefix="bench-rrd-")
    proc = ServerProcess(data_dir).start()
    x = proc.session().xenapi
    template = x.VM.get_by_name_label("Other install media")[0]
    uuids = []
    for n in range(args.vms):
        vm = x.VM.clone(template, f"rrd-{n}")
        x.VM.set_is_a_template(vm, False)
        uuids.append(x.VM.get_uuid(vm))
    proc.stop()
    began = time.monotonic()
    feed(data_dir, uuids, int(args.hours * 3600))
    print(f"fed {args.vms} archives x {len(SOURCES)} sources x {int(args.hours * 720)} "
          f"samples in {time.monotonic() - began:.1f} s")
    proc = ServerProcess(data_dir).start()
    try:
        session = proc.session()
        conn = http.client.HTTPSConnection("127.0.0.1", proc.port,
                                           context=ssl._create_unverified_context())
        vm_query = "".join(f"&vm_uuid={u}" for u in uuids)

        def poll(query: str) -> bytes:
            conn.request("GET", f"/rrd_updates?session_id={session._session}{query}")
            r = conn.getresponse()
            body = r.read()
            assert r.status == 200, (r.status, body[:200])
            return body

        # As Xen Orchestra: start = now - 600 + 5 at every poll (a start older than the
        # 5 s archive's 10 minutes would get the 1 min archive instead).
        xo = lambda: (f"&start={int(time.time()) - 595}&interval=5&cf=AVERAGE&host=true"
                      f"&json=true{vm_query}")
        meta = json.loads(poll(xo()))["meta"]
        shape = f"{meta['rows']} rows x {meta['columns']} columns, step {meta['step']}"
        print(f"xo poll, JSON ({shape}, {len(poll(xo())) / 1024:.0f} KiB): "
              f"{ms(timed(lambda: poll(xo()), args.polls))}")
        xc = lambda: (f"&start={int(time.time()) - 595}&interval=5&cf=AVERAGE&host=true"
                      f"{vm_query}")
        body = poll(xc())
        shape = re.search(rb"<step>(\d+)</step>.*<rows>(\d+)</rows><columns>(\d+)</columns>",
                          body[:300]).groups()
        print(f"xencenter poll, XML ({int(shape[1])} rows x {int(shape[2])} columns, step "
              f"{int(shape[0])}, {len(body) / 1024:.0f} KiB): "
              f"{ms(timed(lambda: poll(xc()), args.polls))}")
        tail = f"&start=-10&host=true&json{vm_query}"
        print(f"5 s tail, JSON: {ms(timed(lambda: poll(tail), args.polls))}")
        files = [os.path.join(data_dir, "rrd", "vm", u + ".rrd") for u in uuids]
        now = int(time.time())
        fetch = lambda f: rrdtool.fetch(f, "AVERAGE", "-r", "5", "-s", str(now - 605),
                                        "-e", str(now))
        print(f"yardstick rrdtool.fetch, 1 archive: "
              f"{ms(timed(lambda: fetch(files[0]), args.polls))}")
        print(f"yardstick rrdtool.fetch, {len(files)} archives: "
              f"{ms(timed(lambda: [fetch(f) for f in files], args.polls))}")
    finally:
        proc.stop()


if __name__ == "__main__":
    main()
