"""VM.start + VM.hard_shutdown through the API against `virsh start` + `virsh destroy`
of an equivalent domain: the same tiny guest (tests/guest), the same XML minus our
metadata, on qemu:///system under TCG. Runs alternate so drift hits both sides.
Goal: API / virsh <= 1.10.

    .venv/bin/python bench/bench_vm.py [--rounds 5]      (root; starts libvirtd if needed)
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid as uuidlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "guest"))
import build  # noqa: E402
from serverproc import ServerProcess  # noqa: E402

URI = "qemu:///system"


def virsh(*args):
    return subprocess.run(["virsh", "-c", URI, *args], capture_output=True, text=True,
                          check=True).stdout


def twin_domain(ours: str, workdir: str) -> str:
    """Our domain's XML with another name, uuid and console file, without metadata."""
    xml = virsh("dumpxml", "--inactive", ours)
    name = "bench-virsh-twin"
    xml = re.sub(r"<metadata>.*?</metadata>", "", xml, flags=re.S)
    xml = re.sub(r"<name>.*?</name>", f"<name>{name}</name>", xml)
    xml = re.sub(r"<uuid>.*?</uuid>", f"<uuid>{uuidlib.uuid4()}</uuid>", xml)
    xml = re.sub(r"<source path='[^']*'", f"<source path='{workdir}/twin.log'", xml)
    path = os.path.join(workdir, "twin.xml")
    with open(path, "w") as f:
        f.write(xml)
    virsh("define", path)
    return name


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if subprocess.run(["virsh", "-c", URI, "version"], capture_output=True).returncode:
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "libvirt-setup.sh")], check=True)
    guest = build.build_guest("/var/tmp/xapi-py-test-guest")
    workdir = tempfile.mkdtemp(prefix="bench-vm-")
    proc = ServerProcess(os.path.join(workdir, "data"), libvirt_uri=URI).start()
    twin = None
    try:
        x = proc.session().xenapi
        vm = build.guest_vm(x, guest, "bench")
        x.VM.start(vm, False, False)             # warm up: defines the domain
        x.VM.hard_shutdown(vm)
        twin = twin_domain(f"xapi-{x.VM.get_uuid(vm)}", workdir)
        virsh("start", twin)
        virsh("destroy", twin)
        api = {"start": [], "stop": []}
        raw = {"start": [], "stop": []}
        for _ in range(args.rounds):
            api["start"].append(timed(lambda: x.VM.start(vm, False, False)))
            api["stop"].append(timed(lambda: x.VM.hard_shutdown(vm)))
            raw["start"].append(timed(lambda: virsh("start", twin)))
            raw["stop"].append(timed(lambda: virsh("destroy", twin)))
        a_total = [s + t for s, t in zip(api["start"], api["stop"])]
        v_total = [s + t for s, t in zip(raw["start"], raw["stop"])]
        med = statistics.median
        print(f"rounds: {args.rounds}, guest: 128 MiB, 1 vCPU, {URI} (TCG)")
        print(f"API   VM.start {med(api['start']) * 1000:7.1f} ms   VM.hard_shutdown "
              f"{med(api['stop']) * 1000:7.1f} ms   total {med(a_total) * 1000:7.1f} ms")
        print(f"virsh start    {med(raw['start']) * 1000:7.1f} ms   destroy          "
              f"{med(raw['stop']) * 1000:7.1f} ms   total {med(v_total) * 1000:7.1f} ms")
        print(f"ratio API/virsh (median totals): {med(a_total) / med(v_total):.3f}  (goal <= 1.10)")
    finally:
        if twin:
            subprocess.run(["virsh", "-c", URI, "destroy", twin], capture_output=True)
            subprocess.run(["virsh", "-c", URI, "undefine", twin], capture_output=True)
        proc.remove_vms_and_kill()


if __name__ == "__main__":
    main()
