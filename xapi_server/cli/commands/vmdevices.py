"""vm-disk-list/-add, vm-cd-add/-insert/-eject/-list, vm-vif-list, vm-memory-limits-set."""
from __future__ import annotations

from ...datamodel import NULL_REF
from ...errors import ApiError
from .. import args
from ..errors import CliFailure
from ..generic import VIEWS
from ..records import FIELDS
from ..select import View, each, select
from ..table import command

ANY_VM = View("vm", "VM")
_OWN = ("vbd-params", "vdi-params", "params")


async def record_pairs(ctx, cname: str, rec: dict, spec: str | None, defaults) -> list:
    """(label, value) pairs of `rec` with the fields `spec` (params=) or `defaults`."""
    shown = [f for f in FIELDS[cname] if not f.hidden]
    if spec != "all":
        wanted = set(spec.split(",")) if spec else set(defaults)
        shown = [f for f in shown if f.name in wanted]
    for f in shown:
        await ctx.prefetch(f.needs)
    return [(f.label, f.value(rec, ctx)) for f in shown]


async def _vbds(ctx, vm: str, kind: str) -> list[tuple[str, dict]]:
    out = []
    for vbd in await ctx.call("VM.get_VBDs", vm):
        rec = await ctx.call("VBD.get_record", vbd)
        if rec["type"] == kind:
            out.append((vbd, rec))
    return sorted(out, key=lambda p: p[1]["userdevice"])


async def _device_list(ctx, kind: str, vbd_defaults):
    vms = await select(ctx, VIEWS["vm"], used=_OWN)

    async def one(vm):
        await ctx.prefetch(("VM", "SR", "VDI"))
        for n, (_, vbd) in enumerate(await _vbds(ctx, vm, kind)):
            await ctx.message(f"{'Disk' if kind == 'Disk' else 'CD'} {n} VBD:")
            await ctx.table([await record_pairs(ctx, "VBD", vbd, ctx.param("vbd-params"),
                                                vbd_defaults)])
            if vbd["VDI"] != NULL_REF and ctx.param("vdi-params") != "none":
                vdi = await ctx.call("VDI.get_record", vbd["VDI"])
                await ctx.message(f"{'Disk' if kind == 'Disk' else 'CD'} {n} VDI:")
                await ctx.table([await record_pairs(
                    ctx, "VDI", vdi, ctx.param("vdi-params"),
                    ("uuid", "name-label", "virtual-size", "sr-name-label"))])
    await each(ctx, "VM", vms, one)


@command("vm-disk-list", optional=("vbd-params", "vdi-params"), selectors="vm", std=True,
         help="List the disks of the VM(s): each VBD and its VDI.")
async def vm_disk_list(ctx):
    await _device_list(ctx, "Disk", ("uuid", "vm-name-label", "userdevice"))


@command("vm-cd-list", optional=("vbd-params", "vdi-params"), selectors="vm",
         help="List the CD drives of the VM(s) and the media in them.")
async def vm_cd_list(ctx):
    await _device_list(ctx, "CD", ("uuid", "vm-name-label", "userdevice", "empty"))


async def _plug_if_running(ctx, vm, vbd):
    if await ctx.call("VM.get_power_state", vm) == "Running":
        await ctx.call("VBD.plug", vbd)


@command("vm-disk-add", reqd=("disk-size", "device"), optional=("sr-uuid",), selectors="vm",
         help="Add a new disk (a VDI named 'Created by xe') to the VM(s), on sr-uuid or "
              "the pool's default SR; hot-plugged when the VM runs.")
async def vm_disk_add(ctx):
    size = args.size(ctx.reqd("disk-size"), "disk-size")
    device = ctx.reqd("device")
    if ctx.param("sr-uuid"):
        sr = await ctx.by_uuid("SR", ctx.param("sr-uuid"))
    else:
        pool = (await ctx.call("pool.get_all"))[0]
        sr = await ctx.call("pool.get_default_SR", pool)
        if sr == NULL_REF:
            raise CliFailure("No SR specified and Pool default SR is null")
    vms = await select(ctx, VIEWS["vm"], used=("disk-size", "device", "sr-uuid"))

    async def one(vm):
        vdi = await ctx.call("VDI.create", {
            "SR": sr, "virtual_size": size, "type": "user", "sharable": False,
            "read_only": False, "other_config": {}, "name_label": "Created by xe"})
        vbd = await ctx.call("VBD.create", {
            "VM": vm, "VDI": vdi, "userdevice": device, "bootable": False, "mode": "RW",
            "type": "Disk", "empty": False, "other_config": {"owner": ""},
            "qos_algorithm_type": "", "qos_algorithm_params": {}})
        await _plug_if_running(ctx, vm, vbd)
    await each(ctx, "VM", vms, one)


