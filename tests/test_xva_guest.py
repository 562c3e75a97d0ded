"""XVA export and import with the tiny guest under QEMU/TCG on qemu:///system: a running
VM's export is refused (the hypervisor's truth, not a record), and the VM imported from
its XVA boots with the imported disk, whose bytes equal the original's.

Same prerequisites as test_vm_guest.py; fixtures from tests/guest/harness.py."""
import os

import pytest

from guest.harness import (block_devices, console, guest, make_vm, real,  # noqa: F401
                           wait_booted, wait_for, x)
from xva_server import disk_sha, export, get, import_xva, new_vms, qemu_io, wait_task

pytestmark = pytest.mark.slow   # boots real guests under QEMU: minutes; -m 'not slow' skips

MiB = 1 << 20


def test_running_export_refused_and_the_import_boots_with_its_disk(real, x, guest, tmp_path):
    sid = real.session()._session      # for the HTTP requests; ends with the server
    pool = x.pool.get_all()[0]
    sr_ref = x.pool.get_default_SR(pool)
    [pbd] = x.SR.get_PBDs(sr_ref)
    sr = (sr_ref, x.PBD.get_device_config(pbd)["path"])
    vm = make_vm(x, guest, "xva guest")
    vdi = x.VDI.create({"SR": sr_ref, "virtual_size": str(16 * MiB), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "xva guest disk"})
    qemu_io(os.path.join(sr[1], x.VDI.get_location(vdi) + ".qcow2"),
            "write -P 0xa5 5M 1M")
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    task = x.task.create("export", "")
    status, _, _ = get(real, sid, f"/export?ref={vm}&task_id={task}")
    assert status.split()[1] == "500"
    assert wait_task(x, task)["error_info"] == ["VM_BAD_POWER_STATE", vm,
                                                "halted, suspended", "running"]
    x.VM.hard_shutdown(vm)

    data, _ = export(x, real, sid, vm, "zstd")
    rec = import_xva(x, real, sid, sr, data)
    assert rec["status"] == "success", rec["error_info"]
    [new] = new_vms(rec)
    [new_vbd] = x.VM.get_VBDs(new)
    new_vdi = x.VBD.get_VDI(new_vbd)
    assert disk_sha(x, sr, new_vdi, tmp_path) == disk_sha(x, sr, vdi, tmp_path)
    assert x.VM.get_PV_kernel(new) == x.VM.get_PV_kernel(vm)
    x.VM.start(new, False, False)
    wait_booted(real, x, new)
    wait_for(lambda: "vda" in (block_devices(console(real, x, new)) or []), 30,
             "the imported disk on the guest's console")
    x.VM.hard_shutdown(new)
