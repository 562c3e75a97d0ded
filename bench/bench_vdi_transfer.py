"""Disk transfer throughput against the real server over HTTPS on loopback, with
`qemu-img convert` of the same image file-to-file in the same run as the yardstick:
  * import:  curl -T of a raw image (random data) to /import_raw_vdi  vs  raw -> qcow2
  * export:  curl -o of /export_raw_vdi                                vs  qcow2 -> raw
(the VDI lives as a qcow2 image on a file SR, so each pair moves the same bytes in and
out of the same format) and the server's RSS sampled during each transfer. The client
is curl, as a user would run it (its TLS and copies cost CPU on the same two cores).
An import is durable when it succeeds (the image is fsynced), so its fair yardstick is
convert followed by an fsync of its output (same format, same fsync policy); the ratio
to convert alone, which leaves its output in the page cache, is printed too, and to
convert with `-t none`, which writes past the page cache with O_DIRECT as the import does. The
export and its convert both leave their output unsynced. Beside each transfer: CPU
per GiB of the server and the daemon, and the seconds the server's event loop, curl and
the daemon spent runnable but waiting for a CPU: when those are most of the wall time,
the machine's other work set the figure, not the transfer (qemu-img, mostly waiting
on the disk, suffers far less from a busy machine).

    .venv/bin/python bench/bench_vdi_transfer.py [--size-mib 1024] [--runs 2]
"""
import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from serverproc import ServerProcess  # noqa: E402

MiB = 1 << 20


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """user + system CPU of a process (or one of its threads); 0 once it is gone."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    try:
        fields = open(path).read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def processes(comm: str) -> list[int]:
    """Processes whose command name starts with `comm`."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/comm") as f:
                    if f.read().startswith(comm):
                        found.append(int(name))
            except OSError:
                pass
    return found


def daemons() -> list[int]:
    """qemu-storage-daemon processes (the transfer's NBD export is one of them)."""
    return processes("qemu-storage-d")


def run_queue_seconds(pid: int) -> dict[int, float]:
    """Per thread of a process: seconds it has spent runnable but waiting for a CPU
    (/proc schedstat). Large beside the wall time: the transfer was starved of CPU by
    other work on the machine, not waiting on itself."""
    waits = {}
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError):
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    waits[int(tid)] = int(f.read().split()[1]) / 1e9
    return waits


