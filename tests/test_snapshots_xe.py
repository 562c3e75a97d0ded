"""The xe snapshot commands (issue 15) with the real xe client against a real server on
libvirt's test driver: snapshot-list with params, snapshot-clone/-copy, snapshot-revert,
snapshot-reset-powerstate, snapshot-destroy (record only, disks kept), snapshot-uninstall
and vm-uninstall of a snapshot (its own disks too), and their refusals. vm-checkpoint,
which needs a real guest's memory, is in test_snapshots_guest.py."""
import os
import subprocess
import sys

import pytest

from serverproc import ROOT_PASSWORD
from xva_server import srv, x  # noqa: F401 (fixtures: a server on the test driver)

XE = os.path.join(os.path.dirname(sys.executable), "xe")
MiB = 1 << 20


@pytest.fixture(scope="module")
def xe(srv, tmp_path_factory):
    home = tmp_path_factory.mktemp("xe-home")
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home))

    def run(*args, ok=True):
        proc = subprocess.run([XE, "-s", "127.0.0.1", "-p", str(srv.port), "-pw",
                               ROOT_PASSWORD, "--no-verify", *args], env=env,
                              capture_output=True, text=True, timeout=60)
        if ok:
            assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc
    return run


@pytest.fixture(scope="module")
def sr(x, tmp_path_factory):
    host = x.host.get_all()[0]
    path = str(tmp_path_factory.mktemp("snap-sr") / "sr")
    return x.SR.create(host, {"path": path}, "0", "snapshot xe SR", "", "file", "user",
                       False, {})


def vm_with_disk(x, sr, name):
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, name)
    x.VM.set_is_a_template(vm, False)
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(4 * MiB), "type": "user",
                        "name_label": f"{name} disk", "sharable": False, "read_only": False,
                        "other_config": {}})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False,
                  "other_config": {"owner": ""},   # as vm-install: the VM's own disk
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    return vm, vdi


def disks(x, vm):
    return [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm) if x.VBD.get_type(v) == "Disk"]


def test_list_clone_copy_revert(x, xe, sr):
    vm, vdi = vm_with_disk(x, sr, "snap-src")
    snap = x.VM.snapshot(vm, "snap-a")
    uuid = x.VM.get_uuid(snap)
    out = xe("snapshot-list", "params=uuid,name-label,snapshot-of,is-a-snapshot",
             f"uuid={uuid}").stdout
    assert uuid in out
    assert "snap-a" in out and x.VM.get_uuid(vm) in out and "true" in out
    listed = xe("snapshot-list", "--minimal").stdout.strip().split(",")
    assert uuid in listed and x.VM.get_uuid(vm) not in listed   # only snapshots

    clone = xe("snapshot-clone", f"snapshot-uuid={uuid}", "new-name-label=from-snap",
               "new-name-description=cloned").stdout.strip()
    ref = x.VM.get_by_uuid(clone)
    assert x.VM.get_is_a_template(ref) and not x.VM.get_is_a_snapshot(ref)
    assert x.VM.get_name_description(ref) == "cloned"
    copy = xe("snapshot-copy", f"uuid={uuid}", "new-name-label=copied",
              f"sr-uuid={x.SR.get_uuid(sr)}").stdout.strip()
    copied = disks(x, x.VM.get_by_uuid(copy))
    assert len(copied) == 1 and copied[0] not in disks(x, snap)

    x.VDI.resize(vdi, str(8 * MiB))   # the VM's disk changes after the snapshot
    xe("snapshot-revert", f"snapshot-uuid={uuid}")
    assert [x.VDI.get_virtual_size(d) for d in disks(x, vm)] == [str(4 * MiB)]


def test_refusals(x, xe, sr):
    vm, _ = vm_with_disk(x, sr, "not-a-snapshot")
    proc = xe("snapshot-revert", f"snapshot-uuid={x.VM.get_uuid(vm)}", ok=False)
    assert proc.returncode != 0 and "is not a snapshot" in proc.stderr + proc.stdout
    proc = xe("snapshot-destroy", ok=False)
    assert proc.returncode != 0 and "snapshot-uuid" in proc.stderr + proc.stdout
    snap = x.VM.snapshot(vm, "needs-force")
    proc = xe("snapshot-reset-powerstate", f"snapshot-uuid={x.VM.get_uuid(snap)}", ok=False)
    assert proc.returncode != 0 and "--force" in proc.stderr + proc.stdout
    xe("snapshot-reset-powerstate", f"snapshot-uuid={x.VM.get_uuid(snap)}", "--force")
    assert x.VM.get_power_state(snap) == "Halted"


def test_destroy_keeps_disks_uninstall_removes_them(x, xe, sr):
    vm, _ = vm_with_disk(x, sr, "snap-owner")
    first = x.VM.snapshot(vm, "to-destroy")
    kept = disks(x, first)
    xe("snapshot-destroy", f"snapshot-uuid={x.VM.get_uuid(first)}")
    assert first not in x.VM.get_all()
    assert all(d in x.VDI.get_all() for d in kept)   # the disks stay

    second = x.VM.snapshot(vm, "to-uninstall")
    gone = disks(x, second)
    xe("snapshot-uninstall", f"snapshot-uuid={x.VM.get_uuid(second)}", "--force")
    assert second not in x.VM.get_all()
    assert not any(d in x.VDI.get_all() for d in gone)

    third = x.VM.snapshot(vm, "vm-uninstalled")
    gone = disks(x, third)
    xe("vm-uninstall", f"uuid={x.VM.get_uuid(third)}", "--force")
    assert third not in x.VM.get_all() and vm in x.VM.get_all()
    assert not any(d in x.VDI.get_all() for d in gone)
    assert len(disks(x, vm)) == 1 and disks(x, vm)[0] in x.VDI.get_all()


def test_export_to_template(x, xe, sr, tmp_path):
    vm, _ = vm_with_disk(x, sr, "exported-snap-src")
    snap = x.VM.snapshot(vm, "exported-snap")
    path = tmp_path / "snap.xva"
    xe("snapshot-export-to-template", f"snapshot-uuid={x.VM.get_uuid(snap)}",
       f"filename={path}", "compress=zstd")
    assert path.stat().st_size > 0
    new = xe("vm-import", f"filename={path}", f"sr-uuid={x.SR.get_uuid(sr)}").stdout.strip()
    ref = x.VM.get_by_uuid(new)
    assert x.VM.get_name_label(ref) == "exported-snap"
    assert x.VM.get_is_a_template(ref) and not x.VM.get_is_a_snapshot(ref)
    assert len(disks(x, ref)) == 1
    proc = xe("snapshot-export-to-template", f"snapshot-uuid={x.VM.get_uuid(vm)}",
              f"filename={tmp_path / 'no.xva'}", ok=False)
    assert proc.returncode != 0 and "is not a snapshot" in proc.stderr + proc.stdout
