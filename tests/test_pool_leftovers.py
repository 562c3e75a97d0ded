"""Pools (issue 17), what was left: a task.cancel on the coordinator reaching the
member that runs the work (a forwarded call, a redirected disk upload),
VDI.pool_migrate of a VM running on a member, VM.migrate_send of halted and
suspended VMs, and members refreshing their copy of the pool database on their own.

One pool of two hosts (tests/pool_harness.py, migration=True) and one tiny guest
booted on the member, shared by the tests in order. The guest runs with acpi=off: it
never acts on the power button, so a clean shutdown of it waits for as long as it is
let, a forwarded call that is still running when it is cancelled."""
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.parse

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from guest.harness import MARK, console_text, guest, guest_vm  # noqa: E402,F401 (fixture)
from pool_harness import joined_pool  # noqa: E402
from private_libvirtd import unavailable  # noqa: E402
from sdk_failures import failure  # noqa: E402
from test_pool_migrate import _image, counts, refs, wait_for, wait_task  # noqa: E402
from test_pool_migrate import _local_sr as local_sr  # noqa: E402
from xapi_server.http.vdi_transfer import PIECE  # noqa: E402

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))
STATE = {}


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    env = {"XAPI_POOL_DB_SYNC_INTERVAL": "1"}   # members' copies refreshed every second
    with joined_pool(tmp_path_factory, 2, slot=9, migration=True, env=env) as made:
        yield made


@pytest.fixture(scope="module")
def coordinator_session(hosts):
    return hosts[0].session()


@pytest.fixture(scope="module")
def c(coordinator_session):
    return coordinator_session.xenapi


def cancelled_on(host, task) -> bool:
    """Did the member cancel its work for the coordinator's task? (its log says so: a
    member answers outside clients HOST_IS_SLAVE, its tasks are not readable)"""
    return f"run here for the coordinator's task {task}" in host.server.log()


def new_disk(c, sr, name, mib=8):
    return c.VDI.create({"SR": sr, "virtual_size": str(mib << 20), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {},
                         "name_label": name})


