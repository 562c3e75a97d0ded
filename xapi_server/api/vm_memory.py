"""VM memory and vCPU settings, checked the way xapi checks them.

Static limits and vCPU counts change only while the VM is halted; the dynamic range,
the balloon target, the scheduler's VCPUs_params and the live vCPU count can also
change while it runs (applied to the domain at once: balloon target, cgroup shares
and quota, vCPU hot-plug; services/vm/qos.py says what maps to what)."""
from __future__ import annotations

import asyncio

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.vm import qos
from ..services.vm.calls import hv_call
from .vm_checks import vm_operation

ORDER_CONSTRAINT = ("Memory limits must satisfy: "
                    "static_min \u2264 dynamic_min \u2264 dynamic_max \u2264 static_max")
VCPU_CONSTRAINT = "VCPU values must satisfy: 0 < VCPUs_at_startup \u2264 VCPUs_max"
MIB = 1024 * 1024
WAIT_MEMORY_TARGET_TIMEOUT = 256.0   # seconds, xapi's wait_memory_target_timeout
WAIT_MEMORY_TARGET_TOLERANCE = MIB


def memory_valid(smin, dmin, dmax, smax) -> bool:
    return 0 <= smin <= dmin <= dmax <= smax


def assert_memory_valid(rec: dict, **override):
    m = {k: override.get(k, rec[f"memory_{k}"])
         for k in ("static_min", "dynamic_min", "dynamic_max", "static_max")}
    if not memory_valid(m["static_min"], m["dynamic_min"], m["dynamic_max"], m["static_max"]):
        raise ApiError("MEMORY_CONSTRAINT_VIOLATION", ORDER_CONSTRAINT)


def memory_overhead(rec: dict) -> int:
    """QEMU's own footprint for a guest, estimated: page tables and device state
    (about 1/128 of guest memory), 2 MiB per vCPU and a fixed 32 MiB."""
    return rec["memory_static_max"] // 128 + rec["VCPUs_max"] * 2 * MIB + 32 * MIB


def _set(ctx, vm, **changes):
    ctx.store.update("VM", vm, **changes)
    ctx.store.update("VM", vm, memory_overhead=memory_overhead(ctx.store.record("VM", vm)))


async def _set_memory(ctx, vm, op, **limits):
    """Check and store new limits; the balloon target becomes dynamic_max (xapi's
    target when the host has room), at once for a running VM."""
    async with vm_operation(ctx, vm, op):
        rec = ctx.store.record("VM", vm)
        assert_memory_valid(rec, **limits)
        _set(ctx, vm, **{f"memory_{k}": v for k, v in limits.items()})
        if "dynamic_max" in limits or "dynamic_min" in limits:
            await _balloon(ctx, vm, ctx.store.record("VM", vm)["memory_dynamic_max"])


async def _balloon(ctx, vm, target: int):
    """memory_target := target; a running VM's balloon follows."""
    rec = ctx.store.record("VM", vm)
    ctx.store.update("VM", vm, memory_target=target)
    if rec["power_state"] == "Running":
        rt = ctx.server.runtime_of_vm(vm).vms
        await hv_call(rt.hv.set_memory(rec["uuid"], target))
        await rt.refresh(vm)


@implements("VM.set_memory_target_live")
async def set_memory_target_live(ctx, self, target):
    async with vm_operation(ctx, self, "changing_memory_live"):
        rec = ctx.store.record("VM", self)
        if not rec["memory_dynamic_min"] <= target <= rec["memory_dynamic_max"]:
            raise ApiError("MEMORY_CONSTRAINT_VIOLATION",
                           "memory_dynamic_min \u2264 target \u2264 memory_dynamic_max")
        await _balloon(ctx, self, target)


@implements("VM.wait_memory_target_live")
async def wait_memory_target_live(ctx, self):
    """Until the guest's balloon driver has brought the domain within 1 MiB of the
    target (a guest without one never gets there: VM_MEMORY_TARGET_WAIT_TIMEOUT)."""
    async with vm_operation(ctx, self, "awaiting_memory_live"):
        rt = ctx.server.runtime_of_vm(self).vms
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_MEMORY_TARGET_TIMEOUT
        while True:
            rec = ctx.store.record("VM", self)
            target = rec["memory_target"] or rec["memory_dynamic_max"]
            actual = (await hv_call(rt.hv.state(rec["uuid"]))).memory_bytes
            if abs(actual - target) <= WAIT_MEMORY_TARGET_TOLERANCE:
                await rt.refresh(self)
                return
            if loop.time() > deadline:
                raise ApiError("VM_MEMORY_TARGET_WAIT_TIMEOUT", ctx.task or "OpaqueRef:NULL")
            await asyncio.sleep(0.5)   # a cancelled task ends here (TASK_CANCELLED)


