"""Cross-pool live migration (issue 17, xapi's migrate_send to another pool): two
standalone hosts of tests/pool_harness.py (each its own network namespace, libvirtd
and server: two pools of one). Their libvirt daemons trust each other's
certificates (one test CA), as an administrator sets up two pools that migrate
between each other.

The tiny guest, counting on its serial console, with a disk on the first pool's
local SR, goes to the second pool by VM.migrate_send with the map the second pool's
host.migrate_receive gave, and comes back by `xe vm-migrate remote-master=...`: it
keeps counting without booting again, its disk's bytes arrive, its records are in
the destination pool and gone from the source. Refusals (an SR not in the other
pool, a disk without an SR, bad credentials) and a cancel while the memory moves
leave the VM running where it was and nothing made in the other pool, as does a
move between daemons that do not trust each other's certificate authority.

The tests run in order and share the two pools and the guest."""
import http.client
import os
import re
import shutil
import ssl
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from guest.harness import MARK, console_text, guest, guest_vm  # noqa: E402,F401 (fixture)
from pool_harness import pool_hosts  # noqa: E402
import pool_tls  # noqa: E402  (its CA class, imported as a module: pytest would collect it)
from private_libvirtd import unavailable  # noqa: E402
from sdk_failures import failure  # noqa: E402
from serverproc import ROOT_PASSWORD  # noqa: E402
from test_pool_migrate import (UNLIMITED_MIB_S, _image, _local_sr, _qemu_io,  # noqa: E402
                               counts, patterned_disk, wait_for, xe)

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))
STATE = {}


@pytest.fixture(scope="module")
def pools(tmp_path_factory):
    with pool_hosts(tmp_path_factory, 2, slot=6, migration=True) as made:
        yield made


@pytest.fixture(scope="module")
def a(pools):
    return pools[0].session().xenapi


@pytest.fixture(scope="module")
def b(pools):
    return pools[1].session().xenapi


def _only_host(x):
    (host,) = x.host.get_all()
    return host


def _dest(b):
    host = _only_host(b)
    return b.host.migrate_receive(host, b.PIF.get_network(b.host.get_PIFs(host)[0]), {})


def _snapshot_of(x):
    """What a refused or undone move must leave as it was."""
    return sorted(x.VM.get_all()), sorted(x.VDI.get_all()), sorted(x.VBD.get_all())


def test_refusals_leave_both_pools_as_they_were(pools, a, b, guest, tmp_path):
    source = pools[0]
    vm = guest_vm(a, guest, "traveller", mib=96, args="guestcount")
    disk = patterned_disk(a, vm, _local_sr(a, _only_host(a)), "traveller disk")
    ours_net = a.network.create({"name_label": "cross here", "name_description": "",
                                 "MTU": "1500", "other_config": {}})
    vif = a.VIF.create({"VM": vm, "network": ours_net, "device": "0", "MAC": "",
                        "MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
                        "qos_algorithm_params": {}})
    their_net = b.network.create({"name_label": "cross there", "name_description": "",
                                  "MTU": "1500", "other_config": {}})
    a.VM.start(vm, False, False)
    uuid = a.VM.get_uuid(vm)
    STATE.update(vm=vm, uuid=uuid, disk=disk, vif=vif, net=their_net, home_net=ours_net)
    wait_for(lambda: len(counts(console_text(source.server.data_dir, uuid))) > 2, 90,
             "the guest counting in the first pool")
    before = _snapshot_of(b)
    dest, their_sr = _dest(b), _local_sr(b, _only_host(b))
    assert dest["host"] == _only_host(b) and dest["session_id"]
    # a disk without an SR, an SR of this pool rather than the other's
    assert failure(a.VM.assert_can_migrate, vm, dest, True, {}, {}, {}, {}) == \
        ["VDI_NOT_IN_MAP", disk]
    ours = _local_sr(a, _only_host(a))
    assert failure(a.VM.migrate_send, vm, dest, True, {disk: ours}, {vif: their_net}, {},
                   {}, {}) == ["HANDLE_INVALID", "SR", ours]
    # a VIF without a network there, a network of this pool
    assert failure(a.VM.assert_can_migrate, vm, dest, True, {disk: their_sr}, {}, {},
                   {}) == ["VIF_NOT_IN_MAP", vif]
    assert failure(a.VM.assert_can_migrate, vm, dest, True, {disk: their_sr},
                   {vif: ours_net}, {}, {}) == ["HANDLE_INVALID", "network", ours_net]
    a.VM.assert_can_migrate(vm, dest, True, {disk: their_sr}, {vif: their_net}, {}, {})
    # a coordinator there that does not answer (the bridge's address, a closed port)
    nobody = pools[0].address.rsplit(".", 1)[0] + ".1"
    assert failure(a.VM.assert_can_migrate, vm, {**dest, "master": f"http://{nobody}:1"},
                   True, {disk: their_sr}, {vif: their_net}, {}, {}) == \
        ["CANNOT_CONTACT_HOST", nobody]
    # xe with a wrong password for the other pool
    r = xe(tmp_path, source, "vm-migrate", f"uuid={uuid}",
           f"remote-master={pools[1].address}", "remote-username=root",
           "remote-password=wrong", f"host={b.host.get_uuid(_only_host(b))}",
           f"destination-sr-uuid={b.SR.get_uuid(their_sr)}",
           f"vif:{a.VIF.get_uuid(vif)}={b.network.get_uuid(their_net)}")
    assert r.returncode != 0 and "Authentication failed" in r.stderr, r   # xe's text
    assert _snapshot_of(b) == before
    assert (a.VM.get_power_state(vm), a.VM.get_resident_on(vm)) == \
        ("Running", _only_host(a))


