"""VM power operations through the API on libvirt's test driver (test:///default):
the state machine, xapi's errors and their parameters, metrics and host links."""
import pytest
import XenAPI

from inprocess import xapi_in_process  # noqa: F401 (xapi: the server in this process)
from sdk_failures import failure


def new_vm(xapi, name="vm"):
    """What `xe vm-install template="Other install media"` does."""
    template = xapi.VM.get_by_name_label("Other install media")[0]
    vm = xapi.VM.clone(template, name)
    xapi.VM.provision(vm)
    xapi.VM.set_is_a_template(vm, False)
    return vm


@pytest.fixture
def vm(xapi):
    ref = new_vm(xapi)
    yield ref
    try:
        if xapi.VM.get_power_state(ref) != "Halted":
            xapi.VM.hard_shutdown(ref)
        xapi.VM.destroy(ref)
    except XenAPI.Failure:
        pass


def test_start_and_hard_shutdown(xapi, vm):
    host = xapi.host.get_all()[0]
    assert "start" in xapi.VM.get_allowed_operations(vm)
    xapi.VM.start(vm, False, False)
    rec = xapi.VM.get_record(vm)
    assert rec["power_state"] == "Running"
    assert int(rec["domid"]) > 0
    assert rec["resident_on"] == host
    assert vm in xapi.host.get_resident_VMs(host)
    assert "start" not in rec["allowed_operations"]
    assert {"hard_shutdown", "clean_shutdown", "pause", "suspend"} <= set(rec["allowed_operations"])
    assert rec["current_operations"] == {}
    metrics = xapi.VM_metrics.get_record(rec["metrics"])
    assert metrics["state"] == ["running"]
    assert int(metrics["memory_actual"]) == int(rec["memory_dynamic_max"])
    assert int(metrics["VCPUs_number"]) == int(rec["VCPUs_at_startup"])
    xapi.VM.hard_shutdown(vm)
    rec = xapi.VM.get_record(vm)
    assert (rec["power_state"], rec["domid"]) == ("Halted", "-1")
    assert rec["resident_on"] == "OpaqueRef:NULL"
    assert vm not in xapi.host.get_resident_VMs(host)
    assert xapi.VM_metrics.get_state(rec["metrics"]) == ["halted"]


def test_last_booted_record_does_not_grow_with_each_boot(xapi, vm):
    sizes = []
    for _ in range(3):
        xapi.VM.start(vm, False, False)
        xapi.VM.hard_shutdown(vm)
        sizes.append(len(xapi.VM.get_last_booted_record(vm)))
    assert sizes[0] == sizes[1] == sizes[2], sizes


