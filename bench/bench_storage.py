"""Storage benchmark against the real server on a file SR:
  * VDI.create + VDI.destroy cycles per second (each a real qcow2 made by qemu-img),
  * SR.scan time with 1000 volumes present (first scan records them, then steady).

    .venv/bin/python bench/bench_storage.py [--seconds 10] [--volumes 1000]
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from serverproc import ServerProcess  # noqa: E402

MiB = 1 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--volumes", type=int, default=1000)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="xapi-bench-storage-")
    server = ServerProcess(os.path.join(work, "data")).start()
    try:
        x = server.session().xenapi
        host = x.host.get_all()[0]
        path = os.path.join(work, "sr")
        sr = x.SR.create(host, {"path": path}, "0", "bench", "", "file", "user", False, {})
        rec = {"SR": sr, "virtual_size": str(64 * MiB), "type": "user", "sharable": False,
               "read_only": False, "other_config": {}, "name_label": "bench"}

        cycles, start = 0, time.perf_counter()
        while time.perf_counter() - start < args.seconds:
            x.VDI.destroy(x.VDI.create(rec))
            cycles += 1
        elapsed = time.perf_counter() - start
        print(f"VDI create+destroy: {cycles / elapsed:.1f} cycles/s "
              f"({cycles} cycles in {elapsed:.1f} s, 64 MiB qcow2 each)")

        # Volumes made behind the server's back, as another tool would leave them.
        template = os.path.join(work, "template.qcow2")
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", template, "64M"], check=True)
        for _ in range(args.volumes):
            shutil.copyfile(template, os.path.join(path, f"{uuid.uuid4()}.qcow2"))
        t0 = time.perf_counter()
        x.SR.scan(sr)
        first = time.perf_counter() - t0
        assert len(x.SR.get_VDIs(sr)) == args.volumes
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            x.SR.scan(sr)
            times.append(time.perf_counter() - t0)
        print(f"SR.scan with {args.volumes} volumes: first (records them) {first * 1000:.0f} ms, "
              f"then {min(times) * 1000:.0f} ms (best of 3)")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
