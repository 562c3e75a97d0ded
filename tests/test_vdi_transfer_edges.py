"""Disk transfers at their edges, on the real server: a client that goes away or a task
cancelled mid-transfer (nothing half-made left), XO's upload of unknown length, the
real xe (vdi-import/-export, its progress bar only on a terminal), an ISO uploaded into
an ISO SR, and the server's memory bounded whatever the disk's size. Shared fixtures:
vdi_server.py."""
import hashlib
import os
import pty
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from vdi_server import (srv, x, sr, sid,  # noqa: E402,F401 (fixtures)
                        ROOT_PASSWORD, MiB, XE, new_vdi, read_head, read_all, request, put,
                        get, wait_task, disk_image, sha, qemu_img, SIZE)


# -- failures mid-transfer -------------------------------------------------------------------

def _start_put(srv, sid, task, length, **params):
    query = "&".join(f"{k}={v}" for k, v in params.items())
    sock = request(srv, "PUT", f"/import_raw_vdi?session_id={sid}&task_id={task}&{query}",
                   [f"Content-Length: {length}"])
    assert read_head(sock)[0] == "HTTP/1.1 200 OK"
    return sock


def test_disconnect_mid_upload_leaves_no_new_vdi(x, sr, srv, sid):
    before = set(x.SR.get_VDIs(sr))
    task = x.task.create("import", "")
    sock = _start_put(srv, sid, task, 64 * MiB, sr_id=sr)
    sock.sendall(os.urandom(2 * MiB))
    time.sleep(0.5)
    sock.close()
    rec = wait_task(x, task)
    assert rec["status"] == "failure" and rec["error_info"][0] == "VDI_IO_ERROR"
    assert "short" in rec["error_info"][1] or "closed" in rec["error_info"][1]
    assert set(x.SR.get_VDIs(sr)) == before


def test_xo_upload_of_unknown_length(x, sr, srv, sid):
    """XO sends a stream of unknown length with Content-Length 1 PiB and cuts the
    connection after the data: written, and the task's VDI_IO_ERROR (which XO ignores)."""
    vdi = new_vdi(x, sr, 4 * MiB)
    task = x.task.create("import", "")
    data = os.urandom(MiB + 512)
    sock = _start_put(srv, sid, task, 1 << 50, vdi=vdi)
    sock.sendall(data)
    sock.close()
    rec = wait_task(x, task)
    assert rec["error_info"][0] == "VDI_IO_ERROR"
    assert get(srv, sid, vdi=vdi)[2][:len(data)] == data


def test_upload_that_expects_100_continue(x, sr, srv, sid):
    """curl asks `Expect: 100-continue` for an upload: it gets the interim 100, then
    xapi's 200 before the body is read, and the bytes land."""
    vdi = new_vdi(x, sr, 4 * MiB)
    task = x.task.create("import", "")
    data = os.urandom(MiB)
    sock = request(srv, "PUT", f"/import_raw_vdi?session_id={sid}&vdi={vdi}&task_id={task}",
                   [f"Content-Length: {len(data)}", "Expect: 100-continue"])
    status, _, rest = read_head(sock)
    assert status == "HTTP/1.1 100 Continue"
    assert read_head(sock, rest)[0] == "HTTP/1.1 200 OK"
    sock.sendall(data)
    assert wait_task(x, task)["status"] == "success"
    sock.close()
    assert get(srv, sid, vdi=vdi)[2][:len(data)] == data


def test_cancel_mid_upload(x, sr, srv, sid):
    before = set(x.SR.get_VDIs(sr))
    task = x.task.create("import", "")
    sock = _start_put(srv, sid, task, 64 * MiB, sr_id=sr)
    with sock:
        sock.sendall(os.urandom(MiB))
        deadline = time.time() + 10
        while float(x.task.get_progress(task)) <= 0 and time.time() < deadline:
            sock.sendall(os.urandom(MiB))
            time.sleep(0.2)
        assert 0 < float(x.task.get_progress(task)) < 1     # progress while streaming
        x.task.cancel(task)
        rec = wait_task(x, task)
        assert rec["status"] == "cancelled"
        assert rec["error_info"] == ["TASK_CANCELLED", task]
        with pytest.raises(OSError):             # the server has closed the connection
            for _ in range(64):
                sock.sendall(bytes(MiB))
    assert set(x.SR.get_VDIs(sr)) == before


