"""Forwarding (issue 17): a pool of two simulated hosts (tests/pool_harness.py), every
call made through the coordinator with the official SDK; what the datamodel declares
host-local runs on the member that owns the object, on its own libvirtd and disks,
and the member's records come back into the pool database. HTTP handlers about a
member's objects answer with a redirect to it, which works with the coordinator's
session. The tests run in order and share the pool and its guest."""
import http.client
import os
import sqlite3
import ssl
import sys
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from guest.harness import (MARK, console_text, guest, guest_vm,  # noqa: E402,F401 (fixture)
                           wait_for)
from pool_harness import pool_hosts  # noqa: E402
from private_libvirtd import unavailable  # noqa: E402
from sdk_failures import failure  # noqa: E402
from serverproc import ROOT_PASSWORD  # noqa: E402
from test_pool_join import xe  # noqa: E402  (xe as root on a host)

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))
SHARED = {}


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    with pool_hosts(tmp_path_factory, 2, slot=7) as (coordinator, member):
        member.session().xenapi.pool.join(coordinator.address, "root", ROOT_PASSWORD)
        member.wait_restarted()
        c = coordinator.session().xenapi
        ref = [h for h in c.host.get_all() if c.host.get_address(h) == member.address][0]
        yield coordinator, member, ref


def member_db(member, sql):
    """A query on the member's own database (its working copy of the records)."""
    path = os.path.join(member.server.data_dir, "xapi.db")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute(sql).fetchall()


def local_sr(x, host):
    return [x.PBD.get_SR(p) for p in x.host.get_PBDs(host)
            if x.SR.get_type(x.PBD.get_SR(p)) not in ("iso", "udev")
            and not x.SR.get_shared(x.PBD.get_SR(p))][0]


def _request(url, method, body=None):
    parts = urlsplit(url)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, timeout=60,
                                       context=ssl._create_unverified_context())
    conn.request(method, parts.path + "?" + parts.query, body=body)
    return conn, conn.getresponse()


def test_host_disable_and_enable_run_on_the_member(pool):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    c.host.disable(there)
    assert c.host.get_enabled(there) is False
    uuid = c.host.get_uuid(there)
    # run by the member: its own copy says so (a bool is stored as JSON text)
    assert member_db(member, f"select enabled from host where uuid = '\"{uuid}\"'") == \
        [("false",)]
    vm = guest_vm(c, None, "for a disabled host")
    assert failure(c.VM.start_on, vm, there, False, False) == ["HOST_DISABLED", there]
    c.VM.destroy(vm)
    c.host.enable(there)
    assert c.host.get_enabled(there) is True
    assert member_db(member, f"select enabled from host where uuid = '\"{uuid}\"'") == \
        [("true",)]
    assert "provision" in c.host.get_allowed_operations(there)


def test_a_disk_made_and_removed_on_the_members_local_sr(pool):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    sr = local_sr(c, there)
    vdi = c.VDI.create({"SR": sr, "virtual_size": str(8 << 20), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "made on the member"})
    location = c.VDI.get_location(vdi)
    on_member = os.path.join(member.server.data_dir, "sr", "local")
    on_coordinator = os.path.join(coordinator.server.data_dir, "sr", "local")
    assert any(location in name for name in os.listdir(on_member)), os.listdir(on_member)
    assert not any(location in name for name in os.listdir(on_coordinator))
    assert c.VDI.get_virtual_size(vdi) == str(8 << 20)
    assert vdi in c.SR.get_VDIs(sr)
    c.VDI.resize(vdi, str(16 << 20))
    assert c.VDI.get_virtual_size(vdi) == str(16 << 20)
    c.VDI.destroy(vdi)
    assert vdi not in c.VDI.get_all()
    assert not any(location in name for name in os.listdir(on_member))
    SHARED["sr"] = sr


