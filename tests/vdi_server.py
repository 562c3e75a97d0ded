"""What the disk transfer tests share (test_vdi_transfer.py, test_vdi_transfer_edges.py):
one server and one file SR per test module, raw TLS requests where the bytes on the
wire matter, the handlers' task protocol, and disk images made and checked with
qemu-img."""
import hashlib
import os
import random
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import (ROOT_PASSWORD, ServerProcess, add_local_user,  # noqa: E402,F401
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

def read_head(sock, data: bytes = b"") -> tuple[str, list[str], bytes]:
    """(status line, header lines, what came after), reading on from `data`."""
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
