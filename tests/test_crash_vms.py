"""Crashes around real guests: the server killed mid-operation, libvirtd killed and
restarted under a running server, a guest's QEMU killed. Afterwards the records say
what the hypervisor says, and the server works on without a restart.

The guests are the tiny Linux guest under QEMU/TCG (tests/guest). libvirtd is a
private one (tests/private_libvirtd.py) that these tests may kill without touching
the system daemon other test runs use."""
import json
import os
import signal
import sqlite3
import threading
import time

import pytest
import XenAPI

from guest.harness import build_or_skip, console, make_vm, wait_booted, wait_for, wait_state
from private_libvirtd import PrivateLibvirtd, kill_qemus, qemu_pid, unavailable
from serverproc import ServerProcess
from xapi_server.store.check import check_data_dir

pytestmark = pytest.mark.slow   # kills libvirtd, QEMU and the server under real guests: minutes

# `virsh domstate` -> VM.power_state (as backends/hypervisor/libvirt_hv.py maps them)
DOMSTATE = {"running": "Running", "idle": "Running", "blocked": "Running",
            "in shutdown": "Running", "paused": "Paused", "pmsuspended": "Paused",
            "crashed": "Paused", "shut off": "Halted"}


@pytest.fixture(scope="module")
def guest():
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    return build_or_skip()


@pytest.fixture(scope="module")
def daemon(guest, tmp_path_factory):
    d = PrivateLibvirtd(str(tmp_path_factory.mktemp("libvirtd"))).start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def real(daemon, tmp_path):
    proc = ServerProcess(str(tmp_path / "data"), libvirt_uri=daemon.uri).start()
    try:
        yield proc
        daemon.ensure_running()
        if proc.proc.poll() is not None:
            proc.start()
        proc.remove_vms_and_kill()
    finally:
        proc.kill()


EMBED_ROOT = "/var/tmp/xapi-py-test-embed-crash"   # reused: libvirt caches its QEMU probe
EMBED_QEMU_RUN = os.path.join(EMBED_ROOT, "run", "qemu")
CALL_TIMEOUT = 30   # seconds: a hung call fails the test instead of hanging the run


@pytest.fixture(scope="module")
def embedded(guest, tmp_path_factory):
    """A server on libvirt's embedded QEMU driver: libvirt runs in the server process,
    in threads of its own, and forks QEMU and helpers from them."""
    proc = ServerProcess(str(tmp_path_factory.mktemp("embed")),
                         libvirt_uri=f"qemu:///embed?root={EMBED_ROOT}").start()
    try:
        yield proc
        proc.remove_vms_and_kill()
    finally:
        proc.kill()
        kill_qemus(EMBED_QEMU_RUN)   # guests of a server that hung or died


def domain(x, vm) -> str:
    return f"xapi-{x.VM.get_uuid(vm)}"


def failure(fn, *args) -> list:
    try:
        fn(*args)
    except XenAPI.Failure as exc:
        return exc.details
    raise AssertionError(f"{fn} succeeded")


def messages(x, vm) -> list[str]:
    return [m["name"] for m in
            x.message.get("VM", x.VM.get_uuid(vm), "19700101T00:00:00Z").values()]


def test_libvirtd_killed_and_restarted_under_running_vms(real, daemon, guest):
    x = real.session().xenapi
    survivor, victim = make_vm(x, guest, "survivor"), make_vm(x, guest, "victim")
    for vm in (survivor, victim):
        x.VM.start(vm, False, False)
    wait_booted(real, x, survivor)
    name = domain(x, survivor)
    victim_qemu = daemon.qemu_pid(domain(x, victim))
    assert victim_qemu

    daemon.kill()
    # While libvirtd is down, calls that need it fail at once with a readable
    # INTERNAL_ERROR (xapi's error for a backend failure it has no code for);
    # everything read from the store keeps working.
    began = time.monotonic()
    error = failure(x.VM.pause, survivor)
    assert time.monotonic() - began < 5
    assert error[0] == "INTERNAL_ERROR"
    assert error[1].startswith(f"hypervisor: cannot connect to {daemon.uri}"), error
    assert "Traceback" not in error[1]
    assert failure(x.VM.hard_shutdown, victim)[0] == "INTERNAL_ERROR"
    assert x.VM.get_power_state(survivor) == "Running"
    assert x.VM.get_record(survivor)["current_operations"] == {}   # the failed call let go
    assert len(x.VM.get_all_records()) > 2
    x.host.get_record(x.host.get_all()[0])

    os.kill(victim_qemu, signal.SIGKILL)            # dies while nobody is watching
    daemon.start()
    took = wait_state(x, victim, "Halted", 6)       # reconnected and re-read everything
    print(f"victim Halted {took:.2f} s after libvirtd answered again")
    assert real.proc.poll() is None                 # the same server process throughout
    assert x.VM.get_power_state(survivor) == "Running"
    assert daemon.virsh("domstate", name).strip() == "running"
    assert {"VM_CRASHED", "VM_SHUTDOWN"} & set(messages(x, victim))
    # Events arrive on the new connection: changes behind our back show at once.
    daemon.virsh("suspend", name)
    wait_state(x, survivor, "Paused", 2)
    daemon.virsh("resume", name)
    wait_state(x, survivor, "Running", 2)
    # The guest itself lived through it: it still acts on the ACPI power button.
    x.VM.clean_shutdown(survivor)
    assert "XAPI-TEST-GUEST POWEROFF" in console(real, x, survivor)
    x.VM.start(victim, False, False)
    assert x.VM.get_power_state(victim) == "Running"
    assert "Traceback" not in real.log()


