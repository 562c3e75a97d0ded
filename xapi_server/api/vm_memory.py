"""VM memory and vCPU settings, checked the way xapi checks them.

Static limits and vCPU counts change only while the VM is halted; the dynamic range
and the live vCPU count can also change while it runs (applied to the domain at
once: balloon target = dynamic_max, vCPU hot-plug)."""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.vm.calls import hv_call
from .vm_checks import vm_operation

ORDER_CONSTRAINT = ("Memory limits must satisfy: "
                    "static_min \u2264 dynamic_min \u2264 dynamic_max \u2264 static_max")
VCPU_CONSTRAINT = "VCPU values must satisfy: 0 < VCPUs_at_startup \u2264 VCPUs_max"
MIB = 1024 * 1024


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
    """Check and store new limits; a running VM gets its new balloon target."""
    async with vm_operation(ctx, vm, op):
        rec = ctx.store.record("VM", vm)
        assert_memory_valid(rec, **limits)
        _set(ctx, vm, **{f"memory_{k}": v for k, v in limits.items()})
        if rec["power_state"] == "Running" and "dynamic_max" in limits:
            rt = ctx.server.runtime_of_vm(vm).vms
            await hv_call(rt.hv.set_memory(rec["uuid"], limits["dynamic_max"]))
            await rt.refresh(vm)


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