async def _iso(ctx, name: str) -> str:
    srs = await ctx.all_records("SR")
    for ref, rec in (await ctx.all_records("VDI")).items():
        if rec["name_label"] == name and srs.get(rec["SR"], {}).get("content_type") == "iso":
            return ref
    raise CliFailure(f"CD {name} not found!")


@command("vm-cd-add", reqd=("cd-name", "device"), selectors="vm",
         help="Add a CD drive holding the ISO named cd-name (a VDI of an iso SR).")
async def vm_cd_add(ctx):
    vdi = await _iso(ctx, ctx.reqd("cd-name"))
    vms = await select(ctx, VIEWS["vm"], used=("cd-name", "device"))

    async def one(vm):
        vbd = await ctx.call("VBD.create", {
            "VM": vm, "VDI": vdi, "userdevice": ctx.reqd("device"), "bootable": False,
            "mode": "RO", "type": "CD", "empty": False, "other_config": {},
            "qos_algorithm_type": "", "qos_algorithm_params": {}})
        await _plug_if_running(ctx, vm, vbd)
    await each(ctx, "VM", vms, one)


@command("vm-cd-insert", reqd=("cd-name",), selectors="vm",
         help="Insert the ISO named cd-name into the VM's one empty CD drive.")
async def vm_cd_insert(ctx):
    vdi = await _iso(ctx, ctx.reqd("cd-name"))
    vms = await select(ctx, VIEWS["vm"], used=("cd-name",))

    async def one(vm):
        empty = [ref for ref, rec in await _vbds(ctx, vm, "CD") if rec["empty"]]
        if not empty:
            raise ApiError("VM_NO_EMPTY_CD_VBD", vm)
        if len(empty) > 1:
            raise CliFailure("Two or more empty CD devices found. Please use vbd-insert")
        await ctx.call("VBD.insert", empty[0], vdi)
    await each(ctx, "VM", vms, one)


@command("vm-cd-eject", selectors="vm", help="Eject the medium from the VM's one CD drive.")
async def vm_cd_eject(ctx):
    vms = await select(ctx, VIEWS["vm"])

    async def one(vm):
        cds = await _vbds(ctx, vm, "CD")
        if not cds:
            raise CliFailure("No CDs found")
        if len(cds) > 1:
            raise CliFailure("Two or more CDs found. Please use vbd-eject")
        await ctx.call("VBD.eject", cds[0][0])
    await each(ctx, "VM", vms, one)


@command("vm-vif-list", optional=("params",), selectors="vm",
         help="List the VIFs of the VM(s).")
async def vm_vif_list(ctx):
    ctx.params["multiple"] = "true"   # as xe: always --multiple
    vms = await select(ctx, VIEWS["vm"], used=("params",))
    await ctx.prefetch(("VM", "network"))
    rows = []
    for vm in vms:
        for vif in await ctx.call("VM.get_VIFs", vm):
            rec = await ctx.call("VIF.get_record", vif)
            rows.append(await record_pairs(
                ctx, "VIF", rec, ctx.param("params"),
                ("uuid", "device", "MAC", "network-uuid", "network-name-label",
                 "vm-name-label")))
    await ctx.table(rows)


_LIMITS = ("static-min", "static-max", "dynamic-min", "dynamic-max")


@command("vm-memory-limits-set", reqd=_LIMITS, selectors="vm",
         help="Set the four memory limits of the VM(s) (sizes take units: 512MiB).")
async def vm_memory_limits_set(ctx):
    values = [args.size(ctx.reqd(k), k) for k in _LIMITS]
    vms = await select(ctx, ANY_VM, used=_LIMITS)
    await each(ctx, "VM", vms, lambda vm: ctx.call("VM.set_memory_limits", vm, *values))