def test_qemu_killed_while_libvirtd_runs(real, daemon, guest):
    x = real.session().xenapi
    vm = make_vm(x, guest, "crashing")
    x.VM.start(vm, False, False)
    name = domain(x, vm)
    os.kill(daemon.qemu_pid(name), signal.SIGKILL)
    took = wait_state(x, vm, "Halted", 5)
    print(f"Halted {took:.2f} s after QEMU was killed")
    assert daemon.virsh("domstate", name).strip() == "shut off"
    assert x.VM.get_resident_on(vm) == "OpaqueRef:NULL"
    assert "VM_CRASHED" in messages(x, vm)
    x.VM.start(vm, False, False)                     # nothing left behind blocks it
    assert x.VM.get_power_state(vm) == "Running"


def test_server_started_while_libvirtd_is_down(real, daemon, guest):
    """The first connection is made only later: events must still be registered on it
    and the VMs re-read."""
    x = real.session().xenapi
    vm = make_vm(x, guest, "late")
    real.kill()
    daemon.kill()
    real.start()
    x = real.session().xenapi
    assert failure(x.VM.start, vm, False, False)[0] == "INTERNAL_ERROR"
    assert x.VM.get_power_state(vm) == "Halted"
    daemon.start()
    began = time.monotonic()

    def starts():
        try:
            x.VM.start(vm, False, False)
            return True
        except XenAPI.Failure as exc:
            assert exc.details[0] == "INTERNAL_ERROR", exc.details
            return False
    wait_for(starts, 10, "VM.start to work again")
    print(f"VM.start worked {time.monotonic() - began:.2f} s after libvirtd answered")
    daemon.virsh("destroy", domain(x, vm))
    wait_state(x, vm, "Halted", 2)
    assert "Traceback" not in real.log()


def test_power_states_match_libvirt_after_kill_9_mid_operation(real, daemon, guest):
    """SIGKILL while a shutdown and starts are in flight: after the restart every
    VM's power_state is libvirt's, no operation of the dead server blocks a VM, and
    the database is consistent."""
    x = real.session().xenapi
    vms = {n: make_vm(x, guest, n) for n in ("shutting", "hard", "start-a", "start-b")}
    for n in ("shutting", "hard"):
        x.VM.start(vms[n], False, False)
    returned = []

    def call(op, n):
        try:
            getattr(real.session().xenapi.VM, op)(vms[n], *((False, False) if op == "start"
                                                            else ()))
            returned.append(n)
        except Exception:   # the server died under the call: that is the point
            pass
    # The guest is still booting and cannot act on the power button yet: the clean
    # shutdown is sure to be in flight at the kill.
    threads = [threading.Thread(target=call, args=("clean_shutdown", "shutting"))]
    threads[0].start()
    x.VM.hard_shutdown(vms["hard"])
    threads += [threading.Thread(target=call, args=("start", n)) for n in ("start-a", "start-b")]
    for t in threads[1:]:
        t.start()
    wait_for(lambda: x.VM.get_current_operations(vms["shutting"]), 10, "the shutdown to begin")
    x.VM.add_to_other_config(vms["hard"], "last", "1")   # answered once all is on disk
    real.kill()
    for t in threads:
        t.join(30)
    print("returned before the kill:", returned)
    assert "shutting" not in returned
    assert "clean_shutdown" in operations_on_disk(real.data_dir, vms["shutting"]).values()
    assert check_data_dir(real.data_dir) == []

    real.start()
    x = real.session().xenapi
    for n, vm in vms.items():
        wait_for(lambda: x.VM.get_power_state(vm) == libvirt_state(daemon, domain(x, vm)), 15,
                 f"{n}: power_state as libvirt's")
        assert x.VM.get_current_operations(vm) == {}
    for n, vm in vms.items():        # every VM takes operations again
        if x.VM.get_power_state(vm) == "Halted":
            x.VM.start(vm, False, False)
        x.VM.hard_shutdown(vm)
        assert daemon.virsh("domstate", domain(x, vm)).strip() == "shut off"