def plug(c, vm, vdi, device):
    return c.VBD.create({"VM": vm, "VDI": vdi, "userdevice": device, "bootable": False,
                         "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                         "qos_algorithm_type": "", "qos_algorithm_params": {}})


@pytest.fixture(scope="module")
def running(hosts, c, guest):
    """The tiny guest, counting, on the member, with a disk on the member's local SR."""
    me, there = refs(c, hosts)
    vm = guest_vm(c, guest, "leftover", mib=96, args="guestcount acpi=off")
    disk = new_disk(c, local_sr(c, there), "leftover disk")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 1M", _image(c, disk)],
                   check=True, capture_output=True)   # what a move must keep
    vbd = plug(c, vm, disk, "1")
    c.VM.start_on(vm, there, False, False)
    uuid = c.VM.get_uuid(vm)
    wait_for(lambda: MARK + "COUNT 3" in console_text(hosts[1].server.data_dir, uuid), 90,
             lambda: console_text(hosts[1].server.data_dir, uuid)[-600:])
    STATE.update(me=me, there=there)
    return {"vm": vm, "uuid": uuid, "disk": disk, "vbd": vbd}


def test_cancel_of_a_forwarded_call_reaches_the_member(hosts, c, running):
    vm, member = running["vm"], hosts[1]
    task = c.Async.VM.clean_shutdown(vm)   # the guest ignores it: the call waits there
    wait_for(lambda: c.task.get_resident_on(task) == STATE["there"], 30,
             "the task forwarded to the member")
    # the member's progress (waiting for the guest to stop) shows on this task
    wait_for(lambda: float(c.task.get_progress(task)) > 0, 30, "progress from the member")
    assert c.task.get_status(task) == "pending"
    c.task.cancel(task)
    assert wait_task(c, task) == ("cancelled", ["TASK_CANCELLED", task])
    # the member's own task for it was cancelled too, and the VM is free again there
    assert cancelled_on(member, task)
    assert c.VM.get_power_state(vm) == "Running"
    c.VM.pause(vm)   # OTHER_OPERATION_IN_PROGRESS if the shutdown still ran there
    c.VM.unpause(vm)
    assert c.VM.get_power_state(vm) == "Running"
    assert console_text(member.server.data_dir, running["uuid"]).count(MARK + "BOOTED") == 1


def _put_start(address, path, query, length):
    """A PUT whose body is still to come: the open TLS socket, headers sent."""
    raw = socket.create_connection((address, 443), timeout=30)
    conn = ssl._create_unverified_context().wrap_socket(raw, server_hostname=address)
    conn.sendall((f"PUT {path}?{query} HTTP/1.1\r\nHost: {address}\r\n"
                  f"Content-Length: {length}\r\n\r\n").encode())
    return conn


def test_cancel_of_a_redirected_upload_reaches_the_member(hosts, c, coordinator_session,
                                                         running):
    coordinator, member = hosts
    size = 3 * PIECE   # the member writes (and notes its progress) a piece at a time
    disk = new_disk(c, local_sr(c, STATE["there"]), "upload", mib=size >> 20)
    task = c.task.create("upload", "")
    query = urllib.parse.urlencode({"session_id": coordinator_session._session,
                                    "vdi": disk, "format": "raw", "task_id": task})
    first = _put_start(coordinator.address, "/import_raw_vdi", query, size)
    answer = first.recv(4096).decode("latin-1")
    first.close()
    assert answer.startswith("HTTP/1.1 302") and member.address in answer, answer
    upload = _put_start(member.address, "/import_raw_vdi", query, size)
    try:
        upload.sendall(b"\x5a" * (PIECE + (1 << 20)))
        wait_for(lambda: c.task.get_resident_on(task) == STATE["there"], 30,
                 "the member taking the upload")
        # the member's progress (a piece written) shows on the coordinator's task
        wait_for(lambda: float(c.task.get_progress(task)) > 0, 30, "progress from there")
        c.task.cancel(task)   # then nothing more comes: the member waits for the rest
        assert wait_task(c, task) == ("cancelled", ["TASK_CANCELLED", task])
        # the member dropped the upload: the connection ends (after xapi's 200 header
        # when it was sent already); a timeout here means it still waits for the rest
        upload.settimeout(30)
        try:
            while upload.recv(65536):
                pass
        except (ConnectionError, ssl.SSLError):
            pass
    finally:
        upload.close()
    assert cancelled_on(member, task)
    c.VDI.destroy(disk)



def test_vdi_pool_migrate_of_a_vm_on_a_member(hosts, c, running, tmp_path_factory):
    """The member running the VM moves its disk, live, from its local SR to a shared
    SR; the pool database follows (new VDI, the VBD naming it, the old one gone)."""
    member = hosts[1]
    shared = str(tmp_path_factory.mktemp("leftover-shared"))
    sr = c.SR.create(STATE["me"], {"path": shared}, "0", "leftover shared", "", "file",
                     "user", True, {})
    STATE["shared"] = sr
    disk, vbd, uuid = running["disk"], running["vbd"], running["uuid"]
    task = c.Async.VDI.pool_migrate(disk, sr, {})
    assert wait_task(c, task, 120)[0] == "success", c.task.get_error_info(task)
    moved = c.task.get_result(task).replace("<value>", "").replace("</value>", "")
    assert c.VDI.get_SR(moved) == sr and c.VBD.get_VDI(vbd) == moved
    assert disk not in c.VDI.get_all()
    assert _image(c, moved) in member.libvirtd.virsh("dumpxml", f"xapi-{uuid}")
    assert subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-U", "-c",
                           "read -P 0x5a 1M 1M", _image(c, moved)],
                          capture_output=True).returncode == 0
    assert c.VM.get_power_state(running["vm"]) == "Running"
    assert console_text(member.server.data_dir, uuid).count(MARK + "BOOTED") == 1
    running["disk"] = moved


def test_members_copy_of_the_database_is_refreshed(hosts, c):
    """Without pool.sync_database, a change on the coordinator reaches the member's
    copy (its emergency start point) within the interval (1 s here, 300 s default)."""
    member = hosts[1]
    label = f"refreshed {time.monotonic()}"
    c.pool.set_name_description(c.pool.get_all()[0], label)
    copy = os.path.join(member.server.data_dir, "pool-backup.db")

    def in_copy():
        try:
            with sqlite3.connect(f"file:{copy}?mode=ro", uri=True) as db:
                return any(label in line for line in db.iterdump())
        except sqlite3.Error:   # not there yet, or replaced while read
            return False
    wait_for(in_copy, 30, "the change in the member's copy")


