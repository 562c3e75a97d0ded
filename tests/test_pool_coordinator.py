"""Changing the pool's coordinator (issue 17): three simulated hosts
(tests/pool_harness.py), the pool database in PostgreSQL every host reaches.

A planned change (pool.designate_new_master, xe pool-designate-new-master): afterwards a
client following HOST_IS_SLAVE from any host reaches the new coordinator, every record
is there, a VM starts through it (on it, and on the old coordinator, now a member), and
event.from tokens carry on above the ones handed out before.

The tests run in order and share the pool: each leaves it as the next expects."""
import json
import os
import sqlite3
import subprocess
import sys
import time
import uuid as uuidlib

import pytest
import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from guest.harness import MARK, console_text, guest, guest_vm, wait_for  # noqa: E402,F401
from pg_server import cluster  # noqa: E402
from pool_harness import login_fails_with, pool_hosts  # noqa: E402
from pool_internal import internal  # noqa: E402
from private_libvirtd import unavailable  # noqa: E402
from serverproc import ROOT_PASSWORD  # noqa: E402
from xapi_server.datamodel import CLASSES  # noqa: E402
from xapi_server.store.codec import row_values, stored_fields  # noqa: E402

XE = os.path.join(os.path.dirname(sys.executable), "xe")
pytestmark = pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))


def join(host, coordinator):
    before = host.restarts()
    host.session().xenapi.pool.join(coordinator.address, "root", ROOT_PASSWORD)
    host.wait_restarted(before=before)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with pool_hosts(tmp_path_factory, 3) as made:   # the first on PostgreSQL
        yield made


def test_join_needs_a_postgresql_coordinator(hosts):
    """A host on its own SQLite file coordinates no pool: no other host could take it
    over. The pool the next tests share: both join the first host."""
    j = hosts[2].session().xenapi
    assert failure(j.pool.join, hosts[1].address, "root", ROOT_PASSWORD)[:1] == \
        ["OPERATION_NOT_ALLOWED"]
    assert len(j.host.get_all()) == 1
    join(hosts[1], hosts[0])
    join(hosts[2], hosts[0])
    # a member knows where the pool database is, for an emergency
    assert role_of(hosts[2])["pool_database"].startswith("postgresql://")


def failure(call, *args) -> list:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return info.value.details


def following(hosts, host) -> XenAPI.Session:
    """What a client does with HOST_IS_SLAVE: log in at the address it names."""
    try:
        return host.session()
    except XenAPI.Failure as exc:
        if exc.details[0] != "HOST_IS_SLAVE":
            raise
        (there,) = [h for h in hosts if h.address == exc.details[1]]
        return there.session()


def by_address(x, address) -> str:
    (ref,) = [h for h in x.host.get_all() if x.host.get_address(h) == address]
    return ref


def live(x, host_ref) -> bool:
    return x.host_metrics.get_live(x.host.get_metrics(host_ref))


def generation(token: str) -> int:
    return int(token.split(",")[0])


def xe(home, host, *argv):
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    env.pop("XE_EXTRA_ARGS", None)
    return subprocess.run([XE, "-s", host.address, "-pw", ROOT_PASSWORD, *argv], env=env,
                          capture_output=True, text=True, timeout=120)


def joiner_record(api_minor: int, product_version: str) -> dict:
    """The records a joining host sends (pool_records.encode's form): a host only,
    reporting these versions."""
    ref = f"OpaqueRef:{uuidlib.uuid4()}"
    rec = {f.name: f.default_value() for f in CLASSES["host"].fields}
    rec.update(uuid=str(uuidlib.uuid4()), API_version_major=2, API_version_minor=api_minor,
               software_version={"product_version": product_version})
    return {"host": {ref: row_values("host", ref, rec)[1:]}}


def test_join_refuses_other_versions(hosts):
    """The coordinator's checks of a joiner's versions (xapi's pre_join_checks): another
    API version is refused even by join_force; another software version only by join."""
    coordinator = hosts[0]
    c = coordinator.session().xenapi
    me = c.pool.get_master(c.pool.get_all()[0])
    major, minor = (int(v) for v in (c.host.get_API_version_major(me),
                                     c.host.get_API_version_minor(me)))
    mine = c.host.get_software_version(me)["product_version"]
    creds = {"username": "root", "password": ROOT_PASSWORD}
    for force in (False, True):
        answer = internal(coordinator, "join", {**creds, "force": force,
                                                "objects": joiner_record(minor - 1, mine)})
        assert answer["error"] == ["POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION",
                                   f"{major}.{minor - 1}", f"{major}.{minor}"]
    other = joiner_record(minor, mine + ".1")
    answer = internal(coordinator, "join", {**creds, "force": False, "objects": other})
    assert answer["error"] == ["POOL_HOSTS_NOT_HOMOGENEOUS", "Software version differs"]
    assert len(c.host.get_all()) == 3
    answer = internal(coordinator, "join", {**creds, "force": True, "objects": other})
    assert "error" not in answer and answer["value"]["secret"]   # join_force: let in
    (joined,) = [h for h in c.host.get_all() if c.host.get_uuid(h) == answer_uuid(other)]
    c.host.destroy(joined)   # it never sends a heartbeat: not live
    assert len(c.host.get_all()) == 3


