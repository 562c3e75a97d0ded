"""VM export and import (XVA) against the real server: GET /export, PUT /import,
/export_metadata, /import_metadata, over HTTPS with the task protocol: round trips that
keep every field and disk byte (sha256 of each disk), an XVA from the tests' own writer
(tests/xva_writer.py), restore, metadata with snapshots, roles, ova.xml as xapi writes
it. Refused archives: test_xva_refusals.py; shared fixtures: xva_server.py.
"""
import hashlib
import io
import os
import re
import sys
import tarfile
import zlib
import xml.etree.ElementTree as ET

import pytest
import xxhash
import zstandard

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import add_local_user  # noqa: E402
import xva_writer  # noqa: E402

MiB = 1024 * 1024
XE = os.path.join(os.path.dirname(sys.executable), "xe")

from xva_server import (srv, x, sr, network, sid,  # noqa: F401 (fixtures)
                        disk_sha, make_vm, counts, disks_of, wait_task, connect, read_head,
                        get, put, export, import_xva, new_vms, members, destroy_vm, MiB)


# -- round trip ------------------------------------------------------------------------

KEPT = ("name_label", "name_description", "memory_static_max", "memory_dynamic_max",
        "memory_dynamic_min", "memory_static_min", "VCPUs_max", "VCPUs_at_startup",
        "PV_args", "HVM_boot_policy", "HVM_boot_params", "platform", "tags",
        "actions_after_shutdown", "actions_after_reboot", "actions_after_crash",
        "is_a_template", "VCPUs_params", "xenstore_data", "user_version")


@pytest.fixture(scope="module")
def source_vm(x, sr, network):
    vm = make_vm(x, sr, network, "xva source", [
        (5 * MiB + 4096, ["write -P 0x5a 0 64k", "write -P 0x11 3M 8k",
                          "write -P 0x77 5242880 4096"]),
        (3 * MiB, ["write -P 0x42 1M 1M"])])
    x.VM.set_name_description(vm, "exported <&> round trip")
    x.VM.set_PV_args(vm, "console=ttyS0 quiet")
    x.VM.add_tags(vm, "xva")
    x.VM.set_xenstore_data(vm, {"vm-data/a": "b"})
    x.VM.set_VCPUs_max(vm, "2")
    x.VM.add_to_other_config(vm, "export-me", "yes")
    return vm


@pytest.mark.parametrize("compression", [None, "zstd", "gzip"])
def test_round_trip_keeps_fields_and_every_byte(x, srv, sid, sr, source_vm, compression,
                                                tmp_path):
    before = counts(x)
    data, headers = export(x, srv, sid, source_vm, compression)
    assert headers["content-disposition"] == 'attachment; filename="export.xva"'
    plain = data
    if compression == "zstd":
        assert data[:4] == b"\x28\xb5\x2f\xfd"
        plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
    elif compression == "gzip":
        assert data[:2] == b"\x1f\x8b"
        plain = zlib.decompress(data, 16 + zlib.MAX_WBITS)
    names = members(plain)
    assert names[0] == "ova.xml" and plain[-1024:] == bytes(1024)
    assert len(plain) % 512 == 0
    # disk 0 is 6 chunks: 0 (data), 3 (data), 5 (the last, short): zero chunks left out
    disk_members = [n for n in names if not n.endswith(".xxhash") and n != "ova.xml"]
    prefixes = sorted({n.split("/")[0] for n in disk_members})
    assert len(prefixes) == 2
    assert all(n + ".xxhash" in names for n in disk_members)
    sizes = {n.split("/")[0]: [] for n in disk_members}
    for n in disk_members:
        sizes[n.split("/")[0]].append(n.split("/")[1])
    assert sorted(map(sorted, sizes.values())) == sorted(
        [["00000000", "00000003", "00000005"], ["00000000", "00000001", "00000002"]])
    tf = tarfile.open(fileobj=io.BytesIO(plain))
    for n in disk_members:
        chunk = tf.extractfile(n).read()
        assert tf.extractfile(n + ".xxhash").read() == b"%016X" % xxhash.xxh64_intdigest(chunk)

    rec = import_xva(x, srv, sid, sr, data)
    assert rec["status"] == "success", rec["error_info"]
    assert rec["result"].startswith("<value><array><data><value>OpaqueRef:")
    assert x.task.get_other_config(rec["task"])["object_creation"] == "complete"
    [vm] = new_vms(rec)
    try:
        old, new = x.VM.get_record(source_vm), x.VM.get_record(vm)
        for field in KEPT:
            assert new[field] == old[field], field
        assert new["other_config"]["export-me"] == "yes"
        assert new["other_config"]["import_task"] == rec["task"]
        assert new["current_operations"] == {} and new["power_state"] == "Halted"
        assert new["uuid"] != old["uuid"]
        src, dst = disks_of(x, source_vm), disks_of(x, vm)
        assert len(dst) == 2
        for a, b in zip(src, dst):
            assert x.VDI.get_virtual_size(b) == x.VDI.get_virtual_size(a)
            assert x.VDI.get_SR(b) == sr[0]
            assert x.VDI.get_name_label(b) == x.VDI.get_name_label(a)
            assert x.VDI.get_other_config(b) == x.VDI.get_other_config(a)
            assert disk_sha(x, sr, b, tmp_path) == disk_sha(x, sr, a, tmp_path)
        [vif] = x.VM.get_VIFs(vm)
        [old_vif] = x.VM.get_VIFs(source_vm)
        assert x.VIF.get_network(vif) == x.VIF.get_network(old_vif)
        assert x.VIF.get_MAC(vif) != x.VIF.get_MAC(old_vif)       # not a restore
        assert x.VIF.get_other_config(vif) == {"vif": "1"}
        vbds = {x.VBD.get_userdevice(v): x.VBD.get_bootable(v) for v in x.VM.get_VBDs(vm)}
        assert vbds["0"] is True and vbds["1"] is False
    finally:
        x.task.destroy(rec["task"])
        destroy_vm(x, vm)
    assert counts(x) == before


