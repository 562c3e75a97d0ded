"""Disk transfer throughput against the real server over HTTPS on loopback, with
`qemu-img convert` of the same image file-to-file in the same run as the yardstick:
  * import:  PUT /import_raw_vdi of a raw image (random data)   vs  raw -> qcow2 convert
  * export:  GET /export_raw_vdi to a file                        vs  qcow2 -> raw convert
(the VDI lives as a qcow2 image on a file SR, so each pair moves the same bytes in and
out of the same format) and the server's RSS sampled during each transfer. An import
is durable when it succeeds (the image is fsynced); qemu-img convert leaves its output
in the page cache, so the import is also compared with convert followed by an fsync
of its output ("durable" ratio).

    .venv/bin/python bench/bench_vdi_transfer.py [--size-mib 1024] [--runs 2]
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from serverproc import ServerProcess, tls_connect  # noqa: E402

MiB = 1 << 20


def rss_mib(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """The server's peak RSS while a transfer runs (sampled every 50 ms)."""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0.0, threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.done.is_set():
            self.peak = max(self.peak, rss_mib(self.pid))
            time.sleep(0.05)

    def __enter__(self):
        self.peak = rss_mib(self.pid)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()


def head(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise EOFError(data)
        data += piece
    status, _, rest = data.partition(b"\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200"), status
    return rest


def upload(server, sid, vdi, image, size):
    with tls_connect(server.port, timeout=300) as sock, open(image, "rb") as f:
        sock.sendall(f"PUT /import_raw_vdi?session_id={sid}&vdi={vdi} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode())
        head(sock)
        while True:
            data = f.read(4 * MiB)
            if not data:
                break
            sock.sendall(data)
        while sock.recv(65536):
            pass


def download(server, sid, vdi, out):
    # recv_into one buffer: recv(n) would allocate n bytes per call, whatever came
    buf = bytearray(4 * MiB)
    view = memoryview(buf)
    with tls_connect(server.port, timeout=300) as sock, open(out, "wb") as f:
        sock.sendall(f"GET /export_raw_vdi?session_id={sid}&vdi={vdi} HTTP/1.1\r\n"
                     f"Host: 127.0.0.1\r\n\r\n".encode())
        f.write(head(sock))
        while True:
            n = sock.recv_into(buf)
            if not n:
                break
            f.write(view[:n])


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def convert(src, src_fmt, dst, dst_fmt):
    if os.path.exists(dst):
        os.unlink(dst)
    subprocess.run(["qemu-img", "convert", "-f", src_fmt, "-O", dst_fmt, src, dst], check=True)


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
            with RssSampler(server.proc.pid) as rss_in:
                t_in = timed(upload, server, sid, vdi, image, size)
            out = os.path.join(work, "out.raw")
            vdi_file = os.path.join(sr_path, x.VDI.get_location(vdi) + ".qcow2")
            t_conv_out = timed(convert, vdi_file, "qcow2", out, "raw")
            os.unlink(out)
            with RssSampler(server.proc.pid) as rss_out:
                t_out = timed(download, server, sid, vdi, out)
            assert sha(out) == sha(image), "the exported disk differs from the image"
            os.unlink(out)
            x.VDI.destroy(vdi)
            rows.append((t_in, t_conv_in, t_out, t_conv_out, rss_in.peak, rss_out.peak))
            mb = size / MiB
            print(f"run {run + 1}: import {mb / t_in:.0f} MiB/s vs qemu-img raw->qcow2 "
                  f"{mb / t_conv_in:.0f} MiB/s: ratio {t_conv_in / t_in:.2f} (durable: "
                  f"{mb / (t_conv_in + t_sync_in):.0f} MiB/s, ratio "
                  f"{(t_conv_in + t_sync_in) / t_in:.2f}), server RSS peak "
                  f"{rss_in.peak:.0f} MiB | export {mb / t_out:.0f} MiB/s vs qemu-img "
                  f"qcow2->raw {mb / t_conv_out:.0f} MiB/s: ratio {t_conv_out / t_out:.2f}, "
                  f"RSS peak {rss_out.peak:.0f} MiB", flush=True)
        best = max(rows, key=lambda r: r[1] / r[0] + r[3] / r[2])
        print(f"best: import ratio {best[1] / best[0]:.2f}, export ratio {best[3] / best[2]:.2f}")
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
