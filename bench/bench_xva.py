"""XVA export and import of a VM with one disk (default 1 GiB: a quarter random data in
four runs, the rest zeros) against the real server over HTTPS on loopback, with the
server's peak RSS during each transfer, and yardsticks on the same image in the same run:
  * qemu-img convert qcow2 -> raw   (reading the disk out, what an export must do)
  * tar -cf of that raw file         (a plain archive copy, 1 GiB written)
  * zstd -3 of that raw file         (what use_compression=zstd adds)
  * qemu-img convert raw -> qcow2    (writing a disk in, what an import must do)
Throughput is the disk's virtual size over the wall time.

    .venv/bin/python bench/bench_xva.py [--size-mib 1024] [--dir /var/tmp]
"""
import argparse
import os
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from serverproc import ServerProcess  # noqa: E402

MiB = 1 << 20


def peak_rss(pid: int, stop: threading.Event, out: list):
    while not stop.is_set():
        with open(f"/proc/{pid}/status") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        out[0] = max(out[0], kib / 1024)
        time.sleep(0.05)


def measured(pid, fn):
    """(seconds, peak server RSS in MiB) of fn()."""
    stop, peak = threading.Event(), [0.0]
    sampler = threading.Thread(target=peak_rss, args=(pid, stop, peak), daemon=True)
    sampler.start()
    start = time.monotonic()
    fn()
    elapsed = time.monotonic() - start
    stop.set()
    sampler.join()
    return elapsed, peak[0]


def timed(argv, **kw):
    start = time.monotonic()
    subprocess.run(argv, check=True, **kw)
    return time.monotonic() - start


def connect(port):
    raw = socket.create_connection(("127.0.0.1", port), timeout=600)
    return ssl._create_unverified_context().wrap_socket(raw)


def head(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise EOFError(data)
        data += piece
    status, _, rest = data.partition(b"\r\n\r\n")
    assert b" 200 " in status.split(b"\r\n")[0], status
    return rest


def export(port, sid, vm, out, compression):
    with connect(port) as sock, open(out, "wb") as f:
        sock.sendall(f"GET /export?session_id={sid}&ref={vm}&use_compression={compression} "
                     "HTTP/1.0\r\n\r\n".encode())
        f.write(head(sock))
        while data := sock.recv(4 * MiB):
            f.write(data)


def upload(port, sid, sr, path, task):
    size = os.path.getsize(path)
    with connect(port) as sock, open(path, "rb") as f:
        sock.sendall(f"PUT /import?session_id={sid}&sr_id={sr}&task_id={task} HTTP/1.0\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        head(sock)
        while data := f.read(4 * MiB):
            sock.sendall(data)
        while sock.recv(65536):
            pass


def make_image(path, size):
    """A quarter random data in four runs, zeros elsewhere (a sparse file)."""
    with open(path, "wb") as f:
        f.truncate(size)
        run = size // 16
        for i in range(4):
            f.seek(i * size // 4)
            left = run
            while left:
                n = min(left, 16 * MiB)
                f.write(os.urandom(n))
                left -= n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--dir", default="/var/tmp")
    args = ap.parse_args()
    size = args.size_mib * MiB
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        srv = ServerProcess(os.path.join(work, "data")).start()
        try:
            run(srv, work, size)
        finally:
            srv.stop()


def run(srv, work, size):
    session = srv.session()
    x, sid = session.xenapi, session._session
    host = x.host.get_all()[0]
    sr = x.SR.create(host, {"path": os.path.join(work, "sr")}, "0", "bench", "", "file",
                     "user", False, {})
    raw = os.path.join(work, "disk.raw")
    make_image(raw, size)
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, "bench xva")
    x.VM.set_is_a_template(vm, False)
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                        "name_label": "bench", "name_description": "", "sharable": False,
                        "read_only": False, "other_config": {}})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    image = os.path.join(work, "sr", x.VDI.get_location(vdi) + ".qcow2")
    subprocess.run(["qemu-img", "convert", "-n", "-f", "raw", "-O", "qcow2", raw, image],
                   check=True)
    pid = srv.proc.pid
    idle = measured(pid, lambda: time.sleep(0.2))[1]
    mb = size / 1e6
    rows = []

    out = os.path.join(work, "base.raw")
    rows.append(("qemu-img convert qcow2 -> raw", mb / timed(
        ["qemu-img", "convert", "-f", "qcow2", "-O", "raw", image, out]), None))
    rows.append(("tar -cf of the raw image", mb / timed(
        ["tar", "-cf", os.path.join(work, "base.tar"), "-C", work, "base.raw"]), None))
    rows.append(("zstd -3 of the raw image", mb / timed(
        ["zstd", "-q", "-3", "-f", out, "-o", os.path.join(work, "base.zst")]), None))
    back = os.path.join(work, "back.qcow2")
    rows.append(("qemu-img convert raw -> qcow2", mb / timed(
        ["qemu-img", "convert", "-f", "raw", "-O", "qcow2", out, back]), None))
    for f in ("base.raw", "base.tar", "base.zst", "back.qcow2"):
        os.unlink(os.path.join(work, f))

    for compression in ("false", "zstd"):
        xva = os.path.join(work, f"vm-{compression}.xva")
        t, rss = measured(pid, lambda: export(srv.port, sid, vm, xva, compression))
        rows.append((f"GET /export use_compression={compression} "
                     f"({os.path.getsize(xva) / MiB:.0f} MiB)", mb / t, rss))
        task = x.task.create("bench import", "")
        t, rss = measured(pid, lambda: upload(srv.port, sid, sr, xva, task))
        while x.task.get_status(task) == "pending":
            time.sleep(0.05)
        rec = x.task.get_record(task)
        assert rec["status"] == "success", rec["error_info"]
        rows.append((f"PUT /import of that file", mb / t, rss))
        for new in re.findall(r"OpaqueRef:[0-9a-f-]+", rec["result"]):
            for vbd in x.VM.get_VBDs(new):
                x.VDI.destroy(x.VBD.get_VDI(vbd))
            x.VM.destroy(new)
        os.unlink(xva)

    print(f"disk {size // MiB} MiB (a quarter random), server RSS before {idle:.0f} MiB")
    for name, rate, rss in rows:
        extra = f"   peak server RSS {rss:.0f} MiB" if rss is not None else ""
        print(f"{name:55s} {rate:8.0f} MB/s{extra}")


if __name__ == "__main__":
    main()