def test_restore_keeps_uuids_and_macs(x, srv, sid, sr, network):
    vm = make_vm(x, sr, network, "xva restore", [(1 * MiB, ["write -P 1 0 4k"])])
    data, _ = export(x, srv, sid, vm)
    uuid, mac = x.VM.get_uuid(vm), x.VIF.get_MAC(x.VM.get_VIFs(vm)[0])
    clash = import_xva(x, srv, sid, sr, data, "&restore=true")
    assert clash["status"] == "failure" and clash["error_info"][0] == "IMPORT_ERROR"
    destroy_vm(x, vm)
    rec = import_xva(x, srv, sid, sr, data, "&restore=true")
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)
    assert x.VM.get_uuid(new) == uuid
    assert x.VIF.get_MAC(x.VM.get_VIFs(new)[0]) == mac
    destroy_vm(x, new)


def test_xva_from_the_tests_own_writer_imports(x, srv, sid, sr, network, tmp_path):
    disk0 = bytearray(3 * MiB + 512)
    disk0[0:4] = b"boot"
    disk0[2 * MiB + 7:2 * MiB + 12] = b"hello"
    disk1 = os.urandom(MiB // 2)
    data = xva_writer.xva("from writer", [bytes(disk0), disk1],
                          networks=["xva test network"])
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, data)
    assert rec["status"] == "success", rec["error_info"]
    [vm] = new_vms(rec)
    assert x.VM.get_name_label(vm) == "from writer"
    assert x.VM.get_other_config(vm)["written-by"] == "xva_writer"
    assert x.VM.get_memory_static_max(vm) == str(256 << 20)
    d0, d1 = disks_of(x, vm)
    assert disk_sha(x, sr, d0, tmp_path) == hashlib.sha256(disk0).hexdigest()
    assert disk_sha(x, sr, d1, tmp_path) == hashlib.sha256(disk1).hexdigest()
    [vif] = x.VM.get_VIFs(vm)
    assert x.VIF.get_network(vif) == network
    destroy_vm(x, vm)
    assert counts(x) == before


def test_an_unknown_network_maps_to_the_nat_network(x, srv, sid, sr):
    """A VIF whose network has no namesake here goes on the host-internal NAT network
    (services/network/nat.py) when there is one: the guest gets an address at once."""
    nat = x.network.create({"name_label": "NAT for the test", "other_config":
                            {"xapi-py:nat": "10.213.99.1/24"}})
    try:
        rec = import_xva(x, srv, sid, sr, xva_writer.xva(
            "unknown net", [bytes(MiB)], networks=["no such network here"]))
        assert rec["status"] == "success", rec["error_info"]
        [vm] = new_vms(rec)
        [vif] = x.VM.get_VIFs(vm)
        assert x.VIF.get_network(vif) == nat
        destroy_vm(x, vm)
    finally:
        x.network.destroy(nat)


def _ova_classes(body: bytes) -> list[str]:
    text = tarfile.open(fileobj=io.BytesIO(body)).extractfile("ova.xml").read().decode()
    return re.findall(r"<member><name>class</name><value>(\w+)</value>", text)


def _forget_records(x, vm):
    """Remove an imported metadata VM without touching the disks it shares."""
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    for vif in x.VM.get_VIFs(vm):
        x.VIF.destroy(vif)
    x.VM.destroy(vm)


