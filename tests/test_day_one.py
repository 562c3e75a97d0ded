"""The README's day-one walk-through, typed as an admin types it, with `xe` only: an ISO
library, an ISO uploaded from where xe runs, a VM from a template with a disk and a NIC,
the ISO in its CD drive, start, the serial console, the address it got.

The "installer" is the tiny test guest on a bootable ISO (isolinux, as distribution
media are made), so the VM really boots from the CD through the BIOS: what an admin's
Debian ISO does, minus the installer's questions. The server runs in a network
namespace with the NAT network on (tests/nat_server.py)."""
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from guest.boot_iso import install_iso, missing_tools
from guest.harness import MARK, build_or_skip, console_text
from nat_server import nat_host
from serverproc import ROOT_PASSWORD

XE = os.path.join(os.path.dirname(sys.executable), "xe")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(   # slow: boots a real guest
    os.geteuid() != 0 or not shutil.which("qemu-system-x86_64")
    or not shutil.which("dnsmasq") or missing_tools() is not None,
    reason="needs root, qemu-system-x86_64, dnsmasq, genisoimage and isolinux")]


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    guest = build_or_skip(str(tmp_path_factory.mktemp("guest-cache")), catch=Exception,
                          why="test guest cannot be built: ")
    home = tmp_path_factory.mktemp("admin-home")
    iso = install_iso(guest, home, "debian-12.iso")
    with nat_host(tmp_path_factory, "10.213.60.1/24", guest, slot=1) as (proc, _, _out):
        env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
        env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "cfg"))
        base = [XE, "-s", proc.host, "-p", str(proc.port), "-u", "root", "-pw",
                ROOT_PASSWORD, "--no-verify"]

        def xe(*argv, timeout=120):
            done = subprocess.run(base + list(argv), capture_output=True, text=True,
                                  env=env, timeout=timeout)
            assert done.returncode == 0, f"xe {' '.join(argv)}: {done.stdout}{done.stderr}"
            return done.stdout.strip()
        yield xe, base, env, proc, iso, home


def test_first_vm_from_a_template_with_an_iso_a_disk_a_console_and_an_address(admin):
    xe, base, env, proc, iso, home = admin
    library = home / "isos"
    library.mkdir()
    iso_sr = xe("sr-create", "name-label=ISO library", "type=iso", "content-type=iso",
                f"device-config:location={library}")
    uploaded = xe("vdi-import", f"sr-uuid={iso_sr}", f"filename={iso}")
    assert xe("vdi-param-get", f"uuid={uploaded}", "param-name=name-label") == "debian-12.iso"
    assert "debian-12.iso" in xe("cd-list", "params=name-label")

    vm = xe("vm-install", "template=Debian Bookworm 12", "new-name-label=web1")
    disks = xe("vm-disk-list", "vm=web1")
    assert "virtual-size ( RO): 10737418240" in disks and "Local storage" in disks, disks
    assert "NAT" in xe("vm-vif-list", "vm=web1", "params=network-name-label")
    xe("vm-cd-add", "vm=web1", "cd-name=debian-12.iso", "device=3")
    xe("vm-start", "vm=web1")

    # The BIOS found nothing on the new disk and booted the CD's loader.
    def said(text):
        return text in console_text(proc.data_dir, vm)
    deadline = time.monotonic() + 120
    while not said(MARK + "DHCP eth0 10.213.60.") and time.monotonic() < deadline:
        time.sleep(0.5)
    text = console_text(proc.data_dir, vm)
    assert "BOOT_IMAGE=/vmlinuz" in text and MARK + "MEDIA sr0" in text, text[-2000:]
    assert MARK + "DHCP eth0 10.213.60." in text, text[-2000:]
    address = text.split(MARK + "DHCP eth0 ")[1].split()[0]

    # The address shows where an admin looks for it.
    deadline = time.monotonic() + 30
    while f"0/ip: {address}" not in xe("vm-list", "name-label=web1", "params=networks",
                                        "--minimal") and time.monotonic() < deadline:
        time.sleep(0.5)
    assert f"0/ip: {address}" in xe("vm-list", "name-label=web1", "params=networks",
                                     "--minimal")

    # The serial console takes a command and gives its output back.
    console = subprocess.Popen(base + ["console", "vm=web1"], env=env,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    out = bytearray()

    def pump():
        while data := console.stdout.read1(4096):
            out.extend(data)
    threading.Thread(target=pump, daemon=True).start()
    try:
        console.stdin.write(b"\necho day-one-$((6*7))\n")
        console.stdin.flush()
        deadline = time.monotonic() + 30
        while b"day-one-42" not in out and time.monotonic() < deadline:
            time.sleep(0.2)
        assert b"day-one-42" in out, bytes(out[-500:])
        console.stdin.write(b"\x1d")           # Ctrl-]
        console.stdin.flush()
        assert console.wait(20) == 0
    finally:
        if console.poll() is None:
            console.kill()
            console.wait()

    # After the install: the CD out, a clean shutdown.
    xe("vm-cd-eject", "vm=web1")
    xe("vm-shutdown", "vm=web1", "force=true")
    assert xe("vm-param-get", "uuid=" + vm, "param-name=power-state") == "halted"