def test_migrate_send_of_a_suspended_vm(hosts, c, running):
    """Suspended on the member, the VM moves to the coordinator with its disk copied
    to the coordinator's local SR; it resumes there where it stopped."""
    coordinator, member = hosts
    me, vm, uuid = STATE["me"], running["vm"], running["uuid"]
    c.VM.suspend(vm)
    assert c.VM.get_scheduled_to_be_resident_on(vm) == STATE["there"]   # memory there
    assert c.VM.get_power_state(vm) == "Suspended"
    network = c.PIF.get_network(c.host.get_PIFs(me)[0])
    target = local_sr(c, me)
    c.VM.migrate_send(vm, c.host.migrate_receive(me, network, {}), False,
                      {running["disk"]: target}, {}, {}, {}, {})
    assert c.VM.get_power_state(vm) == "Suspended"
    copy = c.VBD.get_VDI(running["vbd"])
    assert c.VDI.get_SR(copy) == target and running["disk"] not in c.VDI.get_all()
    # its memory is the coordinator's now (libvirt's managed save there), not the member's
    assert "yes" in coordinator.libvirtd.virsh("dominfo", f"xapi-{uuid}").split(
        "Managed save:")[1].split("\n")[0]
    assert uuid not in member.libvirtd.virsh("list", "--all", "--name")
    last = max(counts(console_text(member.server.data_dir, uuid)))   # all it did there
    c.VM.resume(vm, False, False)
    assert (c.VM.get_power_state(vm), c.VM.get_resident_on(vm)) == ("Running", me)
    wait_for(lambda: max(counts(console_text(coordinator.server.data_dir, uuid)) or [0])
             > last + 2, 30, "the counter going on on the coordinator")
    after = counts(console_text(coordinator.server.data_dir, uuid))
    assert after[0] in (last, last + 1), (last, after[:5])   # where it stopped, not from 0
    assert after == list(range(after[0], after[0] + len(after)))
    assert MARK + "BOOTED" not in console_text(coordinator.server.data_dir, uuid)
    assert subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-U", "-c",
                           "read -P 0x5a 1M 1M", _image(c, copy)],
                          capture_output=True).returncode == 0
    c.VM.hard_shutdown(vm)


def test_migrate_send_of_a_halted_vm(hosts, c, guest):
    """A halted VM's disk on the member's local SR goes to the coordinator's; the VM
    stays halted, its affinity the coordinator, no domain left running anywhere."""
    coordinator = hosts[0]
    me, there = STATE["me"], STATE["there"]
    vm = guest_vm(c, guest, "parked", mib=96)
    disk = new_disk(c, local_sr(c, there), "parked disk")
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x3c 2M 1M", _image(c, disk)],
                   check=True, capture_output=True)
    vbd = plug(c, vm, disk, "1")
    network = c.PIF.get_network(c.host.get_PIFs(me)[0])
    dest = c.host.migrate_receive(me, network, {})
    assert failure(c.VM.migrate_send, vm, dest, False, {}, {}, {}, {}, {}) == \
        ["VDI_NOT_IN_MAP", disk]
    c.VM.migrate_send(vm, dest, False, {disk: local_sr(c, me)}, {}, {}, {}, {})
    assert c.VM.get_power_state(vm) == "Halted"
    copy = c.VBD.get_VDI(vbd)
    assert c.VDI.get_SR(copy) == local_sr(c, me) and disk not in c.VDI.get_all()
    assert c.VM.get_affinity(vm) == me
    assert subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-c", "read -P 0x3c 2M 1M",
                           _image(c, copy)], capture_output=True).returncode == 0
    uuid = c.VM.get_uuid(vm)
    for host in hosts:
        assert uuid not in host.libvirtd.virsh("list", "--name")
    assert MARK + "BOOTED" not in console_text(coordinator.server.data_dir, uuid)
    c.VM.destroy(vm)