@implements("VM.maximise_memory")
def maximise_memory(ctx, self, total, approximate):
    """The largest static_max (whole MiB) that, with its overhead, fits in `total`
    (xapi bisects; the overhead here is linear, so it is solved directly)."""
    rec = dict(ctx.store.record("VM", self))
    if approximate:
        rec["VCPUs_max"] = 64
    fixed = memory_overhead({**rec, "memory_static_max": 0})
    best = max(0, (total - fixed) * 128 // 129)
    while best and best + memory_overhead({**rec, "memory_static_max": best}) > total:
        best -= 1
    return best // MIB * MIB


@implements("VM.set_memory_limits")
async def set_memory_limits(ctx, self, static_min, static_max, dynamic_min, dynamic_max):
    await _set_memory(ctx, self, "changing_memory_limits", static_min=static_min,
                      static_max=static_max, dynamic_min=dynamic_min,
                      dynamic_max=dynamic_max)


@implements("VM.set_memory")
async def set_memory(ctx, self, value):
    await _set_memory(ctx, self, "changing_memory_limits", static_max=value,
                      dynamic_min=value, dynamic_max=value)


@implements("VM.set_memory_static_range")
async def set_memory_static_range(ctx, self, min, max):
    await _set_memory(ctx, self, "changing_static_range", static_min=min, static_max=max)


@implements("VM.set_memory_static_max")
async def set_memory_static_max(ctx, self, value):
    await _set_memory(ctx, self, "changing_static_range", static_max=value)


@implements("VM.set_memory_static_min")
async def set_memory_static_min(ctx, self, value):
    await _set_memory(ctx, self, "changing_static_range", static_min=value)


@implements("VM.set_memory_dynamic_range")
async def set_memory_dynamic_range(ctx, self, min, max):
    await _set_memory(ctx, self, "changing_dynamic_range", dynamic_min=min, dynamic_max=max)


@implements("VM.set_memory_dynamic_max")
async def set_memory_dynamic_max(ctx, self, value):
    await _set_memory(ctx, self, "changing_dynamic_range", dynamic_max=value)


@implements("VM.set_memory_dynamic_min")
async def set_memory_dynamic_min(ctx, self, value):
    await _set_memory(ctx, self, "changing_dynamic_range", dynamic_min=value)


@implements("VM.set_VCPUs_max")
async def set_VCPUs_max(ctx, self, value):
    async with vm_operation(ctx, self, "changing_VCPUs"):
        if value < 1 or value < ctx.store.record("VM", self)["VCPUs_at_startup"]:
            raise ApiError("INVALID_VALUE", VCPU_CONSTRAINT, value)
        _set(ctx, self, VCPUs_max=value)


@implements("VM.set_VCPUs_at_startup")
async def set_VCPUs_at_startup(ctx, self, value):
    async with vm_operation(ctx, self, "changing_VCPUs"):
        if value < 1 or value > ctx.store.record("VM", self)["VCPUs_max"]:
            raise ApiError("INVALID_VALUE", VCPU_CONSTRAINT, value)
        _set(ctx, self, VCPUs_at_startup=value)


@implements("VM.set_VCPUs_number_live")
async def set_VCPUs_number_live(ctx, self, nvcpu):
    rt = ctx.server.runtime_of_vm(self).vms
    async with vm_operation(ctx, self, "changing_VCPUs_live"):
        rec = ctx.store.record("VM", self)
        booted = rt.boot_records.get(self, rec)
        if nvcpu < 1 or nvcpu > booted["VCPUs_max"]:
            raise ApiError("INVALID_VALUE", "set_VCPUs_number_live", nvcpu)
        await hv_call(rt.hv.set_vcpus(rec["uuid"], nvcpu))
        if self in rt.boot_records:
            rt.boot_records[self] = {**rt.boot_records[self], "VCPUs_at_startup": nvcpu}
        await rt.refresh(self)


@implements("VM.compute_memory_overhead")
def compute_memory_overhead(ctx, vm):
    return memory_overhead(ctx.store.record("VM", vm))


# -- VCPUs_params: the scheduler's weight and cap (services/vm/qos.py) --------------------

async def _set_vcpus_params(ctx, vm, params: dict, live_only: bool = False):
    rec = ctx.store.record("VM", vm)
    qos.cpu_tune(params, strict=True)
    if live_only and rec["power_state"] != "Running":
        raise ApiError("VM_BAD_POWER_STATE", vm, "running", rec["power_state"].lower())
    old = rec["VCPUs_params"]
    ctx.store.update("VM", vm, VCPUs_params=params)
    try:
        await qos.apply_cpu(ctx.server, vm)
    except ApiError:
        ctx.store.update("VM", vm, VCPUs_params=old)
        raise


@implements("VM.set_VCPUs_params")
async def set_VCPUs_params(ctx, self, value):
    await _set_vcpus_params(ctx, self, dict(value))


@implements("VM.add_to_VCPUs_params")
async def add_to_VCPUs_params(ctx, self, key, value):
    current = ctx.store.record("VM", self)["VCPUs_params"]
    if key in current:
        raise ApiError("MAP_DUPLICATE_KEY", "VM", "VCPUs_params", self, key)
    await _set_vcpus_params(ctx, self, {**current, key: value})


@implements("VM.remove_from_VCPUs_params")
async def remove_from_VCPUs_params(ctx, self, key):
    current = dict(ctx.store.record("VM", self)["VCPUs_params"])
    current.pop(key, None)
    await _set_vcpus_params(ctx, self, current)


@implements("VM.add_to_VCPUs_params_live")
async def add_to_VCPUs_params_live(ctx, self, key, value):
    """Unlike add_to_VCPUs_params, an existing key is replaced (it is a live change)."""
    async with vm_operation(ctx, self, "changing_VCPUs_live"):
        current = ctx.store.record("VM", self)["VCPUs_params"]
        await _set_vcpus_params(ctx, self, {**current, key: value}, live_only=True)
