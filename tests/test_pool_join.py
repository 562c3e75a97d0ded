"""Pools, first slice (issue 17): three simulated hosts (tests/pool_harness.py: own
network namespace, own libvirtd, own server on port 443; the coordinator's records in
PostgreSQL). Join with xapi's refusals, HOST_IS_SLAVE from a member to the official
SDK, the pool secret guarding the hosts' internal calls, heartbeats making a silent
member not live, eject (API and xe) with the host back standalone and clean, rejoin,
host.destroy of a dead member, xe host-list showing every member.

The tests run in order and share the pool: each leaves it as the next expects."""
import os
import subprocess
import sys
import time

import pytest
import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from guest.harness import MARK, console_text, guest, guest_vm  # noqa: E402,F401 (fixture)
from pool_harness import login_fails_with, pool_hosts  # noqa: E402
from pool_internal import internal  # noqa: E402
from private_libvirtd import unavailable  # noqa: E402
from serverproc import ROOT_PASSWORD  # noqa: E402

XE = os.path.join(os.path.dirname(sys.executable), "xe")
MEMBER_DISK = {}   # the uuid of a disk the member made before it joined (test_join)

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    with pool_hosts(tmp_path_factory, 3) as made:
        yield made


def failure(call, *args) -> list:
    with pytest.raises(XenAPI.Failure) as info:
        call(*args)
    return info.value.details


def xe(home, host, *argv, stdin=""):
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home)}
    env.pop("XE_EXTRA_ARGS", None)
    return subprocess.run([XE, "-s", host.address, "-pw", ROOT_PASSWORD, *argv], env=env,
                          capture_output=True, text=True, input=stdin, timeout=90)


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.2)
    return time.monotonic() - (deadline - timeout)


def live(x, host_ref) -> bool:
    return x.host_metrics.get_live(x.host.get_metrics(host_ref))


def test_join_refusals(hosts):
    coordinator, joiner = hosts[0], hosts[1]
    x = joiner.session().xenapi
    # nothing listens on the bridge's own address
    assert failure(x.pool.join, hosts[0].address.rsplit(".", 1)[0] + ".1", "root",
                   ROOT_PASSWORD) == ["POOL_JOINING_HOST_CONNECTION_FAILED"]
    assert failure(x.pool.join, coordinator.address, "root", "wrong")[0] == \
        "SESSION_AUTHENTICATION_FAILED"
    assert failure(x.pool.join, joiner.address, "root", ROOT_PASSWORD) == \
        ["OPERATION_NOT_ALLOWED", "Host cannot become slave of itself"]
    assert len(x.host.get_all()) == 1   # nothing half-done
    c = coordinator.session().xenapi
    assert len(c.host.get_all()) == 1


def test_join(hosts, tmp_path):
    coordinator, joiner = hosts[0], hosts[1]
    j = joiner.session().xenapi
    uuid = j.host.get_uuid(j.host.get_all()[0])
    srs = {j.SR.get_uuid(sr) for sr in j.SR.get_all()}
    pifs = {j.PIF.get_uuid(p) for p in j.PIF.get_all()}
    disk = j.VDI.create({"SR": j.pool.get_default_SR(j.pool.get_all()[0]),
                         "virtual_size": str(16 << 20), "type": "user", "sharable": False,
                         "read_only": False, "other_config": {}, "name_label": "local"})
    MEMBER_DISK["uuid"] = j.VDI.get_uuid(disk)
    j.pool.join(coordinator.address, "root", ROOT_PASSWORD)
    joiner.wait_restarted()
    # the member sends outside clients to the coordinator, the SDK included
    assert login_fails_with(joiner) == ["HOST_IS_SLAVE", coordinator.address]
    c = coordinator.session().xenapi
    member = c.host.get_by_uuid(uuid)
    assert c.host.get_address(member) == joiner.address
    assert {c.SR.get_uuid(sr) for sr in c.SR.get_all()} >= srs
    assert {c.PIF.get_uuid(p) for p in c.host.get_PIFs(member)} == pifs
    for sr in srs:   # its local SRs, plugged on it
        assert [c.PBD.get_host(p) for p in c.SR.get_PBDs(c.SR.get_by_uuid(sr))] == [member]
    assert live(c, member)
    assert c.VDI.get_SR(c.VDI.get_by_uuid(MEMBER_DISK["uuid"])) in \
        [c.PBD.get_SR(p) for p in c.host.get_PBDs(member)]
    # xe on the coordinator lists both hosts; xe on the member is sent away
    r = xe(tmp_path, coordinator, "host-list", "params=uuid", "--minimal")
    assert r.returncode == 0, r.stderr
    assert set(r.stdout.strip().split(",")) == \
        {c.host.get_uuid(h) for h in c.host.get_all()} and uuid in r.stdout
    r = xe(tmp_path, joiner, "host-list")
    assert r.returncode != 0 and f"Master IP address: {coordinator.address}" in r.stderr


