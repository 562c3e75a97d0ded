"""Built-in templates, vm-install (clone + provision), copy, snapshot and revert on
libvirt's test driver."""

from inprocess import xapi_in_process  # noqa: F401 (xapi: the server in this process)
from xapi_server.api.vm_clone import parse_disks
from sdk_failures import failure


def test_builtin_templates(xapi):
    templates = {r["name_label"]: r for r in xapi.VM.get_all_records().values()
                 if r["is_a_template"] and r["is_default_template"]}
    assert "Other install media" in templates
    assert any(n.startswith("Debian") for n in templates)
    assert any(n.startswith("Ubuntu") for n in templates)
    windows = [r for n, r in templates.items() if n.startswith("Windows")]
    assert windows and windows[0]["platform"]["viridian"] == "true"
    debian = templates["Debian Bookworm 12"]
    assert debian["other_config"]["default_template"] == "true"
    assert parse_disks(debian["other_config"]["disks"]) == [
        {"device": "0", "size": 10 << 30, "sr": "", "bootable": True, "type": "system"}]
    assert int(debian["VCPUs_max"]) == 2 and int(debian["memory_static_max"]) == 2 << 30
    assert debian["power_state"] == "Halted"
    assert "provision" in debian["allowed_operations"] and "start" not in debian["allowed_operations"]
    ref = xapi.VM.get_by_name_label("Debian Bookworm 12")[0]
    assert failure(xapi.VM.destroy, ref) == ["VM_IS_TEMPLATE", ref, "destroy"]


def test_clone_of_a_template_is_a_plain_template(xapi):
    template = xapi.VM.get_by_name_label("Debian Bookworm 12")[0]
    vm = xapi.VM.clone(template, "installed")
    rec = xapi.VM.get_record(vm)
    assert rec["is_a_template"] and not rec["is_default_template"]
    assert "default_template" not in rec["other_config"]
    assert "disks" in rec["other_config"]          # what provision will create
    assert rec["parent"] == template
    assert xapi.VM_metrics.get_state(rec["metrics"]) == ["halted"]
    xapi.VM.destroy(vm)                            # a non-default template may go


def test_snapshot_and_revert(xapi):
    template = xapi.VM.get_by_name_label("Other install media")[0]
    vm = xapi.VM.clone(template, "snapme")
    xapi.VM.provision(vm)
    xapi.VM.set_is_a_template(vm, False)
    xapi.VM.start(vm, False, False)
    snap = xapi.VM.snapshot(vm, "before")
    rec = xapi.VM.get_record(snap)
    assert rec["is_a_snapshot"] and rec["is_a_template"]
    assert rec["snapshot_of"] == vm and rec["power_state"] == "Halted"
    assert snap in xapi.VM.get_snapshots(vm)
    assert failure(xapi.VM.start, snap, False, False) == ["VM_IS_SNAPSHOT", snap, "start"]
    xapi.VM.hard_shutdown(vm)
    xapi.VM.set_VCPUs_max(vm, "4")
    xapi.VM.revert(snap)
    rec = xapi.VM.get_record(vm)
    assert rec["VCPUs_max"] == rec["VCPUs_at_startup"] == xapi.VM.get_VCPUs_max(snap)
    assert rec["name_label"] == "snapme" and not rec["is_a_template"]
    copy = xapi.VM.copy(vm, "copied", "OpaqueRef:NULL")
    assert xapi.VM.get_name_label(copy) == "copied"
    xapi.VM.start(copy, False, False)
    assert xapi.VM.get_power_state(copy) == "Running"
    xapi.VM.hard_shutdown(copy)
    for ref in (copy, snap, vm):
        xapi.VM.destroy(ref)


def test_restart_reconciles_with_the_hypervisor(tmp_path):
    """test:///default lives in the server process: after a restart no domain runs,
    and a VM recorded as Running must come back Halted."""
    from serverproc import ServerProcess
    proc = ServerProcess(str(tmp_path)).start()
    try:
        x = proc.session().xenapi
        template = x.VM.get_by_name_label("Other install media")[0]
        vm = x.VM.clone(template, "r")
        x.VM.set_is_a_template(vm, False)
        x.VM.start(vm, False, False)
        assert x.VM.get_power_state(vm) == "Running"
        proc.kill()
        proc.start()
        x = proc.session().xenapi
        rec = x.VM.get_record(vm)
        assert (rec["power_state"], rec["resident_on"]) == ("Halted", "OpaqueRef:NULL")
        assert "start" in rec["allowed_operations"]
    finally:
        proc.kill()