def _http(host, method: str, path: str, body: bytes | None = None) -> bytes:
    conn = http.client.HTTPSConnection(host.address, 443, timeout=60,
                                       context=ssl._create_unverified_context())
    try:
        conn.request(method, path, body)
        return conn.getresponse().read()
    finally:
        conn.close()


def test_a_running_vm_of_the_same_uuid_refuses_the_import(pools, a):
    """What keeps a pool from taking a VM it runs already: the metadata import a
    cross-pool move makes (restore: the same uuid), dry run or not (xapi import.ml)."""
    source = pools[0]
    session = source.session()
    sid, x, vm = session._session, session.xenapi, STATE["vm"]
    archive = _http(source, "GET", f"/export_metadata?session_id={sid}&uuid={STATE['uuid']}")
    before = _snapshot_of(x)
    for dry_run in ("true", "false"):
        task = x.task.create("same uuid", "")
        _http(source, "PUT", f"/import_metadata?session_id={sid}&task_id={task}"
                             f"&restore=true&live=true&dry_run={dry_run}", archive)
        wait_for(lambda: x.task.get_status(task) != "pending", 30, "the import")
        assert x.task.get_error_info(task) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert _snapshot_of(x) == before


def test_cancelled_move_is_undone_in_the_other_pool(pools, a, b):
    source, target = pools
    vm, uuid, disk = STATE["vm"], STATE["uuid"], STATE["disk"]
    before = _snapshot_of(b)
    source.libvirtd.virsh("migrate-setspeed", uuid, "1")   # still moving when cancelled
    try:
        task = a.Async.VM.migrate_send(vm, _dest(b), True, {disk: _local_sr(b, _only_host(b))},
                                       {STATE["vif"]: STATE["net"]}, {}, {}, {})
        wait_for(lambda: uuid in target.libvirtd.virsh("list", "--all", "--name", check=False)
                 or a.task.get_status(task) != "pending", 60, "the domain arriving")
        assert a.task.get_status(task) == "pending", a.task.get_error_info(task)
        a.task.cancel(task)
        wait_for(lambda: a.task.get_status(task) not in ("pending", "cancelling"), 60,
                 "the cancel")
    finally:
        source.libvirtd.virsh("migrate-setspeed", uuid, str(UNLIMITED_MIB_S))
    assert (a.task.get_status(task), a.task.get_error_info(task)[0]) == \
        ("cancelled", "TASK_CANCELLED")
    assert _snapshot_of(b) == before   # the imported VM and its disk are gone again
    assert uuid not in target.libvirtd.virsh("list", "--all", "--name")
    assert (a.VM.get_power_state(vm), a.VM.get_resident_on(vm)) == ("Running", _only_host(a))
    last = max(counts(console_text(source.server.data_dir, uuid)))
    wait_for(lambda: max(counts(console_text(source.server.data_dir, uuid))) > last + 2, 30,
             "the guest still counting in the first pool")


def test_live_move_to_the_other_pool(pools, a, b):
    source, target = pools
    vm, uuid, disk = STATE["vm"], STATE["uuid"], STATE["disk"]
    their_sr, old_image = _local_sr(b, _only_host(b)), _image(a, disk)
    last = max(counts(console_text(source.server.data_dir, uuid)))
    mac = a.VIF.get_MAC(STATE["vif"])
    moved = a.VM.migrate_send(vm, _dest(b), True, {disk: their_sr},
                              {STATE["vif"]: STATE["net"]}, {}, {}, {})
    # the VM is the other pool's now, running there, under its own uuid
    assert b.VM.get_uuid(moved) == uuid
    assert (b.VM.get_power_state(moved), b.VM.get_resident_on(moved)) == \
        ("Running", _only_host(b))
    (vbd,) = [v for v in b.VM.get_VBDs(moved) if b.VBD.get_userdevice(v) == "1"]
    copy = b.VBD.get_VDI(vbd)
    assert b.VDI.get_SR(copy) == their_sr
    assert _qemu_io(_image(b, copy), "read -P 0x5a 1M 1M").returncode == 0
    assert uuid in target.libvirtd.virsh("list", "--name")
    (vif,) = b.VM.get_VIFs(moved)   # its NIC, same MAC, on the network vif_map named
    assert (b.VIF.get_network(vif), b.VIF.get_MAC(vif)) == (STATE["net"], mac)
    assert f"<source bridge='{b.network.get_bridge(STATE['net'])}'/>" in \
        target.libvirtd.virsh("dumpxml", f"xapi-{uuid}")
    # and gone from the first pool, with its disk
    assert failure(a.VM.get_by_uuid, uuid)[0] == "UUID_INVALID"
    assert disk not in a.VDI.get_all() and not os.path.exists(old_image)
    assert uuid not in source.libvirtd.virsh("list", "--all", "--name")
    wait_for(lambda: len(counts(console_text(target.server.data_dir, uuid))) > 2, 30,
             "the counter going on in the other pool")
    text = console_text(target.server.data_dir, uuid)
    after = counts(text[:text.rfind("\n") + 1])   # whole lines: the last may be half written
    assert after == list(range(after[0], after[0] + len(after)))
    assert after[0] >= last   # counting on from where it was, not from a new boot
    assert MARK + "BOOTED" not in console_text(target.server.data_dir, uuid)
    STATE.update(moved=moved, copy=copy)