def test_a_disks_bytes_in_and_out_through_the_member(pool):
    """/import_raw_vdi and /export_raw_vdi of a disk on the member's local SR: the
    coordinator redirects (it sends before reading any body), the member serves."""
    coordinator, member, there = pool
    c = coordinator.session()
    x, session = c.xenapi, c._session
    vdi = x.VDI.create({"SR": SHARED["sr"], "virtual_size": str(1 << 20), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "bytes"})
    data = os.urandom(64 << 10) + bytes((1 << 20) - (64 << 10))
    query = f"vdi={vdi}&session_id={session}&format=raw"
    conn, reply = _request(f"https://{coordinator.address}/import_raw_vdi?{query}", "PUT")
    assert reply.status == 302
    location = reply.getheader("Location")
    conn.close()
    assert location == f"https://{member.address}/import_raw_vdi?{query}"
    conn, reply = _request(location, "PUT", body=data)
    assert reply.status == 200, reply.read()
    conn.close()
    # with a task of the coordinator's: the member reports how it ended
    task = x.task.create("export", "through the member")
    conn, reply = _request(f"https://{coordinator.address}/export_raw_vdi?{query}"
                           f"&task_id={task}", "GET")
    assert reply.status == 302
    conn.close()
    conn, reply = _request(reply.getheader("Location"), "GET")
    assert reply.status == 200
    assert reply.read() == data
    conn.close()
    wait_for(lambda: x.task.get_status(task) == "success", 15, "the task ended")
    x.VDI.destroy(vdi)


def test_a_vm_started_on_the_member(pool, guest):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    vm = guest_vm(c, guest, "forwarded", mib=96)
    c.VM.start_on(vm, there, False, False)
    uuid = c.VM.get_uuid(vm)
    wait_for(lambda: MARK + "BOOTED" in console_text(member.server.data_dir, uuid), 90,
             "the guest booting on the member")
    SHARED["vm"] = vm


def test_the_console_of_a_members_vm_redirects_there(pool):
    """The member's console records come back to the pool database; a console request
    to the coordinator is redirected to the member, which serves it with the
    coordinator's session. (The vt100 console: the harness's private libvirtd keeps
    QEMU's VNC socket in its own mount namespace, out of the server's reach.)"""
    coordinator, member, there = pool
    c = coordinator.session()
    x, vm, session = c.xenapi, SHARED["vm"], c._session
    consoles = {x.console.get_protocol(ref): ref for ref in x.VM.get_consoles(vm)}
    assert set(consoles) == {"rfb", "vt100"}
    assert x.console.get_location(consoles["rfb"]).startswith(f"https://{member.address}/")
    for ref in (vm, consoles["vt100"]):
        url = f"https://{coordinator.address}/console?ref={ref}&session_id={session}"
        conn, reply = _request(url, "CONNECT")
        assert reply.status == 302
        location = reply.getheader("Location")
        conn.close()
        assert location == f"https://{member.address}/console?ref={ref}&session_id={session}"
    conn, reply = _request(location, "CONNECT")
    assert reply.status == 200, reply.read()
    conn.close()
    # a session the coordinator does not know is refused there too
    conn, reply = _request(location.replace(session, "OpaqueRef:nope"), "CONNECT")
    assert reply.status == 401
    conn.close()


def test_xe_follows_the_redirects(pool, tmp_path):
    """xe on the coordinator: the console of the member's VM, and a disk of the member's
    local SR written and read back (xe's transfers follow the redirect; the member
    ends the task xe waits on)."""
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    r = xe(tmp_path, coordinator, "console", f"uuid={c.VM.get_uuid(SHARED['vm'])}",
           stdin="\n")
    assert r.returncode == 0, r.stderr
    vdi = c.VDI.create({"SR": SHARED["sr"], "virtual_size": str(1 << 20), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "by xe"})
    data = os.urandom(1 << 20)
    (tmp_path / "in.raw").write_bytes(data)
    uuid = c.VDI.get_uuid(vdi)
    r = xe(tmp_path, coordinator, "vdi-import", f"uuid={uuid}",
           f"filename={tmp_path / 'in.raw'}", "format=raw")
    assert r.returncode == 0, r.stderr
    r = xe(tmp_path, coordinator, "vdi-export", f"uuid={uuid}",
           f"filename={tmp_path / 'out.raw'}", "format=raw")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out.raw").read_bytes() == data
    c.VDI.destroy(vdi)


def test_a_vm_on_the_member_suspended_and_resumed(pool):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    vm = SHARED["vm"]
    uuid = c.VM.get_uuid(vm)
    c.VM.suspend(vm)
    assert c.VM.get_power_state(vm) == "Suspended"
    assert c.VM.get_scheduled_to_be_resident_on(vm) == there   # its memory is there
    me = c.pool.get_master(c.pool.get_all()[0])
    assert failure(c.VM.resume_on, vm, me, False, False)[0] == "OPERATION_NOT_ALLOWED"
    assert member.libvirtd.virsh("domstate", uuid).strip() == "shut off"
    assert "yes" in member.libvirtd.virsh("dominfo", uuid).split("Managed save:")[1][:10]
    c.VM.resume(vm, False, False)
    assert c.VM.get_resident_on(vm) == there
    # a restore can be read as paused for a moment: the member's heartbeats follow it
    wait_for(lambda: c.VM.get_power_state(vm) == "Running", 10, "the VM running again")
    assert member.libvirtd.virsh("domstate", uuid).strip() == "running"
    assert uuid not in coordinator.libvirtd.virsh("list", "--all", "--name")