def answer_uuid(objects) -> str:
    (texts,) = objects["host"].values()
    fields = [f.name for f in stored_fields(CLASSES["host"])]
    return json.loads(texts[fields.index("uuid")])


def test_designate_new_master(hosts, guest, tmp_path):
    old, new, other = hosts
    c = old.session().xenapi
    assert len(c.host.get_all()) == 3
    pool = c.pool.get_all()[0]
    assert failure(c.pool.designate_new_master, "OpaqueRef:nope")[0] == "HANDLE_INVALID"
    c.pool.designate_new_master(c.pool.get_master(pool))   # already it: nothing happens
    assert c.pool.get_master(pool) == by_address(c, old.address)
    vm = guest_vm(c, guest, "moves with the pool", mib=96)
    vm_uuid = c.VM.get_uuid(vm)
    records = {cls: {getattr(c, cls).get_uuid(r) for r in getattr(c, cls).get_all()}
               for cls in ("host", "VM", "SR", "VDI", "PIF", "network")}
    token = getattr(c.event, "from")(["VM", "pool"], "", 0.1)["token"]
    new_uuid = c.host.get_uuid(by_address(c, new.address))
    for address in (new.address, other.address):   # designating needs them answering
        wait_for(lambda: live(c, by_address(c, address)), 30, f"{address} live")
    counts = [h.restarts() for h in hosts]

    r = xe(tmp_path, old, "pool-designate-new-master", f"host-uuid={new_uuid}")
    assert r.returncode == 0, r.stderr + old.server.log()
    for host, before in zip(hosts, counts):
        host.wait_restarted(before=before)

    # every host sends clients to the new coordinator; the SDK following it gets there
    for host in (old, other):
        assert login_fails_with(host) == ["HOST_IS_SLAVE", new.address]
    n = following(hosts, old).xenapi
    assert n.host.get_uuid(n.pool.get_master(n.pool.get_all()[0])) == new_uuid
    assert {cls: {getattr(n, cls).get_uuid(r) for r in getattr(n, cls).get_all()}
            for cls in records} == records
    for address in (old.address, other.address):   # its members, by their heartbeats
        wait_for(lambda: live(n, by_address(n, address)), 20, f"{address} live")
    # event.from: the old token still works and the new ones are above it
    changes = getattr(n.event, "from")(["VM", "pool"], token, 5.0)
    assert generation(changes["token"]) > generation(token)
    assert "pool" in {e["class"] for e in changes["events"]}   # its master changed

    # a VM started through the new coordinator runs on it, then on the old coordinator
    vm = n.VM.get_by_uuid(vm_uuid)
    n.VM.start(vm, False, False)
    assert n.VM.get_resident_on(vm) == n.pool.get_master(n.pool.get_all()[0])
    assert vm_uuid in new.libvirtd.virsh("list", "--name")
    wait_for(lambda: MARK + "BOOTED" in console_text(new.server.data_dir, vm_uuid), 90,
             "the guest booting on the new coordinator")
    n.VM.hard_shutdown(vm)
    n.VM.start_on(vm, by_address(n, old.address), False, False)
    assert vm_uuid in old.libvirtd.virsh("list", "--name")
    n.VM.hard_shutdown(vm)
    assert vm_uuid not in old.libvirtd.virsh("list", "--name")
    n.VM.destroy(vm)


def local_session(host) -> XenAPI.Session:
    """The emergency login a member takes (session.slave_local_login_with_password)."""
    s = XenAPI.Session(f"https://{host.address}", ignore_ssl=True)
    s.slave_local_login_with_password("root", ROOT_PASSWORD)
    return s


def role_of(host) -> dict:
    with open(os.path.join(host.server.data_dir, "pool.conf")) as f:
        return json.load(f)


