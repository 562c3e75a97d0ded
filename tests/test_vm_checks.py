"""xapi's operation checks as a pure function: order of the checks, concurrency
groups, template and snapshot rules (xapi_vm_lifecycle.check_operation_error)."""
from xapi_server.api.vm_checks import CONSIDERED, check_operation_error

REF = "OpaqueRef:vm"


def vm(**fields):
    rec = {"power_state": "Halted", "blocked_operations": {}, "current_operations": {},
           "is_a_template": False, "is_a_snapshot": False, "is_default_template": False,
           "is_control_domain": False}
    rec.update(fields)
    return rec


def error(rec, op):
    err = check_operation_error(REF, rec, op)
    return None if err is None else err.description


def test_power_states():
    assert error(vm(), "start") is None
    assert error(vm(power_state="Running"), "start") == [
        "VM_BAD_POWER_STATE", REF, "halted", "running"]
    assert error(vm(), "hard_reboot") == [
        "VM_BAD_POWER_STATE", REF, "paused, running", "halted"]
    assert error(vm(power_state="Running"), "changing_dynamic_range") is None
    assert error(vm(power_state="Running"), "changing_static_range")[0] == "VM_BAD_POWER_STATE"
    assert error(vm(power_state="Suspended"), "destroy") is None


def test_first_failure_wins_in_xapi_order():
    busy = {"OpaqueRef:task": "clean_shutdown"}
    rec = vm(power_state="Running", is_a_template=True, current_operations=busy,
             blocked_operations={"start": "no"})
    assert error(rec, "start") == ["OPERATION_BLOCKED", REF, "no"]
    rec["blocked_operations"] = {}
    assert error(rec, "start")[0] == "VM_BAD_POWER_STATE"
    assert error(rec, "pause") == ["OTHER_OPERATION_IN_PROGRESS", "VM", REF, "clean_shutdown",
                                   "OpaqueRef:task"]
    rec["current_operations"] = {}
    assert error(rec, "pause") == ["VM_IS_TEMPLATE", REF, "pause"]


def test_concurrency_rules():
    def running(op):
        return vm(power_state="Running", current_operations={"OpaqueRef:t": op})
    assert error(running("clean_shutdown"), "hard_shutdown") is None   # may interrupt
    assert error(running("hard_shutdown"), "hard_shutdown")[0] == "OTHER_OPERATION_IN_PROGRESS"
    assert error(running("clean_shutdown"), "hard_reboot") is None
    assert error(running("hard_reboot"), "hard_reboot")[0] == "OTHER_OPERATION_IN_PROGRESS"
    assert error(running("snapshot"), "snapshot") is None
    assert error(running("pause"), "suspend")[0] == "OTHER_OPERATION_IN_PROGRESS"
    halted = vm(current_operations={"OpaqueRef:t": "clone"})
    assert error(halted, "copy") is None
    assert error(halted, "start")[0] == "OTHER_OPERATION_IN_PROGRESS"


def test_templates_and_snapshots():
    template = vm(is_a_template=True, is_default_template=True)
    allowed = {op for op in CONSIDERED if error(template, op) is None}
    assert allowed == {"clone", "copy", "export", "provision", "changing_dynamic_range",
                       "changing_static_range", "changing_memory_limits", "changing_VCPUs"}
    assert error(vm(is_a_template=True), "destroy") is None   # not a default one
    snap = vm(is_a_template=True, is_a_snapshot=True)
    allowed = {op for op in CONSIDERED if error(snap, op) is None}
    assert allowed == {"revert", "clone", "copy", "export", "destroy"}
    assert error(vm(), "provision") == ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]
    assert error(vm(), "revert") == ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"]
    assert error(snap, "start") == ["VM_IS_SNAPSHOT", REF, "start"]


def test_export_listed_for_halted_and_suspended_vms():
    listed = lambda rec: "export" in {op for op in CONSIDERED if error(rec, op) is None}  # noqa: E731
    assert listed(vm()) and listed(vm(power_state="Suspended"))
    assert not listed(vm(power_state="Running")) and not listed(vm(power_state="Paused"))
    assert error(vm(power_state="Running"), "export") == [
        "VM_BAD_POWER_STATE", REF, "halted, suspended", "running"]
    busy = vm(current_operations={"OpaqueRef:t": "clone"})   # long copies overlap
    assert listed(busy)
    assert not listed(vm(current_operations={"OpaqueRef:t": "start"}))
