"""What the XVA tests share (test_xva.py, test_xva_refusals.py): a real server with a
file SR and a network (module-scoped fixtures, one server per test module), HTTPS
GET/PUT helpers speaking the handlers' task protocol, disk hashing with qemu-img, and
counts of the records an import must not leave behind."""
import hashlib
import io
import os
import re
import socket
import ssl
import subprocess
import sys
import tarfile
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import ServerProcess  # noqa: E402

MiB = 1024 * 1024
XE = os.path.join(os.path.dirname(sys.executable), "xe")

# -- fixtures and helpers --------------------------------------------------------------

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-xva"))).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def x(srv):
    session = srv.session()
    yield session.xenapi
    session.xenapi.session.logout()


@pytest.fixture(scope="module")
def sr(x, tmp_path_factory):
    host = x.host.get_all()[0]
    path = str(tmp_path_factory.mktemp("xva-sr") / "sr")
    ref = x.SR.create(host, {"path": path}, "0", "xva test SR", "", "file", "user", False, {})
    return ref, path


@pytest.fixture(scope="module")
def network(x):
    return x.network.create({"name_label": "xva test network", "name_description": "",
                             "MTU": "1500", "other_config": {}})


def image(x, sr, vdi) -> str:
    return os.path.join(sr[1], x.VDI.get_location(vdi) + ".qcow2")


def qemu_io(path, command):
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", command, path], check=True,
                   capture_output=True)


def disk_sha(x, sr, vdi, tmp_path) -> str:
    out = str(tmp_path / f"read-{vdi[-12:]}.raw")
    subprocess.run(["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw",
                    image(x, sr, vdi), out], check=True)
    with open(out, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    os.unlink(out)
    return digest


def make_vm(x, sr, network, name, disks):
    """A halted VM with a VDI per (size, [qemu-io writes]) and one VIF."""
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, name)
    x.VM.set_is_a_template(vm, False)
    for i, (size, writes) in enumerate(disks):
        vdi = x.VDI.create({"SR": sr[0], "virtual_size": str(size), "type": "user",
                            "name_label": f"{name} disk {i}", "name_description": f"d{i}",
                            "sharable": False, "read_only": False,
                            "other_config": {"k": f"v{i}"}})
        for command in writes:
            qemu_io(image(x, sr, vdi), command)
        x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": str(i), "bootable": i == 0,
                      "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                      "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VIF.create({"VM": vm, "network": network, "device": "0", "MAC": "",
                  "MTU": "1500", "other_config": {"vif": "1"}, "qos_algorithm_type": "",
                  "qos_algorithm_params": {}})
    return vm


def counts(x) -> dict:
    return {c: len(getattr(x, c).get_all()) for c in ("VM", "VDI", "VBD", "VIF")}


def views_left(srv) -> list[str]:
    """Disk views (FUSE mounts) the server still has open: none once a transfer ends."""
    with open("/proc/mounts") as f:
        return [line for line in f if srv.data_dir in line]


def disks_of(x, vm) -> list[str]:
    vbds = sorted(x.VM.get_VBDs(vm), key=lambda v: x.VBD.get_userdevice(v))
    return [x.VBD.get_VDI(v) for v in vbds
            if x.VBD.get_type(v) == "Disk" and x.VBD.get_VDI(v) != "OpaqueRef:NULL"]


def wait_task(x, task, timeout=120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rec = x.task.get_record(task)
        if rec["status"] not in ("pending", "cancelling"):
            return rec
        time.sleep(0.1)
    raise AssertionError(f"task {task} still pending")


def connect(srv):
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=60)
    return ssl._create_unverified_context().wrap_socket(raw)


def read_head(sock) -> tuple[str, dict, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:])}
    return lines[0], headers, rest


def read_all(sock, first=b"") -> bytes:
    parts = [first]
    while True:
        piece = sock.recv(1 << 20)
        if not piece:
            return b"".join(parts)
        parts.append(piece)


@pytest.fixture(scope="module")
def sid(srv):
    session = srv.session()
    yield session._session
    session.xenapi.session.logout()


def get(srv, sid, path) -> tuple[str, dict, bytes]:
    with connect(srv) as s:
        s.sendall(f"GET {path}&session_id={sid} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        status, headers, rest = read_head(s)
        return status, headers, read_all(s, rest)


def put(srv, sid, path, body: bytes, length=True, close_after=None):
    """PUT as xe does: headers, wait for the 200, then the body. `close_after`: send
    only that many bytes of it, then close."""
    with connect(srv) as s:
        head = f"PUT {path}&session_id={sid} HTTP/1.0\r\nHost: x\r\n"
        if length:
            head += f"Content-Length: {len(body)}\r\n"
        s.sendall(head.encode() + b"\r\n")
        status, headers, _ = read_head(s)
        if status.split()[1] == "200":
            try:     # a server that gives up early closes while we send: its task says why
                s.sendall(body if close_after is None else body[:close_after])
                if close_after is None:
                    read_all(s)
            except OSError:         # ssl.SSLError and ConnectionError are OSErrors
                pass
        return status, headers


def export(x, srv, sid, vm, compression=None) -> tuple[bytes, dict]:
    task = x.task.create("export", "")
    query = f"/export?ref={vm}&task_id={task}"
    if compression:
        query += f"&use_compression={compression}"
    status, headers, body = get(srv, sid, query)
    assert status == "HTTP/1.0 200 OK", (status, body[:300])
    rec = wait_task(x, task)
    assert rec["status"] == "success", rec["error_info"]
    x.task.destroy(task)
    return body, headers


def import_xva(x, srv, sid, sr, data: bytes, extra="", path="/import") -> dict:
    task = x.task.create("import", "")
    status, _ = put(srv, sid, f"{path}?sr_id={sr[0]}&task_id={task}{extra}", data)
    rec = wait_task(x, task)
    rec["http_status"] = status
    rec["task"] = task
    return rec


def new_vms(rec) -> list[str]:
    return re.findall(r"OpaqueRef:[0-9a-f-]+", rec["result"])


def members(data: bytes) -> list[str]:
    return tarfile.open(fileobj=io.BytesIO(data)).getnames()


def destroy_vm(x, vm):
    for vdi in disks_of(x, vm):
        x.VDI.destroy(vdi)
    x.VM.destroy(vm)