def test_metadata_with_snapshots_and_excluded_devices(x, srv, sid, sr, network):
    vm = make_vm(x, sr, network, "xva snapshotted", [(MiB, ["write -P 7 0 4k"])])
    snap = x.VM.snapshot(vm, "xva snap")
    _, _, body = get(srv, sid, f"/export_metadata?ref={vm}")
    assert _ova_classes(body).count("VM") == 2
    rec = import_xva(x, srv, sid, sr, body, path="/import_metadata")
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)                                 # the VM, not its snapshot
    [new_snap] = x.VM.get_snapshots(new)
    assert x.VM.get_is_a_snapshot(new_snap) and x.VM.get_name_label(new_snap) == "xva snap"
    assert disks_of(x, new_snap) == disks_of(x, snap)
    assert x.VM.get_snapshot_time(new_snap) == x.VM.get_snapshot_time(snap)
    _forget_records(x, new_snap)
    _forget_records(x, new)
    _, _, body = get(srv, sid, f"/export_metadata?ref={vm}&export_snapshots=false"
                               "&excluded_device_types=vif")
    assert _ova_classes(body) == ["VM", "VM_metrics", "VBD", "VDI", "SR"]
    # all=true: every VM and template of the pool but the built-in templates, snapshots
    # with their VMs
    _, _, body = get(srv, sid, "/export_metadata?all=true")
    records = x.VM.get_all_records().values()
    assert _ova_classes(body).count("VM") == len(
        [r for r in records if not r["is_default_template"]])
    assert ">xva snap<" in tarfile.open(fileobj=io.BytesIO(body)).extractfile(
        "ova.xml").read().decode()
    destroy_vm(x, snap)
    destroy_vm(x, vm)


def test_paths_with_a_trailing_slash_and_roles(x, srv, sid, sr, network):
    """XO calls /export/ and /import/; vm-admin may export, vm-operator may not."""
    vm = make_vm(x, sr, network, "xva roles", [(MiB, ["write -P 9 0 4k"])])
    add_local_user(x, "xva-admin", "vm-admin", "pw-admin")
    add_local_user(x, "xva-operator", "vm-operator", "pw-operator")
    admin = srv.session("xva-admin", "pw-admin")
    task = admin.xenapi.task.create("export", "")
    status, _, data = get(srv, admin._session, f"/export/?ref={vm}&task_id={task}")
    assert status == "HTTP/1.0 200 OK"
    assert wait_task(admin.xenapi, task)["status"] == "success"
    rec = import_xva(admin.xenapi, srv, admin._session, sr, data, path="/import/")
    assert rec["status"] == "success", rec["error_info"]
    destroy_vm(x, new_vms(rec)[0])
    operator = srv.session("xva-operator", "pw-operator")
    for method, path in (("GET", f"/export?ref={vm}"), ("PUT", f"/import?sr_id={sr[0]}"),
                         ("GET", f"/export_metadata?ref={vm}"),
                         ("PUT", "/import_metadata?x=1")):
        task = operator.xenapi.task.create("refused", "")
        with connect(srv) as s:
            s.sendall(f"{method} {path}&task_id={task}&session_id={operator._session} "
                      "HTTP/1.0\r\nContent-Length: 0\r\n\r\n".encode())
            assert read_head(s)[0].split()[1] == "403", path
        error = wait_task(operator.xenapi, task)["error_info"]
        assert error[0] == "RBAC_PERMISSION_DENIED", error
        assert error[1] == "http/" + {"/export": "get_export", "/import": "put_import",
                                      "/export_metadata": "get_export_metadata",
                                      "/import_metadata": "put_import_metadata"}[
                                          path.split("?")[0]]
    destroy_vm(x, vm)


def test_snapshot_export_into_the_default_sr(x, srv, sid, sr, network, tmp_path):
    """A snapshot exports as xapi's do (it comes back a template, not a snapshot); no
    sr_id means the pool's default SR, and without one DEFAULT_SR_NOT_FOUND."""
    vm = make_vm(x, sr, network, "xva snap source", [(MiB, ["write -P 3 0 8k"])])
    snap = x.VM.snapshot(vm, "xva exported snapshot")
    data, _ = export(x, srv, sid, snap)
    pool = x.pool.get_all()[0]
    default = x.pool.get_default_SR(pool)
    task = x.task.create("import", "")
    put(srv, sid, f"/import?task_id={task}", data)
    rec = wait_task(x, task)
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)
    assert x.VM.get_is_a_template(new) and not x.VM.get_is_a_snapshot(new)
    assert x.VM.get_name_label(new) == "xva exported snapshot"
    [disk] = disks_of(x, new)
    assert x.VDI.get_SR(disk) == default
    destroy_vm(x, new)
    x.pool.set_default_SR(pool, "OpaqueRef:NULL")
    try:
        task = x.task.create("import", "")
        status, _ = put(srv, sid, f"/import?task_id={task}", data)
        assert status.split()[1] == "500"
        assert wait_task(x, task)["error_info"][0] == "DEFAULT_SR_NOT_FOUND"
    finally:
        x.pool.set_default_SR(pool, default)
    destroy_vm(x, snap)
    destroy_vm(x, vm)