def test_snapshot_and_data_sources_of_the_members_vm(pool):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    vm = SHARED["vm"]
    snap = c.VM.snapshot(vm, "taken on the member")
    assert c.VM.get_is_a_snapshot(snap) and c.VM.get_snapshot_of(snap) == vm
    assert snap in c.VM.get_snapshots(vm)
    # sampled by the member, which answers for its VM and for itself
    wait_for(lambda: any(d["name_label"] == "memory" and d["value"] > 0
                         for d in c.VM.get_data_sources(vm)),
             30, "the member sampling its VM's memory")
    assert c.VM.query_data_source(vm, "memory") > 0
    assert any(d["name_label"] == "memory_total_kib" for d in c.host.get_data_sources(there))
    c.VM.destroy(snap)
    # under Async, the task says where the call ran (as xapi's forwarded tasks)
    task = c.Async.VM.pause(vm)
    wait_for(lambda: c.task.get_status(task) != "pending", 30, "the forwarded pause")
    assert (c.task.get_status(task), c.task.get_resident_on(task)) == ("success", there)
    assert member.libvirtd.virsh("domstate", c.VM.get_uuid(vm)).strip() == "paused"
    c.VM.unpause(vm)


def test_a_disk_hot_plugged_into_the_members_vm(pool):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    vm, sr = SHARED["vm"], SHARED["sr"]
    uuid = c.VM.get_uuid(vm)
    vdi = c.VDI.create({"SR": sr, "virtual_size": str(4 << 20), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "hot"})
    vbd = c.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "3", "bootable": False,
                        "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})
    c.VBD.plug(vbd)
    assert c.VBD.get_currently_attached(vbd) is True
    location = c.VDI.get_location(vdi)
    assert location in member.libvirtd.virsh("domblklist", uuid)
    c.VBD.unplug(vbd)
    assert c.VBD.get_currently_attached(vbd) is False
    assert location not in member.libvirtd.virsh("domblklist", uuid)
    c.VBD.destroy(vbd)
    c.VDI.destroy(vdi)


def test_a_nic_hot_plugged_into_the_members_vm(pool):
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    vm = SHARED["vm"]
    uuid = c.VM.get_uuid(vm)
    pif = [p for p in c.host.get_PIFs(there) if c.PIF.get_management(p)][0]
    assert c.PIF.get_record(pif)["host"] == there   # read as the member reported it
    vif = c.VIF.create({"MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}, "VM": vm, "device": "4", "MAC": "",
                        "network": c.PIF.get_network(pif)})
    mac = c.VIF.get_MAC(vif)
    c.VIF.plug(vif)
    assert c.VIF.get_record(vif)["currently_attached"] is True
    assert mac in member.libvirtd.virsh("domiflist", uuid)
    c.VIF.unplug(vif)
    assert c.VIF.get_currently_attached(vif) is False
    assert mac not in member.libvirtd.virsh("domiflist", uuid)
    c.VIF.destroy(vif)


def test_a_member_that_does_not_answer(pool):
    """Last: the member is killed. Calls forwarded to it fail as xapi's do."""
    coordinator, member, there = pool
    c = coordinator.session().xenapi
    vm = SHARED["vm"]
    member.server.kill()
    assert failure(c.VM.pause, vm) == ["CANNOT_CONTACT_HOST", there]
    wait_for(lambda: not c.host_metrics.get_live(c.host.get_metrics(there)), 15,
             "the member marked not live")
    assert failure(c.VM.suspend, vm) == ["HOST_OFFLINE", there]
    assert failure(c.host.disable, there) == ["HOST_OFFLINE", there]
    # its data handlers too, and the client's task fails with the reason
    session = coordinator.session()
    task = session.xenapi.task.create("console", "")
    conn, reply = _request(f"https://{coordinator.address}/console?ref={vm}"
                           f"&session_id={session._session}&task_id={task}", "CONNECT")
    assert (reply.status, reply.read()) == (500, f"HOST_OFFLINE {there}\n".encode())
    conn.close()
    assert session.xenapi.task.get_error_info(task) == ["HOST_OFFLINE", there]