def test_cancel_while_a_tar_upload_waits_for_data(x, sr, srv, sid):
    """The chunk tar is read in a worker thread: a cancel must end it at once, not
    when the idle deadline (minutes) runs out."""
    vdi = new_vdi(x, sr, 4 * MiB)
    task = x.task.create("import", "")
    sock = _start_put(srv, sid, task, 8 * MiB, vdi=vdi, format="tar")
    with sock:
        sock.sendall(bytes(100))                 # less than one tar header block
        time.sleep(0.5)
        started = time.time()
        x.task.cancel(task)
        rec = wait_task(x, task, timeout=15)
        assert rec["status"] == "cancelled" and time.time() - started < 10
    x.VDI.destroy(vdi)                           # nothing holds it any more


def test_client_gone_mid_export(x, sr, srv, sid):
    vdi = new_vdi(x, sr, 512 * MiB)        # more than any socket buffer holds
    task = x.task.create("export", "")
    sock = request(srv, "GET", f"/export_raw_vdi?session_id={sid}&task_id={task}&vdi={vdi}")
    read_head(sock)
    sock.close()
    rec = wait_task(x, task)
    assert rec["status"] == "failure" and "closed" in " ".join(rec["error_info"])
    x.VDI.destroy(vdi)                      # the export left it usable


# -- xe ---------------------------------------------------------------------------------------

def xe_argv(srv, home, *argv):
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home))
    return [XE, "-s", "127.0.0.1", "-p", str(srv.port), "-pw", ROOT_PASSWORD, *argv], env


def xe(srv, home, *argv):
    argv, env = xe_argv(srv, home, *argv)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)


def test_xe_vdi_import_and_export(x, sr, srv, tmp_path):
    data = disk_image(SIZE, [(2 * MiB, 5000), (SIZE - MiB, MiB)], seed=11)
    src = tmp_path / "in.raw"
    src.write_bytes(data)
    vdi = new_vdi(x, sr, SIZE)
    uuid = x.VDI.get_uuid(vdi)
    r = xe(srv, tmp_path, "vdi-import", f"uuid={uuid}", f"filename={src}")
    assert (r.returncode, r.stdout) == (0, ""), r.stderr
    out = tmp_path / "out.raw"
    r = xe(srv, tmp_path, "vdi-export", f"uuid={uuid}", f"filename={out}")
    assert r.returncode == 0, r.stderr
    assert sha(out.read_bytes()) == sha(data)
    vhd = tmp_path / "out.vhd"
    r = xe(srv, tmp_path, "vdi-export", f"uuid={uuid}", f"filename={vhd}", "format=vhd")
    assert r.returncode == 0, r.stderr
    assert qemu_img("compare", "-f", "raw", "-F", "vpc", str(src), str(vhd)).returncode == 0
    r = xe(srv, tmp_path, "vdi-import", f"uuid={uuid}", f"filename={src}", "format=floppy")
    assert r.returncode == 1 and "Unknown format floppy" in r.stderr
    labels = {x.task.get_name_label(t) for t in x.task.get_all()}
    assert not labels & {"VDI import", "VDI export"}     # xe's tasks are destroyed