def test_refusals_before_the_body(x, srv, sid, sr, source_vm, tmp_path):
    host = x.host.get_all()[0]
    (tmp_path / "isos").mkdir()
    iso = x.SR.create(host, {"location": str(tmp_path / "isos")}, "0", "isos", "", "iso",
                      "iso", False, {})
    task = x.task.create("import", "")
    with connect(srv) as s:
        s.sendall(f"PUT /import?sr_id={iso}&task_id={task}&session_id={sid} HTTP/1.0\r\n"
                  "Content-Length: 10\r\n\r\n".encode())
        assert read_head(s)[0].startswith("HTTP/1.1 400")
    assert wait_task(x, task)["error_info"] == ["SR_OPERATION_NOT_SUPPORTED", iso]
    task = x.task.create("import", "")
    with connect(srv) as s:
        s.sendall(f"PUT /import?sr_id={sr[0]}&task_id={task}&session_id={sid} HTTP/1.1\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        assert read_head(s)[0].startswith("HTTP/1.1 403")
    rec = wait_task(x, task)
    assert rec["error_info"] == ["IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"]
    # a running VM is not exported: 500 and VM_BAD_POWER_STATE, as xapi
    vm = x.VM.clone(source_vm, "xva running")
    x.VM.start(vm, False, False)
    try:
        task = x.task.create("export", "")
        status, _, _ = get(srv, sid, f"/export?uuid={x.VM.get_uuid(vm)}&task_id={task}")
        assert status.split()[1] == "500"
        rec = wait_task(x, task)
        assert rec["error_info"] == ["VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
        assert x.VM.get_current_operations(vm) == {}
    finally:
        x.VM.hard_shutdown(vm)
        destroy_vm(x, vm)


def test_ova_xml_is_written_as_xapi_writes_it(x, srv, sid, source_vm):
    _, _, body = get(srv, sid, f"/export_metadata?ref={source_vm}")
    text = tarfile.open(fileobj=io.BytesIO(body)).extractfile("ova.xml").read().decode()
    assert text.startswith("<value><struct><member><name>version</name>")  # no declaration
    root = ET.fromstring(text)
    top = root.find("struct")
    assert [m.findtext("name") for m in top.findall("member")] == ["version", "objects"]
    version = {m.findtext("name"): m.find("value") for m in top[0].find("value/struct")}
    assert version["export_vsn"].text == "2" and len(version["export_vsn"]) == 0  # bare int
    objects = top[1].find("value/array/data").findall("value")
    classes, ids = [], set()
    for obj in objects:
        members = obj.find("struct").findall("member")
        assert [m.findtext("name") for m in members] == ["class", "id", "snapshot"]
        classes.append(members[0].find("value").text)
        ids.add(members[1].find("value").text)
    assert classes == ["VM", "VM_metrics", "VBD", "VBD", "VIF", "network", "VDI", "VDI",
                       "SR"]
    assert all(re.fullmatch(r"Ref:\d+", i) for i in ids)
    # every reference is an exported object's id or NULL: nothing of this pool leaks out
    refs = set(re.findall(r"OpaqueRef:[^<]*", text))
    assert refs <= {"OpaqueRef:NULL"}
    assert "<string>" not in text and "<boolean>1</boolean>" in text


def test_metadata_export_and_import(x, srv, sid, sr, source_vm):
    status, headers, body = get(srv, sid, f"/export_metadata?ref={source_vm}")
    assert status == "HTTP/1.0 200 OK" and int(headers["content-length"]) == len(body)
    assert members(body) == ["ova.xml"] and body[-1024:] == bytes(1024)
    before = counts(x)
    rec = import_xva(x, srv, sid, sr, body, path="/import_metadata")
    assert rec["status"] == "success", rec["error_info"]
    [vm] = new_vms(rec)
    assert x.VM.get_name_label(vm) == x.VM.get_name_label(source_vm)
    assert disks_of(x, vm) == disks_of(x, source_vm)       # the same disks, no copies
    assert counts(x)["VDI"] == before["VDI"]
    for vbd in x.VM.get_VBDs(vm):
        x.VBD.destroy(vbd)
    for vif in x.VM.get_VIFs(vm):
        x.VIF.destroy(vif)
    x.VM.destroy(vm)
