"""PUT /import_raw_vdi and GET /export_raw_vdi on the real server over TLS: round trips
in every format with the real qemu-img checking what comes out and making what goes in,
and the protocol (the 200 before the body, header blocks, probes, chunked records,
refusals, roles). Failures mid-transfer, xe, ISO upload and memory:
test_vdi_transfer_edges.py; shared fixtures: vdi_server.py."""
import json
import os
import struct
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from vdi_server import (srv, x, sr, sid, filled,  # noqa: E402,F401 (fixtures)
                        add_local_user, MiB, new_vdi, read_head, read_all, request, put,
                        get, wait_task, disk_image, sha, qemu_img, SIZE)


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