def test_secret_rotated_and_copies_synced(hosts):
    old, coordinator, other = hosts   # as the test above left the pool
    n = coordinator.session().xenapi
    for host in (old, other):
        wait_for(lambda: live(n, by_address(n, host.address)), 30, f"{host.name} live")
    me = n.pool.get_master(n.pool.get_all()[0])
    assert failure(n.host.declare_dead, me) == ["HOST_IS_LIVE", me]
    member = by_address(n, other.address)
    assert failure(n.host.declare_dead, member) == ["HOST_IS_LIVE", member]

    n.pool.sync_database()
    for host in (old, other):   # each member's emergency copy: every host in it
        copy = os.path.join(host.server.data_dir, "pool-backup.db")
        with sqlite3.connect(copy) as db:
            assert db.execute('SELECT count(*) FROM "host"').fetchone()[0] == 3

    secret = role_of(other)["secret"]
    n.pool.rotate_secret()
    rotated = role_of(other)["secret"]
    assert rotated != secret and role_of(old)["secret"] == rotated
    for host, op in ((coordinator, "heartbeat"), (other, "ping")):   # the old one: refused
        assert internal(host, op, {"host_uuid": "x"}, secret)["error"][0] == \
            "SESSION_AUTHENTICATION_FAILED"
    assert internal(coordinator, "heartbeat", {"host_uuid": "x"}, rotated)["error"] == \
        ["HOST_UNKNOWN_TO_MASTER", "x"]   # the new one is the pool's
    time.sleep(5)   # more than host_assumed_dead_interval: heartbeats carry the new one
    assert live(n, member) and live(n, by_address(n, old.address))


def test_emergency_transition_recover_and_declare_dead(hosts, guest, tmp_path):
    survivor, dead, other = hosts   # hosts[1] coordinates; it is about to die
    n = dead.session().xenapi
    vm = guest_vm(n, guest, "on the host that dies", mib=96)
    n.VM.start_on(vm, n.pool.get_master(n.pool.get_all()[0]), False, False)
    dead_ref = n.VM.get_resident_on(vm)
    token = getattr(n.event, "from")(["VM"], "", 0.1)["token"]
    # a member cannot take over while the coordinator holds the pool database
    m = local_session(survivor).xenapi
    assert failure(m.pool.emergency_transition_to_master)[0] == "OPERATION_NOT_ALLOWED"
    assert login_fails_with(survivor) == ["HOST_IS_SLAVE", dead.address]

    dead.server.kill()
    before = survivor.restarts()
    r = xe(tmp_path, survivor, "pool-emergency-transition-to-master")   # its local login
    assert r.returncode == 0, r.stderr
    survivor.wait_restarted(before=before)
    s = survivor.session().xenapi
    assert s.pool.get_master(s.pool.get_all()[0]) == by_address(s, survivor.address)
    assert s.VM.get_resident_on(vm) == dead_ref   # the pool database, as it was left
    assert generation(getattr(s.event, "from")(["VM"], token, 2.0)["token"]) > \
        generation(token)

    # the other member still calls the dead host until it is recovered
    assert login_fails_with(other) == ["HOST_IS_SLAVE", dead.address]
    before = other.restarts()
    assert s.pool.recover_slaves() == [by_address(s, other.address)]
    other.wait_restarted(before=before)
    assert login_fails_with(other) == ["HOST_IS_SLAVE", survivor.address]
    wait_for(lambda: live(s, by_address(s, other.address)), 30, "the member live")
    # emergency_reset_master on a member: the coordinator must answer and know it
    o = local_session(other).xenapi
    assert failure(o.pool.emergency_reset_master, dead.address) == \
        ["CANNOT_CONTACT_HOST", dead.address]

    wait_for(lambda: not live(s, dead_ref), 30, "the dead host not live")
    # a planned change needs every member: refused, nothing changed
    assert failure(s.pool.designate_new_master, by_address(s, other.address)) == \
        ["HOST_OFFLINE", dead_ref]
    assert s.pool.get_master(s.pool.get_all()[0]) == by_address(s, survivor.address)
    assert login_fails_with(other) == ["HOST_IS_SLAVE", survivor.address]
    s.host.declare_dead(dead_ref)
    assert s.VM.get_power_state(vm) == "Halted"
    assert s.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    assert not s.host.get_enabled(dead_ref)
    s.VM.destroy(vm)


def test_emergency_from_the_members_copy(hosts):
    """The pool database out of reach as well as the coordinator: a member becomes the
    coordinator on its own copy (the last pool.sync_database)."""
    coordinator, gone, member = hosts   # hosts[0] coordinates since the test above
    c = coordinator.session().xenapi
    dead = by_address(c, gone.address)   # declared dead above: its error, after the others
    assert failure(c.pool.sync_database) == ["HOST_OFFLINE", dead]
    uuids = {c.host.get_uuid(h) for h in c.host.get_all()}
    pg = cluster()
    try:
        coordinator.server.kill()
        pg.stop()
        before = member.restarts()
        local_session(member).xenapi.pool.emergency_transition_to_master()
        member.wait_restarted(before=before)
        m = member.session().xenapi
        assert m.pool.get_master(m.pool.get_all()[0]) == by_address(m, member.address)
        assert {m.host.get_uuid(h) for h in m.host.get_all()} == uuids
        assert role_of(member)["pool_database"].endswith("pool-backup.db")
    finally:
        cluster()   # started again for whatever runs next in this process
