"""xapi's answers for the checkpoint/snapshot-era VM, VDI and VBD messages when they
cannot run (issue 15), on the server in this process (libvirt's test driver): power
states, removed messages, CBT without an SR driver for it, plugins, agility, and the
happy paths that need no guest (cooperative, agility, NBD without an NBD network)."""
import pytest

from inprocess import xapi_in_process  # noqa: F401 (xapi: the server in this process)
from sdk_failures import failure

MiB = 1 << 20
NULL = "OpaqueRef:NULL"


@pytest.fixture
def sr(xapi, tmp_path):
    host = xapi.host.get_all()[0]
    path = str(tmp_path / "sr")
    return xapi.SR.create(host, {"path": path}, "0", "errors SR", "", "file", "user", False, {})


def new_vm(x, name):
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, name)
    x.VM.set_is_a_template(vm, False)
    return vm


def disk(x, sr, vm=None, userdevice="0"):
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(4 * MiB), "type": "user",
                        "name_label": "d", "sharable": False, "read_only": False,
                        "other_config": {}})
    vbd = None
    if vm is not None:
        vbd = x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": True,
                            "mode": "RW", "type": "Disk", "empty": False, "other_config": {},
                            "qos_algorithm_type": "", "qos_algorithm_params": {}})
    return vdi, vbd


def test_halted_vm_refuses_what_needs_a_running_guest(xapi, sr):
    vm = new_vm(xapi, "halted")
    _, vbd = disk(xapi, sr, vm)
    assert failure(xapi.VM.send_sysrq, vm, "s") == ["VM_BAD_POWER_STATE", vm, "running",
                                                    "halted"]
    assert failure(xapi.VM.send_trigger, vm, "nmi") == ["VM_BAD_POWER_STATE", vm, "running",
                                                        "halted"]
    assert failure(xapi.VM.checkpoint, vm, "cp")[0] == "VM_BAD_POWER_STATE"
    assert failure(xapi.VBD.unplug_force, vbd) == ["VM_BAD_POWER_STATE", vm, "running",
                                                   "halted"]
    assert failure(xapi.VM.revert, vm) == ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"]


def test_a_template_has_no_device_model(xapi):
    template = xapi.VM.get_by_name_label("Other install media")[0]
    assert failure(xapi.VM.restart_device_models, template) == ["VM_BAD_POWER_STATE",
                                                               template, "running", "halted"]


def test_answers_that_need_no_guest(xapi, sr):
    vm = new_vm(xapi, "quiet")
    vdi, _ = disk(xapi, sr, vm)
    assert xapi.VM.get_cooperative(vm) is True
    assert failure(xapi.VM.query_services, vm) == ["NOT_IMPLEMENTED", "query_services"]
    assert failure(xapi.VM.snapshot_with_quiesce, vm, "q") == ["MESSAGE_REMOVED"]
    assert failure(xapi.VM.get_is_snapshot_from_vmpp, vm) == ["MESSAGE_REMOVED"]
    # a disk on an SR that is not shared ties the VM to this host
    assert failure(xapi.VM.assert_agile, vm) == ["VM_REQUIRES_SR", vm, sr]
    agile = new_vm(xapi, "agile")
    xapi.VM.assert_agile(agile)   # nothing ties it
    assert xapi.VDI.get_nbd_info(vdi) == []   # no network with the nbd purpose


def test_cbt_needs_an_sr_driver_that_offers_it(xapi, sr):
    vdi, _ = disk(xapi, sr)
    for fn in (xapi.VDI.enable_cbt, xapi.VDI.disable_cbt, xapi.VDI.data_destroy):
        assert failure(fn, vdi) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert failure(xapi.VDI.list_changed_blocks, vdi, vdi) == ["SR_OPERATION_NOT_SUPPORTED", sr]


def test_guest_plugin_without_an_agent(xapi):
    vm = new_vm(xapi, "plugins")
    assert failure(xapi.VM.call_plugin, vm, "nope", "fn", {}) == ["XENAPI_MISSING_PLUGIN",
                                                                 "nope"]
    details = failure(xapi.VM.call_plugin, vm, "guest-agent-operation", "nope", {})
    assert details[:2] == ["XENAPI_PLUGIN_FAILURE", "failed to find fn"]
    details = failure(xapi.VM.call_plugin, vm, "guest-agent-operation", "request-rdp-on", {})
    assert details[:2] == ["XENAPI_PLUGIN_FAILURE", "failed to execute fn"]


def test_vdi_revert_and_resize_online_refusals(xapi, sr):
    vdi, _ = disk(xapi, sr)
    assert failure(xapi.VDI.revert, vdi)[0] == "OPERATION_NOT_ALLOWED"   # not a snapshot
    assert failure(xapi.VDI.resize_online, vdi, str(MiB)) == ["VDI_TOO_SMALL", vdi,
                                                              str(4 * MiB)]
    xapi.VDI.resize_online(vdi, str(8 * MiB))   # attached nowhere: an ordinary resize
    assert xapi.VDI.get_virtual_size(vdi) == str(8 * MiB)
    snap = xapi.VDI.snapshot(vdi, {})
    xapi.VDI.resize(vdi, str(12 * MiB))
    xapi.VDI.revert(snap)
    assert xapi.VDI.get_virtual_size(vdi) == str(8 * MiB)
