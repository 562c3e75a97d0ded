"""VDI.pool_migrate: the disk of a running tiny guest moves to another SR while the
guest runs (libvirt's block copy, then the switch to the copy); its data comes along,
the guest does not restart, the old VDI is gone. A disk no running VM uses is
refused (VDI_NEEDS_VM_FOR_MIGRATE)."""
import os
import subprocess

from guest.harness import MARK, console, guest, guest_vm, real, virsh, wait_booted, x  # noqa: F401,E501 (fixtures)
from sdk_failures import failure


def _image(x, vdi):
    pbd = x.SR.get_PBDs(x.VDI.get_SR(vdi))[0]
    return os.path.join(x.PBD.get_device_config(pbd)["path"],
                        x.VDI.get_location(vdi) + ".qcow2")


def test_disk_moves_to_another_sr_while_the_guest_runs(real, x, guest, tmp_path):
    host = x.host.get_all()[0]
    local = x.pool.get_default_SR(x.pool.get_all()[0])
    other = x.SR.create(host, {"path": str(tmp_path / "sr2")}, "0", "second", "", "file",
                        "user", False, {})
    disk = x.VDI.create({"SR": local, "virtual_size": str(8 << 20), "type": "user",
                         "sharable": False, "read_only": False, "other_config": {},
                         "name_label": "moving disk"})
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 1M", _image(x, disk)],
                   check=True, capture_output=True)
    assert failure(x.VDI.pool_migrate, disk, other, {}) == ["VDI_NEEDS_VM_FOR_MIGRATE", disk]
    vm = guest_vm(x, guest, "disk mover", mib=96)
    vbd = x.VBD.create({"VM": vm, "VDI": disk, "userdevice": "1", "bootable": False,
                        "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                        "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VM.start(vm, False, False)
    wait_booted(real, x, vm)
    uuid = x.VM.get_uuid(vm)
    moved = x.VDI.pool_migrate(disk, other, {})
    assert x.VDI.get_SR(moved) == other and x.VBD.get_VDI(vbd) == moved
    assert disk not in x.VDI.get_all()
    assert _image(x, moved) in virsh("dumpxml", f"xapi-{uuid}")
    assert subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-U", "-c", "read -P 0x5a 1M 1M",
                           _image(x, moved)], capture_output=True).returncode == 0
    assert x.VM.get_power_state(vm) == "Running"
    assert console(real, x, vm).count(MARK + "BOOTED") == 1
    x.VM.hard_shutdown(vm)
    x.VM.destroy(vm)