def test_back_with_xe(pools, a, b, tmp_path):
    source, target = pools
    uuid, moved = STATE["uuid"], STATE["moved"]
    home = _local_sr(a, _only_host(a))
    last = max(counts(console_text(target.server.data_dir, uuid)))
    r = xe(tmp_path, target, "vm-migrate", f"uuid={uuid}",
           f"remote-master={source.address}", "remote-username=root",
           f"remote-password={ROOT_PASSWORD}", f"host={a.host.get_uuid(_only_host(a))}",
           f"destination-sr-uuid={a.SR.get_uuid(home)}",
           f"vif:{b.VIF.get_uuid(b.VM.get_VIFs(moved)[0])}="
           f"{a.network.get_uuid(STATE['home_net'])}")
    assert r.returncode == 0, r.stdout + r.stderr
    vm = a.VM.get_by_uuid(uuid)
    assert (a.VM.get_power_state(vm), a.VM.get_resident_on(vm)) == ("Running", _only_host(a))
    assert moved not in b.VM.get_all() and STATE["copy"] not in b.VDI.get_all()
    (vbd,) = [v for v in a.VM.get_VBDs(vm) if a.VBD.get_userdevice(v) == "1"]
    assert _qemu_io(_image(a, a.VBD.get_VDI(vbd)), "read -P 0x5a 1M 1M").returncode == 0
    wait_for(lambda: max(counts(console_text(source.server.data_dir, uuid))) > last + 2, 30,
             "the counter going on back in the first pool")
    assert MARK + "BOOTED" not in console_text(source.server.data_dir, uuid)   # a new log
    deadline = time.monotonic() + 1
    while time.monotonic() < deadline:   # stays there: no sync of either pool undoes it
        assert a.VM.get_resident_on(vm) == _only_host(a)
        time.sleep(0.2)


def test_daemons_that_do_not_trust_each_other(pools, a, b, tmp_path_factory):
    """The second pool's libvirtd gets an identity of another CA (two pools whose
    administrators did not exchange CAs): libvirt's TLS refuses the move, the VM runs
    on where it was and nothing is left in the other pool."""
    source, target = pools
    uuid = STATE["uuid"]
    vm = a.VM.get_by_uuid(uuid)
    conf = open(os.path.join(target.libvirtd.root, "etc", "libvirtd.conf")).read()
    pki = os.path.dirname(re.search(r'ca_file = "([^"]+)"', conf).group(1))
    other = pool_tls.TestCA(str(tmp_path_factory.mktemp("other-pool-ca")))
    fresh = other.host_dir(target.name, target.address)
    for name in os.listdir(fresh):
        if name.endswith(".pem"):
            shutil.copyfile(os.path.join(fresh, name), os.path.join(pki, name))
    target.libvirtd.stop()
    target.libvirtd.start()
    before = _snapshot_of(b)
    (vbd,) = [v for v in a.VM.get_VBDs(vm) if a.VBD.get_userdevice(v) == "1"]
    error = failure(a.VM.migrate_send, vm, _dest(b), True,
                    {a.VBD.get_VDI(vbd): _local_sr(b, _only_host(b))},
                    {a.VM.get_VIFs(vm)[0]: STATE["net"]}, {}, {}, {})
    assert error[0] == "VM_MIGRATE_FAILED" and "certificate" in error[4], error
    assert _snapshot_of(b) == before
    assert (a.VM.get_power_state(vm), a.VM.get_resident_on(vm)) == ("Running", _only_host(a))
    last = max(counts(console_text(source.server.data_dir, uuid)))
    wait_for(lambda: max(counts(console_text(source.server.data_dir, uuid))) > last + 2, 30,
             "the guest still counting in the first pool")
    a.VM.hard_shutdown(vm)