class Sampler:
    """While a transfer runs: the server's peak RSS (sampled every 50 ms), the CPU its
    event loop thread and the whole process spent, the CPU of the daemons that
    appeared meanwhile (the transfer's qemu-storage-daemon), and how long the server's
    event loop thread, the curl client and those daemons waited in the run queue."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.before = set(daemons())
        self.curls_before = set(processes("curl"))
        self.daemon_cpu: dict[int, float] = {}
        # (party, pid) -> {thread: run-queue seconds}, first and last seen
        self.queued0: dict[tuple, dict[int, float]] = {}
        self.queued: dict[tuple, dict[int, float]] = {}

    def _sample_queues(self):
        parties = [("server", self.pid)]
        parties += [("curl", pid) for pid in set(processes("curl")) - self.curls_before]
        parties += [("daemon", pid) for pid in set(daemons()) - self.before]
        for key in parties:
            waits = run_queue_seconds(key[1])
            if waits:
                self.queued.setdefault(key, {}).update(waits)

    def _run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            for pid in set(daemons()) - self.before:
                self.daemon_cpu[pid] = max(self.daemon_cpu.get(pid, 0.0), cpu_seconds(pid))
            self._sample_queues()
            time.sleep(0.05)

    def __enter__(self):
        self.peak = rss_mib(self.pid)
        self.cpu0 = cpu_seconds(self.pid)
        self.loop0 = cpu_seconds(self.pid, self.pid)
        self.queued0 = {("server", self.pid): run_queue_seconds(self.pid)}
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()
        self._sample_queues()
        self.cpu = cpu_seconds(self.pid) - self.cpu0
        self.loop = cpu_seconds(self.pid, self.pid) - self.loop0

    def run_queue(self, party: str) -> float:
        """Seconds the party waited for a CPU during the transfer, summed over its
        threads (the server: its event loop thread only)."""
        total = 0.0
        for key, waits in self.queued.items():
            if key[0] == party:
                start = self.queued0.get(key, {})
                total += sum(w - start.get(tid, 0.0) for tid, w in waits.items()
                             if party != "server" or tid == self.pid)
        return total

    def cpu_text(self, gib: float) -> str:
        return (f"CPU-s/GiB server {self.cpu / gib:.2f} (event loop {self.loop / gib:.2f}), "
                f"qemu-storage-daemon {sum(self.daemon_cpu.values()) / gib:.2f}; run-queue "
                f"wait s: server loop {self.run_queue('server'):.1f}, curl "
                f"{self.run_queue('curl'):.1f}, daemon {self.run_queue('daemon'):.1f}")


def curl(*args):
    subprocess.run(["curl", "--silent", "--show-error", "--fail", "--insecure", *args],
                   check=True, timeout=600)


def upload(server, sid, vdi, image, size):
    curl("--upload-file", image,
         f"https://127.0.0.1:{server.port}/import_raw_vdi?session_id={sid}&vdi={vdi}")


def download(server, sid, vdi, out):
    curl("--output", out,
         f"https://127.0.0.1:{server.port}/export_raw_vdi?session_id={sid}&vdi={vdi}")


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def convert(src, src_fmt, dst, dst_fmt, *options):
    if os.path.exists(dst):
        os.unlink(dst)
    subprocess.run(["qemu-img", "convert", *options, "-f", src_fmt, "-O", dst_fmt, src, dst],
                   check=True)


def fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for data in iter(lambda: f.read(4 * MiB), b""):
            h.update(data)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    size = args.size_mib * MiB
    work = tempfile.mkdtemp(prefix="xapi-bench-xfer-", dir="/var/tmp")
    image = os.path.join(work, "image.raw")
    with open(image, "wb") as f:
        for _ in range(args.size_mib):
            f.write(os.urandom(MiB))
    server = ServerProcess(os.path.join(work, "data")).start()
    try:
        session = server.session()
        x, sid = session.xenapi, session._session
        host = x.host.get_all()[0]
        sr_path = os.path.join(work, "sr")
        sr = x.SR.create(host, {"path": sr_path}, "0", "bench", "", "file", "user", False, {})
        rows = []
        print(f"server RSS before: {rss_mib(server.proc.pid):.0f} MiB", flush=True)
        for run in range(args.runs):
            vdi = x.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                                "sharable": False, "read_only": False, "other_config": {},
                                "name_label": "bench"})
            qcow = os.path.join(work, "convert.qcow2")
            subprocess.run(["sync"], check=True)      # nobody else's dirty pages in the way
            t_conv_in = timed(convert, image, "raw", qcow, "qcow2")
            t_sync_in = timed(fsync_file, qcow)
            # convert writing as the import does: O_DIRECT, past the page cache
            t_direct_in = timed(convert, image, "raw", qcow, "qcow2", "-t", "none")
            with Sampler(server.proc.pid) as rss_in:
                t_in = timed(upload, server, sid, vdi, image, size)
            out = os.path.join(work, "out.raw")
            vdi_file = os.path.join(sr_path, x.VDI.get_location(vdi) + ".qcow2")
            t_conv_out = timed(convert, vdi_file, "qcow2", out, "raw")
            os.unlink(out)
            with Sampler(server.proc.pid) as rss_out:
                t_out = timed(download, server, sid, vdi, out)
            assert sha(out) == sha(image), "the exported disk differs from the image"
            os.unlink(out)
            x.VDI.destroy(vdi)
            rows.append((t_in, t_conv_in, t_out, t_conv_out, rss_in.peak, rss_out.peak,
                         t_sync_in))
            mb = size / MiB
            t_durable = t_conv_in + t_sync_in
            print(f"run {run + 1}: import {mb / t_in:.0f} MiB/s vs qemu-img raw->qcow2 + "
                  f"fsync {mb / t_durable:.0f} MiB/s: ratio {t_durable / t_in:.2f} (convert "
                  f"alone {mb / t_conv_in:.0f} MiB/s: {t_conv_in / t_in:.2f}; convert -t none, "
                  f"O_DIRECT as the import, {mb / t_direct_in:.0f} MiB/s: "
                  f"{t_direct_in / t_in:.2f}), server RSS "
                  f"peak {rss_in.peak:.0f} MiB, {rss_in.cpu_text(mb / 1024)} | export "
                  f"{mb / t_out:.0f} MiB/s vs qemu-img qcow2->raw {mb / t_conv_out:.0f} MiB/s: "
                  f"ratio {t_conv_out / t_out:.2f}, RSS peak {rss_out.peak:.0f} MiB, "
                  f"{rss_out.cpu_text(mb / 1024)} | load {os.getloadavg()[0]:.1f}", flush=True)
        best = max(rows, key=lambda r: (r[1] + r[6]) / r[0] + r[3] / r[2])
        print(f"best: import ratio {(best[1] + best[6]) / best[0]:.2f} (to convert alone "
              f"{best[1] / best[0]:.2f}), export ratio {best[3] / best[2]:.2f}")
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
