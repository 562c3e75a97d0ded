"""PUT /import_raw_vdi and GET /export_raw_vdi on the real server over TLS, with the
real qemu-img checking what comes out and making what goes in, and the real xe.

One server and one file SR for the module; raw sockets where the bytes on the wire
matter (the 200 before the body, the header blocks, a client that goes away)."""
import hashlib
import json
import os
import pty
import random
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import (ROOT_PASSWORD, ServerProcess, add_local_user,  # noqa: E402
                        logged_in, tls_connect)

MiB = 1 << 20
XE = os.path.join(os.path.dirname(sys.executable), "xe")


# -- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("xfer-data"))).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def x(srv):
    yield from logged_in(srv.session())


@pytest.fixture(scope="module")
def sr(x, tmp_path_factory):
    host = x.host.get_all()[0]
    path = str(tmp_path_factory.mktemp("xfer-sr") / "sr")
    return x.SR.create(host, {"path": path}, "0", "transfer SR", "", "file", "user", False, {})


def new_vdi(x, sr, size=16 * MiB, name="xfer"):
    return x.VDI.create({"SR": sr, "virtual_size": str(size), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {},
                         "name_label": name})


# -- HTTP over a raw TLS socket ---------------------------------------------------------------

def read_head(sock) -> tuple[str, list[str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            raise EOFError(f"closed before the header block ended: {data!r}")
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return lines[0], lines[1:], rest


def read_all(sock, first=b"", sink=None) -> bytes | int:
    """The rest of the body to EOF: bytes, or with `sink` (a hash) the count."""
    total, parts = len(first), [first]
    if sink is not None:
        sink.update(first)
    while True:
        piece = sock.recv(1 << 20)
        if not piece:
            break
        total += len(piece)
        if sink is not None:
            sink.update(piece)
        else:
            parts.append(piece)
    return total if sink is not None else b"".join(parts)


def request(srv, method, target, headers=()):
    sock = tls_connect(srv.port, timeout=60)
    # Connection: close: a refusal is an ordinary reply, which would keep the
    # connection open for the next request (keep-alive) while we read to EOF
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
    head += "".join(f"{h}\r\n" for h in headers)
    sock.sendall(head.encode() + b"\r\n")
    return sock


@pytest.fixture(scope="module")
def sid(srv):
    session = srv.session()
    yield session._session
    for _ in logged_in(session):     # log out (a keep-alive the server closed is fine)
        pass


def put(srv, sid, body: bytes, task=None, **params) -> tuple[str, list[str]]:
    query = "&".join(f"{k}={v}" for k, v in {"session_id": sid, **params}.items())
    if task:
        query += f"&task_id={task}"
    sock = request(srv, "PUT", f"/import_raw_vdi?{query}", [f"Content-Length: {len(body)}"])
    with sock:
        status, headers, _ = read_head(sock)
        if status.split()[1] == "200":
            sock.sendall(body)
            read_all(sock)
    return status, headers


def get(srv, sid, task=None, **params) -> tuple[str, list[str], bytes]:
    query = "&".join(f"{k}={v}" for k, v in {"session_id": sid, **params}.items())
    if task:
        query += f"&task_id={task}"
    with request(srv, "GET", f"/export_raw_vdi?{query}") as sock:
        status, headers, rest = read_head(sock)
        return status, headers, read_all(sock, rest)


def wait_task(x, task, timeout=60) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rec = x.task.get_record(task)
        if rec["status"] not in ("pending", "cancelling"):
            return rec
        time.sleep(0.1)
    raise AssertionError(f"task {task} still {rec['status']}")


def disk_image(size, spots, seed=1) -> bytes:
    """A disk of `size` bytes, zeros except random data at each (offset, length)."""
    rnd = random.Random(seed)
    data = bytearray(size)
    for offset, length in spots:
        data[offset:offset + length] = rnd.randbytes(length)
    return bytes(data)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


SIZE = 16 * MiB
SPOTS = [(0, 4096), (3 * MiB + 5, 100_000), (9 * MiB, 2 * MiB), (SIZE - 512, 512)]


@pytest.fixture(scope="module")
def filled(x, sr, srv, sid):
    """A VDI holding DISK, written by a raw import."""
    vdi = new_vdi(x, sr, SIZE, "filled")
    data = disk_image(SIZE, SPOTS)
    status, _ = put(srv, sid, data, vdi=vdi)
    assert status == "HTTP/1.1 200 OK"
    return vdi, data


# -- round trips -----------------------------------------------------------------------------

def test_raw_round_trip_and_header_blocks(x, srv, sid, filled):
    vdi, data = filled
    uuid = x.VDI.get_uuid(vdi)
    task = x.task.create("export", "")
    status, headers, body = get(srv, sid, task=task, vdi=uuid)      # by uuid too
    assert status == "HTTP/1.1 200 OK"
    assert headers == ["Connection: close", "Cache-Control: no-cache, no-store",
                       f"task-id:{task}", "content-type:application/octet-stream",
                       f'content-disposition: attachment; filename="{uuid}.raw"']
    assert len(body) == SIZE and sha(body) == sha(data)
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["result"] == f"<value>{vdi}</value>"
    assert float(rec["progress"]) == 1.0
    assert int(x.VDI.get_physical_utilisation(vdi)) > 0


def test_import_reports_true_physical_utilisation(x, sr, srv, sid):
    vdi = new_vdi(x, sr, SIZE)
    before = int(x.VDI.get_physical_utilisation(vdi))
    assert put(srv, sid, disk_image(SIZE, [(0, 8 * MiB)]), vdi=vdi)[0].endswith("200 OK")
    after = int(x.VDI.get_physical_utilisation(vdi))
    # the 8 MiB of data are on disk; the 8 MiB of zeros were not written (a new disk)
    assert before + 8 * MiB <= after < before + 10 * MiB


def test_vhd_export_is_sparse_and_qemu_reads_it(x, srv, sid, filled, tmp_path):
    vdi, data = filled
    status, headers, body = get(srv, sid, vdi=vdi, format="VHD")    # case-insensitive
    assert status == "HTTP/1.1 200 OK" and "content-type:application/vhd" in headers
    # only the 2 MiB blocks the data touches: 0, 1, 4, 5 and 7 of 8
    assert len(body) == 512 + 1024 + 512 + 5 * (512 + 2 * MiB) + 512
    (tmp_path / "d.vhd").write_bytes(body)
    (tmp_path / "d.raw").write_bytes(data)
    info = json.loads(qemu_img("info", "-f", "vpc", "--output=json",
                               str(tmp_path / "d.vhd")).stdout)
    assert info["virtual-size"] == SIZE
    cmp = qemu_img("compare", "-f", "raw", "-F", "vpc", str(tmp_path / "d.raw"),
                   str(tmp_path / "d.vhd"))
    assert cmp.returncode == 0, cmp.stdout
    # and it comes back in: VHD import into a new disk
    other = new_vdi(x, x.VDI.get_SR(vdi), SIZE)
    assert put(srv, sid, body, vdi=other, format="vhd")[0] == "HTTP/1.1 200 OK"
    assert sha(get(srv, sid, vdi=other)[2]) == sha(data)


def test_qcow2_export_passes_qemu_check_and_round_trips(x, srv, sid, filled, tmp_path):
    vdi, data = filled
    status, headers, body = get(srv, sid, vdi=vdi, format="qcow2")
    assert "content-type:application/x-qemu-disk" in headers
    assert len(body) < 3 * MiB                    # the data's 64 KiB clusters and tables
    image = tmp_path / "d.qcow2"
    image.write_bytes(body)
    (tmp_path / "d.raw").write_bytes(data)
    check = qemu_img("check", "-f", "qcow2", str(image))
    assert check.returncode == 0, check.stdout + check.stderr
    assert qemu_img("compare", "-f", "raw", "-F", "qcow2", str(tmp_path / "d.raw"),
                    str(image)).returncode == 0
    other = new_vdi(x, x.VDI.get_SR(vdi), SIZE)
    assert put(srv, sid, body, vdi=other, format="qcow2")[0] == "HTTP/1.1 200 OK"
    assert sha(get(srv, sid, vdi=other)[2]) == sha(data)


@pytest.mark.parametrize("fmt,options", [("vpc", "subformat=dynamic,force_size=on"),
                                         ("vpc", "subformat=fixed,force_size=on"),
                                         ("qcow2", "compat=1.1")],
                         ids=["vhd-dynamic", "vhd-fixed", "qcow2"])
def test_import_of_qemu_img_images(x, sr, srv, sid, tmp_path, fmt, options):
    data = disk_image(SIZE, [(MiB, 3 * MiB), (SIZE - 4096, 4096)], seed=7)
    (tmp_path / "src.raw").write_bytes(data)
    image = tmp_path / "img"
    done = qemu_img("convert", "-f", "raw", "-O", fmt, "-o", options,
                    str(tmp_path / "src.raw"), str(image))
    assert done.returncode == 0, done.stderr
    vdi = new_vdi(x, sr, SIZE)
    task = x.task.create("import", "")
    status, _ = put(srv, sid, image.read_bytes(), task=task, vdi=vdi,
                    format="vhd" if fmt == "vpc" else "qcow2")
    assert status == "HTTP/1.1 200 OK"
    assert wait_task(x, task)["status"] == "success"
    assert sha(get(srv, sid, vdi=vdi)[2]) == sha(data)


def test_qcow2_import_refuses_backing_file(x, sr, srv, sid, tmp_path):
    qemu_img("create", "-f", "qcow2", str(tmp_path / "base.qcow2"), str(SIZE))
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(tmp_path / "base.qcow2"),
             str(tmp_path / "child.qcow2"))
    vdi = new_vdi(x, sr, SIZE)
    task = x.task.create("import", "")
    put(srv, sid, (tmp_path / "child.qcow2").read_bytes(), task=task, vdi=vdi,
        format="qcow2")
    rec = wait_task(x, task)
    assert rec["status"] == "failure" and rec["error_info"][0] == "VDI_IO_ERROR"
    assert "backing file" in rec["error_info"][1]
    assert not os.listdir(os.path.join(srv.data_dir, "tmp"))      # the spool is gone


def test_tar_round_trip(x, sr, srv, sid, filled):
    vdi, data = filled
    status, headers, body = get(srv, sid, vdi=vdi, format="tar")
    assert "content-type:application/x-tar" in headers
    assert body.endswith(bytes(1024)) and len(body) < SIZE
    other = new_vdi(x, sr, SIZE)
    task = x.task.create("import", "")
    assert put(srv, sid, body, task=task, vdi=other, format="tar")[0].endswith("200 OK")
    assert wait_task(x, task)["status"] == "success"
    assert sha(get(srv, sid, vdi=other)[2]) == sha(data)


def test_differential_export_against_a_snapshot(x, sr, srv, sid, tmp_path):
    vdi = new_vdi(x, sr, SIZE)
    first = disk_image(SIZE, [(0, SIZE)], seed=3)
    put(srv, sid, first, vdi=vdi)
    base = x.VDI.snapshot(vdi, {})
    changed = bytearray(first)
    changed[5 * MiB:5 * MiB + 1000] = b"\x01" * 1000
    changed[12 * MiB + 7:12 * MiB + 9] = b"\x02\x03"
    # write just those two spots (xapi's chunked records): the rest stays in the base
    put(srv, sid, chunk(5 * MiB, b"\x01" * 1000) + chunk(12 * MiB + 7, b"\x02\x03")
        + bytes(12), vdi=vdi, chunked="")
    # qemu-img with the base as backing file reads the delta as the whole disk
    (tmp_path / "base.raw").write_bytes(first)
    (tmp_path / "now.raw").write_bytes(bytes(changed))
    for fmt, qfmt in (("qcow2", "qcow2"), ("vhd", "vpc")):
        status, _, body = get(srv, sid, vdi=vdi, base=x.VDI.get_uuid(base), format=fmt)
        assert status == "HTTP/1.1 200 OK"
        assert len(body) < 5 * MiB, fmt          # a few blocks, not the 16 MiB disk
        delta = tmp_path / f"delta.{fmt}"
        delta.write_bytes(body)
        if fmt == "qcow2":
            assert qemu_img("rebase", "-u", "-f", "qcow2", "-b", str(tmp_path / "base.raw"),
                            "-F", "raw", str(delta)).returncode == 0
            cmp = qemu_img("compare", "-F", "raw", str(delta), str(tmp_path / "now.raw"))
            assert cmp.returncode == 0, cmp.stdout
        else:    # overlay the VHD's allocated blocks on the base
            extents = json.loads(qemu_img("map", "-f", "vpc", "--output=json",
                                          str(delta)).stdout)
            rebuilt = bytearray(first)
            vhd_raw = tmp_path / "delta.raw"
            qemu_img("convert", "-f", "vpc", "-O", "raw", str(delta), str(vhd_raw))
            flat = vhd_raw.read_bytes()
            for e in extents:
                if e["data"]:
                    rebuilt[e["start"]:e["start"] + e["length"]] = \
                        flat[e["start"]:e["start"] + e["length"]]
            assert sha(bytes(rebuilt)) == sha(bytes(changed))
            # a differencing VHD naming the base, as XO's delta chains require
            assert struct.unpack(">I", body[60:64])[0] == 4
            assert body[512 + 40:512 + 56] == bytes.fromhex(
                x.VDI.get_uuid(base).replace("-", ""))
            vhd_delta = body
    status, _, _ = get(srv, sid, vdi=vdi, base=base, format="raw")
    assert status.startswith("HTTP/1.1 400")   # raw has no way to say "unchanged"
    # XO's incremental restore: the delta laid over a copy of the base gives the disk
    restored = x.VDI.clone(base, {})
    task = x.task.create("import", "")
    assert put(srv, sid, vhd_delta, task=task, vdi=restored, format="vhd")[0].endswith("200 OK")
    assert wait_task(x, task)["status"] == "success"
    assert sha(get(srv, sid, vdi=restored)[2]) == sha(bytes(changed))
    # into an empty disk it would leave holes where the base's data belongs
    task = x.task.create("import", "")
    put(srv, sid, vhd_delta, task=task, vdi=new_vdi(x, sr, SIZE), format="vhd")
    rec = wait_task(x, task)
    assert rec["error_info"][0] == "VDI_IO_ERROR" and "differencing" in rec["error_info"][1]


# -- the protocol --------------------------------------------------------------------------

def test_200_arrives_before_the_body_is_sent(x, sr, srv, sid):
    vdi = new_vdi(x, sr, SIZE)
    task = x.task.create("import", "")
    body = disk_image(SIZE, [(0, MiB)], seed=5)
    sock = request(srv, "PUT", f"/import_raw_vdi?session_id={sid}&task_id={task}&vdi={vdi}",
                   [f"Content-Length: {len(body)}"])
    with sock:
        sock.settimeout(10)
        status, headers, rest = read_head(sock)      # not one body byte sent yet
        assert (status, headers, rest) == (
            "HTTP/1.1 200 OK", ["Connection: close", "Cache-Control: no-cache, no-store",
                                f"task-id:{task}", "content-type: application/octet-stream"],
            b"")
        assert x.task.get_status(task) == "pending"
        sock.sendall(body)
        assert read_all(sock) == b""
    rec = wait_task(x, task)
    assert rec["status"] == "success" and rec["result"] == f"<value>{vdi}</value>"
    assert sha(get(srv, sid, vdi=vdi)[2]) == sha(body)


def test_empty_probe_writes_nothing(x, srv, sid, filled):
    """XO probes with an empty PUT, no task_id, before the real one."""
    vdi, data = filled
    status, _ = put(srv, sid, b"", vdi=vdi)
    assert status == "HTTP/1.1 200 OK"
    assert sha(get(srv, sid, vdi=vdi)[2]) == sha(data)


def test_new_vdi_from_sr_and_content_length(x, sr, srv, sid):
    data = disk_image(4 * MiB, [(MiB, 1000)], seed=9)
    task = x.task.create("import", "")
    assert put(srv, sid, data, task=task, sr_id=sr)[0] == "HTTP/1.1 200 OK"
    rec = wait_task(x, task)
    vdi = rec["result"].removeprefix("<value>").removesuffix("</value>")
    assert x.VDI.get_name_label(vdi) == "Imported VDI"
    assert int(x.VDI.get_virtual_size(vdi)) >= len(data) and x.VDI.get_SR(vdi) == sr
    assert get(srv, sid, vdi=vdi)[2][:len(data)] == data
    status, _ = put(srv, sid, data, sr_uuid=x.SR.get_uuid(sr), format="vhd")
    assert status.startswith("HTTP/1.1 400")             # vhd needs a vdi


def chunk(offset: int, data: bytes) -> bytes:
    return struct.pack("<QI", offset, len(data)) + data


def test_chunked_records(x, sr, srv, sid):
    vdi = new_vdi(x, sr, 4 * MiB)
    body = chunk(MiB, b"hello") + chunk(7, b"abc") + bytes(12)
    assert put(srv, sid, body, vdi=vdi, chunked="")[0] == "HTTP/1.1 200 OK"
    disk = get(srv, sid, vdi=vdi)[2]
    assert disk[MiB:MiB + 5] == b"hello" and disk[7:10] == b"abc"
    task = x.task.create("import", "")
    status, _ = put(srv, sid, body, task=task, vdi=vdi, chunked="", format="vhd")
    assert status.startswith("HTTP/1.1 404")
    assert wait_task(x, task)["error_info"] == ["INTERNAL_ERROR", "Cannot handle chunked VHD"]


def test_refusals(x, sr, srv, sid, filled):
    vdi, _ = filled
    task = x.task.create("export", "")
    status, headers, body = get(srv, sid, task=task, vdi=vdi, format="floppy")
    assert (status, body) == ("HTTP/1.0 404 Not Found", b"")
    assert wait_task(x, task)["error_info"] == ["INTERNAL_ERROR", "Unknown format floppy"]
    task = x.task.create("import", "")
    sock = request(srv, "PUT", f"/import_raw_vdi?session_id={sid}&task_id={task}&vdi={vdi}",
                   ["Transfer-Encoding: chunked"])
    with sock:
        assert read_head(sock)[0] == "HTTP/1.1 404 Not Found"
    assert wait_task(x, task)["error_info"] == ["INTERNAL_ERROR",
                                                "Cannot handle encoding: chunked"]
    status, _ = put(srv, sid, bytes(SIZE + 512), vdi=vdi)
    assert status.startswith("HTTP/1.1 400")         # bigger than the disk
    task = x.task.create("import", "")
    assert put(srv, sid, b"x", task=task)[0].startswith("HTTP/1.1 400")   # no vdi, no SR
    assert wait_task(x, task)["error_info"][0] == "VDI_MISSING"
    status, _, _ = get(srv, sid, vdi="OpaqueRef:nope")
    assert status.startswith("HTTP/1.1 500")


def test_auth_and_rbac(x, srv, filled):
    vdi, _ = filled
    with request(srv, "GET", f"/export_raw_vdi?vdi={vdi}") as sock:
        assert read_head(sock)[0].split()[1] == "401"
    add_local_user(x, "xfer-ro", "read-only", "pw-ro-1")
    ro = srv.session("xfer-ro", "pw-ro-1")
    try:
        task = ro.xenapi.task.create("export", "")
        status, _, _ = get(srv, ro._session, task=task, vdi=vdi)
        assert status.split()[1] == "403"
        rec = wait_task(x, task)
        assert rec["error_info"][:2] == ["RBAC_PERMISSION_DENIED", "http/get_export_raw_vdi"]
    finally:
        ro.xenapi.session.logout()


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
