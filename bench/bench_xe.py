"""Wall time of `xe vm-list` against our server over TLS vs `virsh list --all`, with
100 VMs defined. Prints the medians and the ratio xe/virsh (goal: <= 2.5).

    .venv/bin/python bench/bench_xe.py [--runs 30] [--vms 100]

Two xe figures are printed:
  * installed: the `xe` console script of this venv. It is an editable (development)
    install: the interpreter's `site` then loads setuptools' editable finder, which
    costs ~10 ms before xe's own code runs. This is the ratio reported as "installed".
  * plain: the same client started the way a regular (non-editable) install of a
    stdlib-only package starts, without that finder (`python -S`, xe_cli on sys.path).
Bytecode is compiled first: this environment sets PYTHONDONTWRITEBYTECODE, and an
installed package always has its .pyc files.
"""
from __future__ import annotations

import argparse
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
from serverproc import ROOT_PASSWORD, ServerProcess  # noqa: E402

XE = os.path.join(os.path.dirname(sys.executable), "xe")


def minimal_vm(i: int) -> dict:
    """The smallest VM.create record: the fields VM.create requires (no default)."""
    return {
        "name_label": f"bench-{i:03d}", "name_description": "", "user_version": "1",
        "is_a_template": False, "affinity": "OpaqueRef:NULL",
        "memory_static_max": str(256 << 20), "memory_dynamic_max": str(256 << 20),
        "memory_dynamic_min": str(256 << 20), "memory_static_min": str(256 << 20),
        "VCPUs_params": {}, "VCPUs_max": "1", "VCPUs_at_startup": "1",
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "PV_bootloader": "", "PV_kernel": "",
        "PV_ramdisk": "", "PV_args": "", "PV_bootloader_args": "", "PV_legacy_args": "",
        "HVM_boot_policy": "BIOS order", "HVM_boot_params": {"order": "cd"},
        "platform": {}, "PCI_bus": "", "other_config": {}, "recommendations": "",
    }


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode()}")
    return elapsed * 1000


def medians(cmds: list[list[str]], runs: int, env: dict) -> list[float]:
    """Runs interleaved (a, b, c, a, b, c ...) so that load from other processes on the
    machine weighs on every command alike; the median of each."""
    times = [[] for _ in cmds]
    for _ in range(runs):
        for i, cmd in enumerate(cmds):
            times[i].append(timed(cmd, env))
    return [statistics.median(t) for t in times]


def virsh_uri() -> str:
    for uri in ("qemu:///system", "test:///default"):
        if subprocess.run(["virsh", "-c", uri, "list", "--all"], capture_output=True,
                          timeout=30).returncode == 0:
            return uri
    raise SystemExit("virsh cannot connect to qemu:///system nor test:///default")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--vms", type=int, default=100)
    opts = parser.parse_args()
    compileall.compile_dir(os.path.join(ROOT, "xe_cli"), quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(os.path.join(tmp, "data")).start()
        try:
            session = server.session()
            for i in range(opts.vms):
                session.xenapi.VM.create(minimal_vm(i))
            env = {**os.environ, "HOME": tmp, "XDG_CONFIG_HOME": os.path.join(tmp, "cfg")}
            env.pop("XE_EXTRA_ARGS", None)
            conn = ["-s", "127.0.0.1", "-p", str(server.port), "-pw", ROOT_PASSWORD]
            installed = [XE, *conn, "vm-list"]
            plain = [sys.executable, "-S", "-c",
                     f"import sys; sys.path.insert(0, {ROOT!r}); "
                     "from xe_cli.main import main; sys.exit(main())", *conn, "vm-list"]
            listed = subprocess.run(installed, capture_output=True, text=True, env=env)
            count = listed.stdout.count("name-label ( RW)")
            if count < opts.vms:
                raise SystemExit(f"xe vm-list showed {count} VMs:\n{listed.stderr}")
            uri = virsh_uri()
            virsh = ["virsh", "-c", uri, "list", "--all"]
            domains = len(subprocess.run(virsh, capture_output=True, text=True)
                          .stdout.strip().splitlines()[2:])
            medians([installed, plain, virsh], 3, env)   # warm caches
            t_inst, t_plain, t_virsh = medians([installed, plain, virsh], opts.runs, env)
        finally:
            server.stop()
    print(f"VMs listed by xe vm-list:        {count}")
    print(f"xe vm-list (installed script):   {t_inst:6.1f} ms median of {opts.runs}")
    print(f"xe vm-list (plain start):        {t_plain:6.1f} ms median of {opts.runs}")
    print(f"virsh -c {uri} list --all: {t_virsh:6.1f} ms median of {opts.runs} "
          f"({domains} domains listed)")
    print(f"ratio installed/virsh: {t_inst / t_virsh:.2f}   plain/virsh: "
          f"{t_plain / t_virsh:.2f}   (goal <= 2.5)")


if __name__ == "__main__":
    main()
