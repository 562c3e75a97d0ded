"""Which VM operations are allowed now, and the bookkeeping around running one.

Mirrors xapi's xapi_vm_lifecycle: `check_operation_error` applies the checks in
xapi's order (blocked → power state → concurrency → template → snapshot → provision
→ revert; the first failure wins), `allowed_operations` is recomputed from the same
function after every change, and `vm_operation` records an operation in
current_operations for as long as it runs, so concurrent calls on one VM are
serialised exactly as xapi does (OTHER_OPERATION_IN_PROGRESS).
"""
from __future__ import annotations

from contextlib import asynccontextmanager

from ..errors import ApiError
from ..store import new_ref

ANY = ("Halted", "Paused", "Running", "Suspended")
_HALTED, _PAUSED, _RUNNING, _SUSPENDED = ("Halted",), ("Paused",), ("Running",), ("Suspended",)

# Power states each operation accepts (xapi allowed_power_states; its order, which
# is also the order of the "expected" parameter of VM_BAD_POWER_STATE).
_POWER = {
    **dict.fromkeys(("start", "start_on", "provision", "make_into_template",
                     "changing_shadow_memory", "changing_NVRAM", "changing_VCPUs",
                     "changing_static_range", "changing_memory_limits"), _HALTED),
    "unpause": _PAUSED,
    **dict.fromkeys(("resume", "resume_on", "csvm"), _SUSPENDED),
    **dict.fromkeys(("clean_shutdown", "clean_reboot", "pause", "suspend", "pool_migrate",
                     "send_sysrq", "send_trigger", "changing_VCPUs_live",
                     "changing_memory_live", "awaiting_memory_live", "call_plugin",
                     "snapshot_with_quiesce", "sysprep", "changing_shadow_memory_live"),
                    _RUNNING),
    "hard_reboot": ("Paused", "Running"),
    **dict.fromkeys(("hard_shutdown", "shutdown", "checkpoint", "get_boot_record"),
                    ("Paused", "Suspended", "Running")),
    **dict.fromkeys(("destroy", "export", "create_template"), ("Halted", "Suspended")),
    "changing_dynamic_range": ("Halted", "Running"),
    "migrate_send": ("Halted", "Suspended", "Running"),
}

_TEMPLATE_OPS = {"changing_dynamic_range", "changing_static_range", "changing_memory_limits",
                 "changing_shadow_memory", "changing_VCPUs", "changing_NVRAM", "clone",
                 "copy", "export", "metadata_export", "provision"}
_SNAPSHOT_OPS = {"revert", "clone", "copy", "export", "destroy", "hard_shutdown",
                 "metadata_export"}
# Operations that may overlap with each other (xapi is_allowed_concurrently).
_GROUPS = [{"clone", "copy", "export"}, {"snapshot", "checkpoint"}, {"get_boot_record"}]

# What allowed_operations lists: the operations this server implements (xapi lists
# `export` too, for halted and suspended VMs, templates and snapshots: GET /export).
CONSIDERED = ("snapshot", "clone", "copy", "revert", "provision", "start", "start_on",
              "pause", "unpause", "clean_shutdown", "clean_reboot", "hard_shutdown",
              "power_state_reset", "hard_reboot", "suspend", "resume", "resume_on",
              "export", "shutdown", "changing_memory_live", "changing_dynamic_range",
              "changing_static_range", "changing_memory_limits", "changing_VCPUs",
              "changing_VCPUs_live", "destroy", "make_into_template", "checkpoint",
              "send_sysrq", "send_trigger")


def allowed_power_states(rec: dict, op: str) -> tuple:
    if op in ("clone", "copy"):
        return ("Halted", "Suspended") if rec["is_a_snapshot"] else _HALTED
    return _POWER.get(op, ANY)


def _concurrent_ok(op: str, running: list[str]) -> bool:
    if not running:
        return True
    if op == "hard_shutdown":
        return "hard_shutdown" not in running
    if op == "hard_reboot":
        return not {"hard_shutdown", "hard_reboot"} & set(running)
    if op == "snapshot" and all(r == "snapshot_with_quiesce" for r in running):
        return True
    if op in ("metadata_export", "clean_shutdown", "clean_reboot") and \
            all(r == "migrate_send" for r in running):
        return True
    return any(op in g and all(r in g for r in running) for g in _GROUPS)


def check_operation_error(ref: str, rec: dict, op: str) -> ApiError | None:
    blocked = rec["blocked_operations"]
    if op in blocked:
        return ApiError("OPERATION_BLOCKED", ref, blocked[op])
    states = allowed_power_states(rec, op)
    if rec["power_state"] not in states:
        return ApiError("VM_BAD_POWER_STATE", ref, ", ".join(s.lower() for s in states),
                        rec["power_state"].lower())
    current = rec["current_operations"]
    if not _concurrent_ok(op, list(current.values())):
        task, running = next(iter(current.items()))
        return ApiError("OTHER_OPERATION_IN_PROGRESS", "VM", ref, running, task)
    if rec["is_a_template"] and not rec["is_a_snapshot"]:
        ok = op in _TEMPLATE_OPS or (op == "destroy" and not rec["is_default_template"])
        if not ok:
            return ApiError("VM_IS_TEMPLATE", ref, op)
    if rec["is_a_snapshot"] and op not in _SNAPSHOT_OPS:
        return ApiError("VM_IS_SNAPSHOT", ref, op)
    if op == "provision" and not rec["is_a_template"]:
        return ApiError("PROVISION_ONLY_ALLOWED_ON_TEMPLATE")
    if op == "revert" and not rec["is_a_snapshot"]:
        return ApiError("REVERT_ONLY_ALLOWED_ON_SNAPSHOT")
    if rec["is_control_domain"] and op not in ("changing_memory_live", "changing_VCPUs_live",
                                               "changing_dynamic_range"):
        return ApiError("OPERATION_NOT_ALLOWED", "This operation is not allowed on dom0")
    return None


def assert_operation_valid(store, ref: str, op: str):
    err = check_operation_error(ref, store.record("VM", ref), op)
    if err is not None:
        raise err


def update_allowed_operations(store, ref: str):
    """Recompute allowed_operations (call after any change that can affect it)."""
    if not store.exists("VM", ref):
        return
    rec = store.record("VM", ref)
    allowed = [op for op in CONSIDERED if check_operation_error(ref, rec, op) is None]
    if allowed != rec["allowed_operations"]:
        store.update("VM", ref, allowed_operations=allowed)


@asynccontextmanager
async def vm_operation(ctx, ref: str, op: str):
    """Check `op`, then hold it in current_operations (keyed by the task, as xapi)
    until the block ends, keeping allowed_operations true on both edges. The check
    and the claim happen without an await in between, so two calls cannot both pass."""
    store = ctx.store
    assert_operation_valid(store, ref, op)
    key = ctx.task or new_ref()
    store.update("VM", ref, current_operations={**store.record("VM", ref)["current_operations"],
                                                key: op})
    update_allowed_operations(store, ref)
    try:
        yield
    finally:
        if store.exists("VM", ref):
            current = dict(store.record("VM", ref)["current_operations"])
            current.pop(key, None)
            store.update("VM", ref, current_operations=current)
            update_allowed_operations(store, ref)