def test_internal_calls_need_the_secret(hosts):
    coordinator, member = hosts[0], hosts[1]
    assert internal(coordinator, "heartbeat", {"host_uuid": "x"})["error"][0] == \
        "SESSION_AUTHENTICATION_FAILED"
    assert internal(coordinator, "heartbeat", {"host_uuid": "x"}, "0/1/2")["error"][0] == \
        "SESSION_AUTHENTICATION_FAILED"
    assert internal(member, "eject", {}, "0/1/2")["error"][0] == \
        "SESSION_AUTHENTICATION_FAILED"
    assert internal(member, "heartbeat", {})["error"][0] == "MESSAGE_METHOD_UNKNOWN"
    # a host asked to join a member is sent to the coordinator, as a login there is
    assert internal(member, "join", {})["error"] == ["HOST_IS_SLAVE", coordinator.address]


def test_vm_placed_and_run_on_the_member(hosts, guest):
    """A VM whose disk is on the member's local SR: the coordinator's placement checks,
    then VM.start through the coordinator runs it on the member's libvirtd."""
    coordinator, member = hosts[0], hosts[1]
    c = coordinator.session().xenapi
    me = c.pool.get_master(c.pool.get_all()[0])
    there = [h for h in c.host.get_all() if c.host.get_address(h) == member.address][0]
    disk = c.VDI.get_by_uuid(MEMBER_DISK["uuid"])
    vm = guest_vm(c, guest, "pooled", mib=96)
    c.VBD.create({"VM": vm, "VDI": disk, "userdevice": "1", "bootable": False, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    assert failure(c.VM.start_on, vm, me, False, False) == \
        ["VM_REQUIRES_SR", vm, c.VDI.get_SR(disk)]
    # storage of a member is never touched from the coordinator's machine: forwarded
    # (tests/test_pool_forward.py)
    huge = str(1 << 50)
    c.VM.set_memory_limits(vm, huge, huge, huge, huge)
    needed = failure(c.VM.start_on, vm, there, False, False)
    assert needed[:2] == ["HOST_NOT_ENOUGH_FREE_MEMORY", huge]
    assert failure(c.VM.start, vm, False, False) == ["NO_HOSTS_AVAILABLE"]
    mib = str(96 << 20)
    c.VM.set_memory_limits(vm, mib, mib, mib, mib)
    c.VM.start(vm, False, False)
    uuid = c.VM.get_uuid(vm)
    assert (c.VM.get_power_state(vm), c.VM.get_resident_on(vm)) == ("Running", there)
    assert uuid in member.libvirtd.virsh("list", "--name")
    assert uuid not in coordinator.libvirtd.virsh("list", "--all", "--name")
    wait_for(lambda: MARK + "BOOTED" in console_text(member.server.data_dir, uuid), 90,
             "the guest booting on the member")
    c.VM.pause(vm)   # forwarded too
    assert c.VM.get_power_state(vm) == "Paused"
    assert member.libvirtd.virsh("domstate", uuid).strip() == "paused"
    c.VM.unpause(vm)
    assert member.libvirtd.virsh("domstate", uuid).strip() == "running"
    c.VM.hard_shutdown(vm)
    assert c.VM.get_power_state(vm) == "Halted"
    assert uuid not in member.libvirtd.virsh("list", "--name")
    # a domain that ends behind the member's back: its heartbeats tell the coordinator
    c.VM.start_on(vm, there, False, False)
    assert uuid in member.libvirtd.virsh("list", "--name")
    member.libvirtd.virsh("destroy", uuid)
    wait_for(lambda: c.VM.get_power_state(vm) == "Halted", 30,
             "the coordinator seeing the domain gone")
    assert c.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    c.VM.destroy(vm)


def test_join_with_xe_then_eject_and_rejoin(hosts, tmp_path, guest):
    coordinator, joiner = hosts[0], hosts[2]
    j = joiner.session().xenapi
    old_uuid = j.host.get_uuid(j.host.get_all()[0])
    # a running guest keeps a host out; halted, it comes along
    vm = guest_vm(j, guest, "comes along", mib=64)
    j.VM.start(vm, False, False)
    assert failure(j.pool.join, coordinator.address, "root", ROOT_PASSWORD) == \
        ["POOL_JOINING_HOST_CANNOT_HAVE_RUNNING_VMS"]
    j.VM.hard_shutdown(vm)
    vm_uuid = j.VM.get_uuid(vm)
    r = xe(tmp_path, joiner, "pool-join", f"master-address={coordinator.address}",
           "master-username=root", f"master-password={ROOT_PASSWORD}")
    assert r.returncode == 0, r.stderr
    joiner.wait_restarted()
    assert login_fails_with(joiner)[0] == "HOST_IS_SLAVE"
    c = coordinator.session().xenapi
    member = c.host.get_by_uuid(old_uuid)
    assert len(c.host.get_all()) == 3
    assert c.VM.get_power_state(c.VM.get_by_uuid(vm_uuid)) == "Halted"
    c.VM.destroy(c.VM.get_by_uuid(vm_uuid))
    # a member restarted comes back as a member, live again by its heartbeats
    joiner.server.stop()
    wait_for(lambda: not live(c, member), 15, "the stopped member marked not live")
    joiner.server.start()
    assert login_fails_with(joiner)[0] == "HOST_IS_SLAVE"
    wait_for(lambda: live(c, member), 15, "the restarted member live again")
    assert failure(c.pool.eject, c.pool.get_master(c.pool.get_all()[0]))[0] == \
        "OPERATION_NOT_ALLOWED"
    member_srs = [c.PBD.get_SR(p) for p in c.host.get_PBDs(member)]
    r = xe(tmp_path, coordinator, "pool-eject", f"host-uuid={old_uuid}", "--force")
    assert r.returncode == 0, r.stderr
    joiner.wait_restarted()
    # back standalone and clean: a new host of its own, no pool left in it
    j = joiner.session().xenapi
    (host,) = j.host.get_all()
    assert j.host.get_uuid(host) != old_uuid
    assert j.pool.get_master(j.pool.get_all()[0]) == host
    assert old_uuid not in {c.host.get_uuid(h) for h in c.host.get_all()}
    assert not any(c.SR.get_all_records().get(sr) for sr in member_srs)
    assert len(c.host.get_all()) == 2
    # and it can join again
    j.pool.join(coordinator.address, "root", ROOT_PASSWORD)
    joiner.wait_restarted()
    assert len(c.host.get_all()) == 3


def test_silent_member_is_not_live(hosts):
    coordinator, member = hosts[0], hosts[1]
    c = coordinator.session().xenapi
    ref = [h for h in c.host.get_all() if c.host.get_address(h) == member.address][0]
    assert live(c, ref)
    member.server.kill()
    took = wait_for(lambda: not live(c, ref), 15, "the killed member marked not live")
    assert took < 4 + 3   # host_assumed_dead_interval + a check
    assert failure(c.pool.eject, ref) == ["HOST_OFFLINE", ref]
    vm = guest_vm(c, None, "for a dead host")
    assert failure(c.VM.start_on, vm, ref, False, False) == ["HOST_OFFLINE", ref]
    c.VM.destroy(vm)
    master = c.pool.get_master(c.pool.get_all()[0])
    assert failure(c.host.destroy, master) == ["HOST_CANNOT_DESTROY_SELF", master]
    live_member = [h for h in c.host.get_all() if h not in (ref, master)][0]
    assert failure(c.host.destroy, live_member) == ["HOST_IS_LIVE", live_member]
    c.host.destroy(ref)
    assert ref not in c.host.get_all()
    assert not [p for p in c.PIF.get_all() if c.PIF.get_host(p) == ref]
    # the coordinator restarted: the pool is still there, its member live again
    coordinator.server.stop()
    coordinator.server.start()
    c = coordinator.session().xenapi
    assert set(c.host.get_all()) == {master, live_member}
    wait_for(lambda: live(c, live_member), 15, "the member live after the restart")
    assert login_fails_with(hosts[2])[0] == "HOST_IS_SLAVE"