def test_xe_progress_bar_only_on_a_terminal(x, sr, srv, tmp_path):
    src = tmp_path / "in.raw"
    src.write_bytes(disk_image(SIZE, [(0, SIZE)], seed=13))
    vdi = new_vdi(x, sr, SIZE)
    argv, env = xe_argv(srv, tmp_path, "vdi-import", f"uuid={x.VDI.get_uuid(vdi)}",
                        f"filename={src}", "progress=true")
    master, slave = pty.openpty()           # stderr a terminal: the bar is drawn there
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            piece = os.read(master, 65536)
        except OSError:                     # EIO: the terminal's last writer has gone
            break
        if not piece:
            break
        shown += piece
    os.close(master)
    assert proc.wait(timeout=120) == 0 and proc.stdout.read() == b""
    assert b"[" + b"#" * 40 + b"] 100%" in shown and b"MiB/s" in shown
    r = xe(srv, tmp_path, "vdi-export", f"uuid={x.VDI.get_uuid(vdi)}",
           f"filename={tmp_path / 'out.raw'}")
    assert r.returncode == 0 and "MiB/s" not in r.stderr      # not a terminal: no bar
    assert (tmp_path / "out.raw").read_bytes() == src.read_bytes()


# -- ISO upload ---------------------------------------------------------------------------------

def test_iso_upload_into_an_iso_sr(x, srv, sid, tmp_path):
    lib = tmp_path / "isos"
    lib.mkdir()
    host = x.host.get_all()[0]
    iso_sr = x.SR.create(host, {"location": str(lib)}, "0", "ISOs", "", "iso", "iso",
                         False, {})
    content = os.urandom(3 * MiB + 2048)
    task = x.task.create("upload", "")
    assert put(srv, sid, content, task=task, sr_id=iso_sr,
               filename="tools.iso")[0] == "HTTP/1.1 200 OK"
    rec = wait_task(x, task)
    assert rec["status"] == "success", rec["error_info"]
    vdi = rec["result"].removeprefix("<value>").removesuffix("</value>")
    assert x.VDI.get_name_label(vdi) == "tools.iso" and x.VDI.get_SR(vdi) == iso_sr
    assert (lib / "tools.iso").read_bytes() == content
    assert sorted(os.listdir(lib)) == ["tools.iso"]          # no partial file left
    for bad in ("../evil.iso", "sub%2Fx.iso", ".hidden.iso"):
        status, _ = put(srv, sid, b"data", sr_id=iso_sr, filename=bad)
        assert status.startswith("HTTP/1.1 400"), bad
    status, _ = put(srv, sid, b"again", sr_id=iso_sr, filename="tools.iso")
    assert status.startswith("HTTP/1.1 400")                  # never overwrites
    assert sorted(os.listdir(lib)) == ["tools.iso"] and not (tmp_path / "evil.iso").exists()


# -- memory --------------------------------------------------------------------------------------

def rss_kib(pid) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def _stream_put(srv, sid, vdi, size):
    """Upload `size` bytes: 1 MiB of data every 16 MiB, zeros between."""
    sock = request(srv, "PUT", f"/import_raw_vdi?session_id={sid}&vdi={vdi}",
                   [f"Content-Length: {size}"])
    with sock:
        assert read_head(sock)[0] == "HTTP/1.1 200 OK"
        data, zeros = os.urandom(MiB), bytes(MiB)
        for n in range(size // MiB):
            sock.sendall(data if n % 16 == 0 else zeros)
        read_all(sock)


def test_memory_stays_bounded(x, sr, srv, sid):
    small, large = 64 * MiB, 1024 * MiB
    a, b = new_vdi(x, sr, small), new_vdi(x, sr, large)
    _stream_put(srv, sid, a, small)
    hash_a = hashlib.sha256()
    with request(srv, "GET", f"/export_raw_vdi?session_id={sid}&vdi={a}") as sock:
        read_all(sock, read_head(sock)[2], hash_a)
    after_small = rss_kib(srv.proc.pid)
    _stream_put(srv, sid, b, large)
    with request(srv, "GET", f"/export_raw_vdi?session_id={sid}&vdi={b}") as sock:
        got = read_all(sock, read_head(sock)[2], hashlib.sha256())
    assert got == large
    after_large = rss_kib(srv.proc.pid)
    # 16 times the data moved both ways; the peak may grow by buffers, not by the disk
    assert after_large - after_small < 48 * 1024, (after_small, after_large)
    x.VDI.destroy(b)
