"""What the guest-booting tests share: the tiny Linux guest (build.py, README.md) built or
the test skipped, a server on qemu:///system, VMs that boot the guest, its console and
waits on it, and virsh to change things behind the server's back.

    from guest.harness import console, guest, make_vm, real, wait_booted, x
    run_in_guest(real, x, session_ref, vm, "echo hi", "hi")   # booted with `guestshell`

`guest`, `real`, `x` and `sdk` are fixtures (scopes: module, module, function, module):
a module that imports them gets them. Needs root, libvirtd (started with
scripts/libvirt-setup.sh when it does not answer), qemu-system-x86, busybox-static and
linux-image-cloud-amd64."""
import os
import re
import shutil
import subprocess
import time

import pytest

from serverproc import GUEST_CACHE, ServerProcess, tls_connect

from . import build

URI = "qemu:///system"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MARK = "XAPI-TEST-GUEST "   # every console line the guest writes for tests starts so


def prerequisites() -> str | None:
    """Why the guests cannot boot on qemu:///system here, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("virsh", "libvirtd", "qemu-system-x86_64"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    return None


def build_or_skip(cache_dir: str = GUEST_CACHE, catch=RuntimeError, why: str = "") -> dict:
    """The guest's kernel and initrd (build.build_guest), or the test skipped when the
    host lacks what it is built from (build raises RuntimeError saying what)."""
    try:
        return build.build_guest(cache_dir)
    except catch as exc:
        pytest.skip(f"{why}{exc}")


def virsh(*args, check=True):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                          check=check).stdout


@pytest.fixture(scope="module")
def guest():
    """The built guest, with the system libvirtd running (started if it does not answer)."""
    reason = prerequisites()
    if reason:
        pytest.skip(reason)
    files = build_or_skip()
    if subprocess.run(["virsh", "-c", URI, "version"], capture_output=True).returncode:
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "libvirt-setup.sh")], check=True)
    return files


@pytest.fixture(scope="module")
def real(guest, tmp_path_factory):
    """A server of the module's own on qemu:///system; its VMs are removed at the end."""
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-real")), libvirt_uri=URI).start()
    yield proc
    proc.remove_vms_and_kill()


@pytest.fixture
def x(real):
    return real.session().xenapi


@pytest.fixture(scope="module")
def sdk(real):
    """One logged-in SDK session for the whole module (its guest outlives a test)."""
    return real.session()


def guest_vm(x, guest, name: str, provision: bool = False, mib: int = 128,
             args: str = "") -> str:
    """A VM (through the API session `x`) that boots this guest: what `xe vm-install
    template="Other install media"` makes, with `mib` MiB, direct kernel boot and
    `args` after the guest's command line. With guest None (libvirt's test driver)
    only the clone."""
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, name)
    if provision:
        x.VM.provision(vm)
    x.VM.set_is_a_template(vm, False)
    if guest:
        memory = str(mib << 20)
        x.VM.set_memory_limits(vm, memory, memory, memory, memory)
        x.VM.set_PV_kernel(vm, guest["kernel"])
        x.VM.set_PV_ramdisk(vm, guest["initrd"])
        x.VM.set_PV_args(vm, f"{guest['cmdline']} {args}" if args else guest["cmdline"])
    return vm


def make_vm(x, guest, name):
    return guest_vm(x, guest, name, provision=True)


def console_text(data_dir: str, uuid: str) -> str:
    """All the guest wrote on its serial console (the server's consoles/ file), or ""
    before it wrote anything."""
    try:
        with open(os.path.join(data_dir, "consoles", uuid + ".log"), errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def console(real, x, vm) -> str:
    return console_text(real.data_dir, x.VM.get_uuid(vm))


def wait_for(predicate, timeout, what):
    """The monotonic time at which `predicate()` first held; AssertionError naming
    `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return time.monotonic()
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_booted(real, x, vm, count=1, timeout=60):
    wait_for(lambda: console(real, x, vm).count(MARK + "BOOTED") >= count, timeout,
             f"boot #{count} on the console")


def wait_state(x, vm, state, timeout) -> float:
    """Seconds until VM.power_state is `state`."""
    start = time.monotonic()
    wait_for(lambda: x.VM.get_power_state(vm) == state, timeout, f"power_state {state}")
    return time.monotonic() - start


def block_devices(text):
    """The guest's block devices in its console's latest BLOCK line (None before one)."""
    lines = re.findall(MARK + "BLOCK(.*)", text)
    return lines[-1].split() if lines else None


def run_in_guest(real, x, session_ref, vm, command: str, expect: str, timeout=30) -> str:
    """Type `command` into the guest's serial shell (a guest booted with `guestshell`
    in its arguments) through the server's vt100 console (CONNECT /console, as xe
    console does) and read what the guest answers until `expect` shows; that output.
    `x` and `session_ref`: a logged-in XenAPI session of the server `real`."""
    text = next(c for c in x.VM.get_consoles(vm) if x.console.get_protocol(c) == "vt100")
    sock = tls_connect(real.port, timeout=timeout)
    try:
        sock.sendall((f"CONNECT /console?uuid={x.console.get_uuid(text)} HTTP/1.0\r\n"
                      f"Host: 127.0.0.1\r\nCookie: session_id={session_ref}\r\n\r\n")
                     .encode())
        out = b""
        while b"\r\n\r\n" not in out:
            piece = sock.recv(4096)
            assert piece, f"console refused: {out!r}"
            out += piece
        head, _, out = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        sock.sendall(command.encode() + b"\n")
        deadline = time.monotonic() + timeout
        while expect.encode() not in out:
            assert time.monotonic() < deadline, f"no {expect!r} in {out[-500:]!r}"
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            piece = sock.recv(65536)
            assert piece, f"console closed before {expect!r}: {out[-500:]!r}"
            out += piece
        return out.decode(errors="replace")
    finally:
        sock.close()