def libvirt_state(daemon, name) -> str:
    """What VM.power_state must say according to libvirt (no domain: never started)."""
    return DOMSTATE[daemon.virsh("domstate", name, check=False).strip() or "shut off"]


def operations_on_disk(data_dir, vm) -> dict:
    """A VM's current_operations as the database holds them (server stopped)."""
    db = sqlite3.connect(f"file:{os.path.join(data_dir, 'xapi.db')}?mode=ro", uri=True)
    try:
        (text,) = db.execute("SELECT current_operations FROM VM WHERE ref = ?", (vm,)).fetchone()
    finally:
        db.close()
    return json.loads(text)


def test_embedded_driver_qemu_killed(embedded, guest):
    """qemu:///embed has no daemon to lose; its analogue is the QEMU process dying."""
    x = embedded.session(timeout=CALL_TIMEOUT).xenapi
    vm = make_vm(x, guest, "embedded")
    x.VM.start(vm, False, False)
    name = domain(x, vm)
    pid = qemu_pid(EMBED_QEMU_RUN, name)
    assert pid
    os.kill(pid, signal.SIGKILL)
    took = wait_state(x, vm, "Halted", 5)
    print(f"Halted {took:.2f} s after the embedded driver's QEMU was killed")
    assert "VM_CRASHED" in messages(x, vm)
    assert unexeced_children(embedded) == []
    x.VM.destroy(vm)


def test_embedded_driver_forks_while_server_spawns(embedded, guest):
    """libvirt forks from its own threads inside the server (QEMU's start, the clean-up
    after a stop) while the server runs `ip` for API calls: no child may hang. When the
    event loop spawned with uvloop, a fork by libvirt during a spawn ran uvloop's atfork
    handler, which waits for the GIL in the child for ever: libvirt never finished the
    start or stop (and the loop itself could block on the stuck child's pipe)."""
    x = embedded.session(timeout=CALL_TIMEOUT).xenapi
    vm = make_vm(x, guest, "forking")
    stop, spawned, errors = threading.Event(), [], []

    def run_ip(n):
        c = embedded.session(timeout=CALL_TIMEOUT).xenapi
        net = c.network.create({"name_label": f"spawner {n}", "name_description": "",
                                "MTU": "1500", "other_config": {}, "bridge": f"xtspawn{n}"})
        try:
            while not stop.is_set():
                c.network.set_MTU(net, "1500")   # reads the bridge's link: runs `ip`
                spawned.append(n)
        except Exception as exc:   # reported below: a thread's exception is lost
            errors.append(exc)
        finally:
            c.network.destroy(net)
    threads = [threading.Thread(target=run_ip, args=(n,), daemon=True) for n in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: spawned, 10, "the first `ip` run")
        for _ in range(4):   # each start and stop forks in libvirt's threads
            x.VM.start(vm, True, False)
            x.VM.hard_shutdown(vm)
    finally:
        stop.set()
        for t in threads:
            t.join(CALL_TIMEOUT)
    assert errors == []
    print(f"{len(spawned)} API calls that ran `ip` during 4 VM starts and stops")
    assert unexeced_children(embedded) == []
    x.VM.destroy(vm)


def unexeced_children(server) -> list[int]:
    """Children of the server that still run its own program a second later: forked,
    never exec'd (a child between fork and exec is caught only for an instant)."""
    first = _children_running_python(server.proc.pid)
    time.sleep(1)
    return sorted(first & _children_running_python(server.proc.pid))


def _children_running_python(pid) -> set[int]:
    exe = os.readlink(f"/proc/{pid}/exe")
    found = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid == pid and os.readlink(f"/proc/{entry}/exe") == exe:
                found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue   # not a process, or gone meanwhile
    return found