def test_bad_power_state_parameters(xapi, vm):
    assert failure(xapi.VM.hard_shutdown, vm) == [
        "VM_BAD_POWER_STATE", vm, "paused, suspended, running", "halted"]
    assert failure(xapi.VM.unpause, vm) == ["VM_BAD_POWER_STATE", vm, "paused", "halted"]
    xapi.VM.start(vm, False, False)
    assert failure(xapi.VM.start, vm, False, False) == [
        "VM_BAD_POWER_STATE", vm, "halted", "running"]
    assert failure(xapi.VM.resume, vm, False, False) == [
        "VM_BAD_POWER_STATE", vm, "suspended", "running"]
    assert failure(xapi.VM.destroy, vm) == [
        "VM_BAD_POWER_STATE", vm, "halted, suspended", "running"]
    assert failure(xapi.VM.set_VCPUs_max, vm, "4") == [
        "VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_pause_unpause_suspend_resume(xapi, vm):
    xapi.VM.start(vm, True, False)          # start_paused
    assert xapi.VM.get_power_state(vm) == "Paused"
    xapi.VM.unpause(vm)
    assert xapi.VM.get_power_state(vm) == "Running"
    xapi.VM.pause(vm)
    assert xapi.VM.get_power_state(vm) == "Paused"
    assert "unpause" in xapi.VM.get_allowed_operations(vm)
    xapi.VM.unpause(vm)
    xapi.VM.suspend(vm)
    rec = xapi.VM.get_record(vm)
    assert rec["power_state"] == "Suspended"
    assert rec["resident_on"] == "OpaqueRef:NULL"
    assert set(rec["allowed_operations"]) >= {"resume", "hard_shutdown", "destroy"}
    xapi.VM.resume(vm, False, False)
    assert xapi.VM.get_power_state(vm) == "Running"
    xapi.VM.suspend(vm)
    xapi.VM.hard_shutdown(vm)                # a suspended VM can be halted for good
    assert xapi.VM.get_power_state(vm) == "Halted"
    xapi.VM.start(vm, False, False)          # boots afresh: no stale suspend image
    assert xapi.VM.get_power_state(vm) == "Running"


def test_clean_operations_and_reboots(xapi, vm):
    host = xapi.host.get_all()[0]
    xapi.VM.start_on(vm, host, False, False)
    xapi.VM.clean_reboot(vm)
    assert xapi.VM.get_power_state(vm) == "Running"
    xapi.VM.hard_reboot(vm)
    assert xapi.VM.get_power_state(vm) == "Running"
    xapi.VM.clean_shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"
    xapi.VM.start(vm, False, False)
    xapi.VM.shutdown(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_async_start_is_a_task(xapi, vm):
    task = xapi.Async.VM.start(vm, False, False)
    for _ in range(100):
        if xapi.task.get_status(task) != "pending":
            break
        import time
        time.sleep(0.05)
    assert xapi.task.get_status(task) == "success"
    assert xapi.VM.get_power_state(vm) == "Running"
    task = xapi.Async.VM.start(vm, False, False)
    for _ in range(100):
        if xapi.task.get_status(task) != "pending":
            break
        import time
        time.sleep(0.05)
    assert xapi.task.get_error_info(task) == ["VM_BAD_POWER_STATE", vm, "halted", "running"]


def test_template_and_blocked_operations(xapi, vm):
    template = xapi.VM.get_by_name_label("Other install media")[0]
    assert failure(xapi.VM.start, template, False, False) == ["VM_IS_TEMPLATE", template, "start"]
    assert "start" not in xapi.VM.get_allowed_operations(template)
    xapi.VM.add_to_blocked_operations(vm, "start", "maintenance")
    assert "start" not in xapi.VM.get_allowed_operations(vm)
    assert failure(xapi.VM.start, vm, False, False) == ["OPERATION_BLOCKED", vm, "maintenance"]
    xapi.VM.remove_from_blocked_operations(vm, "start")
    assert "start" in xapi.VM.get_allowed_operations(vm)
    assert failure(xapi.VM.provision, vm) == ["PROVISION_ONLY_ALLOWED_ON_TEMPLATE"]
    assert failure(xapi.VM.revert, vm) == ["REVERT_ONLY_ALLOWED_ON_SNAPSHOT"]
    xapi.VM.set_is_a_template(vm, True)
    assert "provision" in xapi.VM.get_allowed_operations(vm)
    assert failure(xapi.VM.start, vm, False, False) == ["VM_IS_TEMPLATE", vm, "start"]
    xapi.VM.set_is_a_template(vm, False)


def test_memory_and_vcpus(xapi, vm):
    gib = 1 << 30
    violation = ["MEMORY_CONSTRAINT_VIOLATION", "Memory limits must satisfy: "
                 "static_min \u2264 dynamic_min \u2264 dynamic_max \u2264 static_max"]
    assert failure(xapi.VM.set_memory_limits, vm, str(gib), str(gib // 2),
                   str(gib // 2), str(gib // 2)) == violation
    xapi.VM.set_memory_limits(vm, str(gib // 4), str(2 * gib), str(gib // 2), str(gib))
    rec = xapi.VM.get_record(vm)
    assert (int(rec["memory_static_min"]), int(rec["memory_static_max"])) == (gib // 4, 2 * gib)
    assert failure(xapi.VM.set_memory_dynamic_range, vm, str(gib), str(3 * gib)) == violation
    xapi.VM.set_memory(vm, str(gib))
    rec = xapi.VM.get_record(vm)
    assert {rec[f"memory_{k}"] for k in ("static_max", "dynamic_min", "dynamic_max")} == {str(gib)}
    xapi.VM.set_VCPUs_max(vm, "4")
    xapi.VM.set_VCPUs_at_startup(vm, "2")
    assert failure(xapi.VM.set_VCPUs_at_startup, vm, "5")[0] == "INVALID_VALUE"
    assert failure(xapi.VM.set_VCPUs_max, vm, "1")[0] == "INVALID_VALUE"
    xapi.VM.start(vm, False, False)
    metrics = xapi.VM.get_metrics(vm)
    assert xapi.VM_metrics.get_VCPUs_number(metrics) == "2"
    xapi.VM.set_VCPUs_number_live(vm, "3")
    assert xapi.VM_metrics.get_VCPUs_number(metrics) == "3"
    assert failure(xapi.VM.set_VCPUs_number_live, vm, "9")[0] == "INVALID_VALUE"
    xapi.VM.set_memory_dynamic_range(vm, str(gib // 2), str(gib // 2))
    assert int(xapi.VM_metrics.get_memory_actual(metrics)) == gib // 2


def test_boot_record_power_state_reset_and_devices(xapi, vm):
    xapi.VM.start(vm, False, False)
    xapi.VM.set_name_label(vm, "renamed")
    assert xapi.VM.get_boot_record(vm)["name_label"] == "vm"
    assert xapi.VM.get_allowed_VBD_devices(vm) == [str(i) for i in range(16)]
    assert xapi.VM.get_allowed_VIF_devices(vm) == [str(i) for i in range(7)]
    assert xapi.VM.get_possible_hosts(vm) == xapi.host.get_all()
    xapi.VM.power_state_reset(vm)
    assert xapi.VM.get_power_state(vm) == "Halted"


def test_create_validates_and_makes_metrics(xapi):
    template = xapi.VM.get_by_name_label("Debian Bookworm 12")[0]
    record = xapi.VM.get_record(template)
    for key in ("uuid", "allowed_operations", "current_operations", "metrics", "VBDs",
                "VIFs", "consoles", "snapshots", "children", "guest_metrics",
                "resident_on", "domid", "is_default_template", "reference_label"):
        record.pop(key, None)
    record.update(name_label="made", is_a_template=False)
    bad = dict(record, memory_dynamic_min=str(1 << 40))
    assert failure(xapi.VM.create, bad)[0] == "MEMORY_CONSTRAINT_VIOLATION"
    vm = xapi.VM.create(record)
    rec = xapi.VM.get_record(vm)
    assert rec["power_state"] == "Halted"
    assert xapi.VM_metrics.get_record(rec["metrics"])["state"] == ["halted"]
    assert "start" in rec["allowed_operations"]
    xapi.VM.destroy(vm)
    assert failure(xapi.VM_metrics.get_record, rec["metrics"])[0] == "HANDLE_INVALID"


def test_host_memory_figures(xapi):
    host = xapi.host.get_all()[0]
    free = int(xapi.host.compute_free_memory(host))
    total = int(xapi.host_metrics.get_memory_total(xapi.host.get_metrics(host)))
    assert 0 < free <= total
    assert int(xapi.host.compute_memory_overhead(host)) >= 0
