"""Live migration of the tiny guest through the API against `virsh migrate --live --p2p`
of the same domain between the same two libvirt daemons, in one run.

Two simulated hosts (tests/pool_harness.py, migration=True: each libvirtd in its own
network namespace, listening over TLS with certificates of a CA of the run's own); the
second joins the first's pool; a shared file SR holds the guest's disk. The guest
(tests/guest, `guestcount=S`) prints a counter on its serial console every S seconds.
Each round moves it coordinator -> member -> coordinator, first with VM.pool_migrate
(the wall time of the call), then with virsh on the source daemon, with the same flags
the server uses (--live --p2p --tls --persistent --undefinesource --unsafe, memory
stream to tcp://destination) and the same certificates. Printed: the median time of
one move each way, their ratio (goal <= 1.2), and the downtime each way: the longest
gap between two counter lines arriving (read from both hosts' console files every
5 ms) during the move, less the guest's interval.

    .venv/bin/python bench/bench_migrate.py [--runs 3] [--mib 96] [--interval 0.02]
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from guest import build  # noqa: E402
from guest.harness import MARK, guest_vm  # noqa: E402
from pool_harness import pool_hosts  # noqa: E402
from serverproc import GUEST_CACHE, ROOT_PASSWORD  # noqa: E402

COUNT = re.compile((MARK + r"COUNT (\d+)\r?\n").encode())


class Dirs:
    """What pool_hosts wants of pytest's tmp_path_factory."""

    def __init__(self, root):
        self.root = root

    def mktemp(self, name):
        return tempfile.mkdtemp(prefix=name, dir=self.root)


class CounterWatch:
    """Arrival time of every counter line the guest writes, whichever host's console
    file it lands in."""

    def __init__(self, paths):
        self.paths, self.offsets = paths, {p: 0 for p in paths}
        self.arrivals: list[tuple[float, int]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        pending = {p: b"" for p in self.paths}
        while not self.stop.is_set():
            for path in self.paths:
                try:
                    with open(path, "rb") as f:
                        f.seek(self.offsets[path])
                        data = f.read()
                except FileNotFoundError:
                    continue
                if not data:
                    continue
                self.offsets[path] += len(data)
                now = time.monotonic()
                text = pending[path] + data
                cut = text.rfind(b"\n") + 1
                pending[path] = text[cut:]
                for m in COUNT.finditer(text[:cut]):
                    self.arrivals.append((now, int(m.group(1))))
            time.sleep(0.005)

    def gap(self, start: float, end: float) -> float:
        """The longest wait for the next counter line between start and end (+1 s)."""
        times = sorted(t for t, _ in self.arrivals if start <= t <= end + 1.0)
        return max((b - a for a, b in zip(times, times[1:])), default=float("nan"))

    def last(self) -> int:
        return max((n for _, n in self.arrivals), default=-1)


def wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mib", type=int, default=96)
    ap.add_argument("--interval", type=float, default=0.02)
    args = ap.parse_args()
    guest = build.build_guest(GUEST_CACHE)
    root = tempfile.mkdtemp(prefix="bench-migrate-")
    with pool_hosts(Dirs(root), 2, slot=7, migration=True) as hosts:
        coordinator, member = hosts
        member.session().xenapi.pool.join(coordinator.address, "root", ROOT_PASSWORD)
        member.wait_restarted()
        c = coordinator.session().xenapi
        by_address = {c.host.get_address(h): h for h in c.host.get_all()}
        me, there = by_address[coordinator.address], by_address[member.address]
        shared = tempfile.mkdtemp(prefix="shared-sr-", dir=root)
        sr = c.SR.create(me, {"path": shared}, "0", "shared", "", "file", "user", True, {})
        vm = guest_vm(c, guest, "bench", mib=args.mib, args=f"guestcount={args.interval}")
        disk = c.VDI.create({"SR": sr, "virtual_size": str(8 << 20), "type": "user",
                             "sharable": False, "read_only": False, "other_config": {},
                             "name_label": "bench disk"})
        c.VBD.create({"VM": vm, "VDI": disk, "userdevice": "1", "bootable": False,
                      "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})
        c.VM.start_on(vm, me, False, False)
        uuid = c.VM.get_uuid(vm)
        watch = CounterWatch([os.path.join(h.server.data_dir, "consoles", uuid + ".log")
                              for h in hosts])
        wait(lambda: watch.last() > 10, 120, "the guest counting")

        def api(host):
            t0 = time.monotonic()
            c.VM.pool_migrate(vm, host, {})
            return t0, time.monotonic()

        def virsh(src, dst):
            pki = src.server.env["XAPI_MIGRATION_PEER_URI"].split("pkipath=")[1]
            argv = ["virsh", "-c", src.libvirtd.uri, "migrate", "--live", "--p2p", "--tls",
                    "--persistent", "--undefinesource", "--unsafe", f"xapi-{uuid}",
                    f"qemu+tls://{dst.address}/system?pkipath={pki}",
                    f"tcp://{dst.address}"]
            t0 = time.monotonic()
            subprocess.run(argv, check=True, capture_output=True, text=True)
            return t0, time.monotonic()

        def settled(host):
            wait(lambda: (c.VM.get_power_state(vm), c.VM.get_resident_on(vm))
                 == ("Running", host), 60, "the server following the domain")
            time.sleep(1)   # the counter runs a while between two moves

        times = {"api": [], "virsh": []}
        gaps = {"api": [], "virsh": []}
        for run in range(args.runs):
            for kind in ("api", "virsh"):
                for src, dst, ref in ((coordinator, member, there),
                                      (member, coordinator, me)):
                    t0, t1 = api(ref) if kind == "api" else virsh(src, dst)
                    if kind == "api" or dst is coordinator:
                        settled(ref)
                    else:   # moved behind the server's back: it cannot follow that
                        time.sleep(1)
                    times[kind].append(t1 - t0)
                    gaps[kind].append(watch.gap(t0, t1) - args.interval)
                    print(f"run {run + 1} {kind:5} {src.name} -> {dst.name}: "
                          f"{t1 - t0:.2f} s, downtime {gaps[kind][-1] * 1000:.0f} ms",
                          flush=True)
        watch.stop.set()
        api_s, virsh_s = statistics.median(times["api"]), statistics.median(times["virsh"])
        print(f"\nguest {args.mib} MiB, counter every {args.interval * 1000:.0f} ms, "
              f"{args.runs} runs x 2 moves each way")
        print(f"  API VM.pool_migrate      median {api_s:.2f} s   downtime median "
              f"{statistics.median(gaps['api']) * 1000:.0f} ms "
              f"(max {max(gaps['api']) * 1000:.0f})")
        print(f"  virsh migrate --p2p      median {virsh_s:.2f} s   downtime median "
              f"{statistics.median(gaps['virsh']) * 1000:.0f} ms "
              f"(max {max(gaps['virsh']) * 1000:.0f})")
        print(f"  ratio API / virsh: {api_s / virsh_s:.2f} (goal <= 1.2)")
        c.VM.hard_shutdown(vm)


if __name__ == "__main__":
    main()
