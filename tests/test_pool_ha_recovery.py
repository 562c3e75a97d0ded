"""The VMs of a dead host (issue 18, api/pool_ha_recovery.py): three pool hosts
(tests/pool_harness.py), the coordinator and the first member running QEMU under
libvirt's lock manager (virtlockd, `lock_manager = "lockd"`, disk leases in a directory
beside the shared file SR, which every host sees), the second member without one.

A protected VM with a disk on the shared SR runs on each member (and an unprotected
one on the first); both members die
(kill -9 of everything in their namespaces: server, libvirtd, virtlockd, QEMU). The
coordinator restarts the fenced one on itself; the other is left Halted for the
administrator, with the reason and a HA_PROTECTED_VM_RESTART_FAILED message. Then the
safety proof: a second QEMU on the restarted VM's disk, started by the first member's
libvirtd (up again), is refused by the lock manager while the coordinator's holds the
lease. Also: the third host's join offers the replicated database (a message).
The tests run in order and share the pool."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from guest.harness import guest, guest_vm  # noqa: E402,F401 (fixture)
from pool_harness import pool_hosts  # noqa: E402
from private_libvirtd import unavailable  # noqa: E402
from serverproc import ROOT_PASSWORD  # noqa: E402
from waiting import wait_for  # noqa: E402

pytestmark = pytest.mark.skipif(bool(unavailable()), reason=str(unavailable()))
STATE = {}
RECOVERY_BOUND = 90   # dead after 8 s without heartbeats, then a start


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    shared = str(tmp_path_factory.mktemp("ha-shared"))
    leases, sr_dir = os.path.join(shared, "leases"), os.path.join(shared, "sr")
    os.makedirs(leases)
    os.makedirs(sr_dir)
    fenced = {"env": {"XAPI_VM_LOCK_MANAGER": "lockd"},
              "libvirtd": {"lockd_leases": leases}}
    # Dead after 8 s without heartbeats: a member slowed by a loaded machine must not be
    # taken for dead (and its VMs for orphans) before the test kills it.
    with pool_hosts(tmp_path_factory, 3, slot=5, host_options=[fenced, fenced, {}],
                    env={"XAPI_HOST_ASSUMED_DEAD_INTERVAL": "8"}) as hosts:
        for member in hosts[1:]:   # one at a time: wait_restarted sees the old server go
            member.session().xenapi.pool.join(hosts[0].address, "root", ROOT_PASSWORD)
            member.wait_restarted()
        yield hosts, sr_dir


def crash(host):
    """Everything in the host's namespace, SIGKILL, as a power cut."""
    pids = subprocess.run(["ip", "netns", "pids", host.name], capture_output=True,
                          text=True).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def protected_vm(c, guest, name, sr):
    vm = guest_vm(c, guest, name, mib=64)
    disk = c.VDI.create({"SR": sr, "virtual_size": str(8 << 20), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {},
                         "name_label": f"{name} disk"})
    c.VBD.create({"VM": vm, "VDI": disk, "userdevice": "1", "bootable": False, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    c.VM.set_ha_restart_priority(vm, "restart")
    return vm


def test_third_join_offers_a_replicated_database(pool):
    """The join that made three hosts raised the offer (api/pool_ha_offer.py), once:
    the install script's command for each host, names and addresses filled in."""
    hosts, _ = pool
    c = hosts[0].session().xenapi
    offers = [m for m in c.message.get_all_records().values()
              if m["name"] == "POOL_DATABASE_HA_AVAILABLE"]
    assert len(offers) == 1
    assert offers[0]["obj_uuid"] == c.pool.get_uuid(c.pool.get_all()[0])
    body = offers[0]["body"]
    for host in hosts:
        assert f"on {host.address}: scripts/pool-ha-setup.sh --name " in body
    members = re.search(r"--members (\S+)", body).group(1).split(",")
    assert sorted(m.split("=")[1] for m in members) == sorted(h.address for h in hosts)
    assert body.count("--new-ca") == 1


def test_dead_hosts_vms_restarted_only_where_fenced(pool, guest):
    hosts, sr_dir = pool
    coordinator, fenced, unfenced = hosts
    c = coordinator.session().xenapi
    by_address = {c.host.get_address(h): h for h in c.host.get_all()}
    me, m1, m2 = (by_address[h.address] for h in hosts)
    # Each host's lock manager, as it reported it (the members by their heartbeats).
    wait_for(lambda: c.host.get_other_config(m1).get("vm_lock_manager") == "lockd", 30,
             "the fenced member's lock manager in its record")
    assert c.host.get_other_config(me).get("vm_lock_manager") == "lockd"
    assert "vm_lock_manager" not in c.host.get_other_config(m2)
    sr = c.SR.create(me, {"path": sr_dir}, "0", "shared", "", "file", "user", True, {})
    safe = protected_vm(c, guest, "ha-fenced", sr)
    unsafe = protected_vm(c, guest, "ha-unfenced", sr)
    plain = guest_vm(c, guest, "ha-unprotected", mib=64)   # no ha_restart_priority
    c.VM.start_on(safe, m1, False, False)
    c.VM.start_on(unsafe, m2, False, False)
    c.VM.start_on(plain, m1, False, False)
    assert c.VM.get_resident_on(safe) == m1 and c.VM.get_resident_on(unsafe) == m2
    assert os.listdir(os.path.dirname(sr_dir) + "/leases")   # virtlockd's leases there

    crash(fenced)
    crash(unfenced)
    started = time.monotonic()
    wait_for(lambda: c.VM.get_power_state(safe) == "Running"
             and c.VM.get_resident_on(safe) == me, RECOVERY_BOUND,
             lambda: f"the fenced VM restarted on the coordinator: "
                     f"{c.VM.get_record(safe)['other_config']}")
    print(f"\nfenced VM running on the coordinator {time.monotonic() - started:.1f} s "
          "after its host was killed")
    # (the mark follows the start's end: waited for, not assumed)
    wait_for(lambda: c.VM.get_other_config(safe).get("ha_recovery", "").startswith(
        "restarted on host"), 30, lambda: c.VM.get_other_config(safe))
    uuid = c.VM.get_uuid(safe)
    assert uuid in coordinator.libvirtd.virsh("list", "--name")
    # Without a lock manager on its host: Halted, the reason, a message; never started.
    wait_for(lambda: all("ha_recovery" in c.VM.get_other_config(v) for v in (unsafe, plain)),
             RECOVERY_BOUND, "the unfenced and the unprotected VMs marked")
    assert c.VM.get_power_state(unsafe) == "Halted"
    assert "without a lock manager" in c.VM.get_other_config(unsafe)["ha_recovery"]
    messages = [m for m in c.message.get_all_records().values()
                if m["name"] == "HA_PROTECTED_VM_RESTART_FAILED"]
    # Not protected (xapi's HA restarts only protected VMs): Halted, the reason.
    assert c.VM.get_power_state(plain) == "Halted"
    assert c.VM.get_other_config(plain)["ha_recovery"].startswith("left halted: not protected")
    assert sorted(m["obj_uuid"] for m in messages) == \
        sorted(c.VM.get_uuid(v) for v in (unsafe, plain))
    assert c.VM.get_uuid(unsafe) not in coordinator.libvirtd.virsh("list", "--all", "--name")
    STATE.update(uuid=uuid)


TWIN = """<domain type='qemu'><name>ha-twin</name><memory unit='MiB'>32</memory>
<os><type arch='x86_64'>hvm</type></os></domain>"""


def test_second_start_refused_by_the_lock_manager(pool):
    """The fenced member back (its libvirtd and virtlockd; its server stays down) tries
    to run the restarted VM's disk while the coordinator's QEMU holds its lease:

    - a QEMU given the disk as it is hot-plugged: libvirt takes the lease before QEMU
      opens the file, and virtlockd refuses it (the lock manager's own refusal);
    - a whole second domain on that disk: refused too (here QEMU's own image locking
      answers first: libvirt starts QEMU paused and takes the leases when it resumes,
      after QEMU opened its images; on storage where QEMU's file locks do not reach
      other hosts, the lease is what refuses it).
    So the VM never runs twice."""
    hosts, sr_dir = pool
    coordinator, fenced, _ = hosts
    uuid = STATE["uuid"]
    xml = coordinator.libvirtd.virsh("dumpxml", uuid)
    disks = [d for d in re.findall(r"<source file='([^']+)'", xml) if d.startswith(sr_dir)]
    assert len(disks) == 1, xml
    fenced.libvirtd.start()
    twin = os.path.join(fenced.libvirtd.root, "twin.xml")
    with open(twin, "w") as f:
        f.write(TWIN)
    fenced.libvirtd.virsh("create", twin)
    plug = subprocess.run(["virsh", "-c", fenced.libvirtd.uri, "attach-disk", "ha-twin",
                           disks[0], "vdb", "--driver", "qemu", "--subdriver", "qcow2"],
                          capture_output=True, text=True)
    assert plug.returncode != 0, "a second QEMU opened a leased disk"
    assert re.search(r"resource busy: Lockspace resource '[0-9a-f]+' is locked",
                     plug.stderr), plug.stderr
    # The whole VM a second time, under another name and uuid, on the same disks.
    whole = re.sub(r"<name>[^<]*</name>", "<name>ha-twin2</name>",
                   re.sub(r"<uuid>[^<]*</uuid>", "", xml, count=1), count=1)
    with open(twin, "w") as f:
        f.write(whole)
    second = subprocess.run(["virsh", "-c", fenced.libvirtd.uri, "create", twin],
                            capture_output=True, text=True)
    assert second.returncode != 0, "a second QEMU started on a leased disk"
    # QEMU reports the refusal on its stderr, which libvirt quotes when it notices the
    # exit first; when it notices the closed monitor socket first, it says only that,
    # and the refusal is in the domain's log.
    log = os.path.join(fenced.libvirtd.root, "log", "qemu", "ha-twin2.log")
    said = second.stderr + (open(log, errors="replace").read() if os.path.exists(log) else "")
    assert re.search(r"(?i)is locked|write\" lock", said), said[-3000:]
    assert "ha-twin2" not in fenced.libvirtd.virsh("list", "--all", "--name")
    assert uuid in coordinator.libvirtd.virsh("list", "--name")   # still runs there
