"""vm-* actions: install, lifecycle, clone/copy/snapshot, uninstall, disks, CDs, VIFs,
memory limits. VMs are chosen with the VM selectors (select.py)."""
from __future__ import annotations

import asyncio

from ...datamodel import NULL_REF
from ...errors import ApiError
from ...services.network.nat import NAT_KEY
from ..errors import CliFailure
from ..generic import VIEWS
from ..select import View, each, select
from ..table import command

# vm-clone / vm-copy / vm-snapshot and vm-memory-* act on templates too.
ANY_VM = View("vm", "VM")
SPINNER = "|/-\\"


async def run_op(ctx, method: str, *params):
    """`ctx.call`, or with --progress the Async form, polling the task and drawing
    ` NN% <spinner> ####` on stderr as xe does for vm-start & co."""
    if not ctx.flag("progress"):
        return await ctx.call(method, *params)
    task = await ctx.call(f"Async.{method}", *params)
    tick = 0
    try:
        while True:
            rec = await ctx.call("task.get_record", task)
            pct = int(float(rec["progress"]) * 100)
            await ctx.io.stderr(f"\r {pct:3d}% {SPINNER[tick % 4]} {'#' * (pct // 2)}")
            tick += 1
            if rec["status"] != "pending":
                break
            await asyncio.sleep(0.1)
        await ctx.io.stderr("\n")
        if rec["status"] != "success":
            raise ApiError(*(rec["error_info"] or ["INTERNAL_ERROR", "task failed"]))
        return rec["result"]
    finally:
        try:
            await ctx.call("task.destroy", task)
        except ApiError:
            pass


async def uuid_of(ctx, cname: str, ref: str) -> str:
    return await ctx.call(f"{cname}.get_uuid", ref)


def _vm_cmd(name, help, optional=(), used=(), std=False, view=None):
    """A VM-selector command whose action is `op(ctx, vm)`."""
    def wrap(op):
        async def run(ctx):
            vms = await select(ctx, view or VIEWS["vm"], used=used)
            await each(ctx, "VM", vms, lambda vm: op(ctx, vm))
        command(name, optional=optional, selectors="vm", std=std, help=help)(run)
        return op
    return wrap


@command("vm-install", reqd=("new-name-label",),
         optional=("template", "template-uuid", "template-name", "template-name-label",
                   "sr-uuid", "sr-name-label"), std=True,
         help="Install a new VM from a template: clone (or copy to the SR given) and "
              "provision its disks. Prints the new VM's uuid.")
async def vm_install(ctx):
    wanted = next((ctx.param(k) for k in ("template", "template-uuid", "template-name",
                                          "template-name-label") if ctx.param(k)), None)
    if wanted is None:
        raise CliFailure("Required parameter not found: template")
    records = await ctx.all_records("VM")
    byuuid = [r for r, rec in records.items() if rec["uuid"] == wanted]
    if byuuid and not records[byuuid[0]]["is_a_template"]:
        raise CliFailure("Can only install from templates")
    found = byuuid or [r for r, rec in records.items()
                       if rec["is_a_template"] and rec["name_label"] == wanted]
    if not found:
        raise CliFailure("No templates matched")
    if len(found) > 1:
        raise CliFailure("More than one matching template found")
    template = found[0]
    sr = NULL_REF
    if ctx.param("sr-uuid"):
        sr = await ctx.by_uuid("SR", ctx.param("sr-uuid"))
    elif ctx.param("sr-name-label"):
        srs = await ctx.call("SR.get_by_name_label", ctx.param("sr-name-label"))
        if not srs:
            raise CliFailure(f"No SR found with name-label {ctx.param('sr-name-label')}")
        sr = srs[0]
    name = ctx.reqd("new-name-label")
    if sr != NULL_REF:
        vm = await ctx.call("VM.copy", template, name, sr)
    else:
        vm = await ctx.call("VM.clone", template, name)
    await ctx.call("VM.set_name_description", vm, "Installed via xe CLI")
    if sr != NULL_REF:
        pool = (await ctx.call("pool.get_all"))[0]
        if await ctx.call("pool.get_default_SR", pool) == NULL_REF:
            await ctx.call("pool.set_default_SR", pool, sr)   # where provision puts disks
    await ctx.call("VM.provision", vm)
    await ctx.call("VM.set_is_a_template", vm, False)
    await _default_nic(ctx, vm)
    await ctx.items([await uuid_of(ctx, "VM", vm)])


async def _default_nic(ctx, vm):
    """Beyond xapi: a VM installed from a template without NICs gets one on the host's
    NAT network when there is one (setting nat_network), so it has an address at once."""
    if await ctx.call("VM.get_VIFs", vm):
        return
    nat = [ref for ref, rec in (await ctx.all_records("network")).items()
           if NAT_KEY in rec["other_config"]]
    if nat:
        await ctx.call("VIF.create", {"VM": vm, "network": nat[0], "device": "0", "MAC": "",
                                      "MTU": "1500", "other_config": {},
                                      "qos_algorithm_type": "", "qos_algorithm_params": {}})


@_vm_cmd("vm-start", "Start the selected VM(s).", ("force", "on", "paused", "progress"),
         used=("on", "paused"), std=True)
async def vm_start(ctx, vm):
    if ctx.param("on"):
        hosts = [r for r, rec in (await ctx.all_records("host")).items()
                 if ctx.param("on") in (rec["uuid"], rec["name_label"], rec["hostname"])]
        if not hosts:
            raise CliFailure("No matching hosts found")
        return await run_op(ctx, "VM.start_on", vm, hosts[0], ctx.flag("paused"),
                            ctx.flag("force"))
    await run_op(ctx, "VM.start", vm, ctx.flag("paused"), ctx.flag("force"))


@_vm_cmd("vm-shutdown", "Shut down the selected VM(s); --force stops them at once.",
         ("force", "progress"), std=True)
async def vm_shutdown(ctx, vm):
    await run_op(ctx, "VM.hard_shutdown" if ctx.flag("force") else "VM.clean_shutdown", vm)


@_vm_cmd("vm-reboot", "Reboot the selected VM(s); --force resets them at once.",
         ("force",), std=True)
async def vm_reboot(ctx, vm):
    await run_op(ctx, "VM.hard_reboot" if ctx.flag("force") else "VM.clean_reboot", vm)


@_vm_cmd("vm-suspend", "Suspend the selected VM(s).", ("progress",), std=True)
async def vm_suspend(ctx, vm):
    await run_op(ctx, "VM.suspend", vm)


@_vm_cmd("vm-resume", "Resume the selected VM(s).", ("force", "on", "progress"),
         used=("on",), std=True)
async def vm_resume(ctx, vm):
    await run_op(ctx, "VM.resume", vm, False, ctx.flag("force"))


@_vm_cmd("vm-pause", "Pause the selected VM(s).")
async def vm_pause(ctx, vm):
    await ctx.call("VM.pause", vm)


@_vm_cmd("vm-unpause", "Unpause the selected VM(s).")
async def vm_unpause(ctx, vm):
    await ctx.call("VM.unpause", vm)


@_vm_cmd("vm-restart-device-models", "Restart the device models of the selected VM(s).")
async def vm_restart_device_models(ctx, vm):
    await ctx.call("VM.restart_device_models", vm)


@command("vm-destroy", reqd=("uuid",),
         help="Destroy the VM record; its disks are left alone.")
async def vm_destroy(ctx):
    await ctx.call("VM.destroy", await ctx.by_uuid("VM", ctx.reqd("uuid")))


async def _owned_vdis(ctx, vm: str) -> list[str]:
    """The VDIs vm-uninstall removes: those of owner VBDs, plus the suspend VDI."""
    rec = await ctx.call("VM.get_record", vm)
    out = []
    for vbd in rec["VBDs"]:
        vbd_rec = await ctx.call("VBD.get_record", vbd)
        if "owner" in vbd_rec["other_config"] and vbd_rec["VDI"] != NULL_REF \
                and not vbd_rec["empty"]:
            out.append(vbd_rec["VDI"])
    if rec.get("suspend_VDI", NULL_REF) != NULL_REF:
        out.append(rec["suspend_VDI"])
    return list(dict.fromkeys(out))


@command("vm-uninstall", optional=("force",), selectors="vm", std=True,
         help="Uninstall the VM(s): destroy them, their snapshots and their own disks.")
async def vm_uninstall(ctx):
    # As xapi: templates and snapshots can be chosen too (not the control domain).
    vms = [vm for vm in await select(ctx, ANY_VM)
           if not await ctx.call("VM.get_is_control_domain", vm)]
    await uninstall(ctx, vms)


async def uninstall(ctx, vms: list[str]):
    """Destroy `vms`, their snapshots and their own disks (asking first unless --force):
    vm-uninstall, snapshot-uninstall."""
    plan, seen = [], set()
    for vm in vms:
        rec = await ctx.call("VM.get_record", vm)
        for one in [vm, *rec["snapshots"]]:
            if one not in seen:
                seen.add(one)
                plan.append((one, await ctx.call("VM.get_record", one),
                             await _owned_vdis(ctx, one)))
    vdis = list(dict.fromkeys(v for _, _, vs in plan for v in vs))
    if not ctx.flag("force"):
        await ctx.message("The following items are about to be destroyed")
        for _, rec, _ in plan:
            await ctx.message(f"VM : {rec['uuid']} ({rec['name_label']})")
        for vdi in vdis:
            vrec = await ctx.call("VDI.get_record", vdi)
            others = {(await ctx.call("VBD.get_VM", b)) for b in vrec["VBDs"]}
            shared = " ** WARNING: disk is shared by other VMs" \
                if others - {p[0] for p in plan} else ""
            await ctx.message(f"VDI: {vrec['uuid']} ({vrec['name_label']}){shared}")
        await ctx.message("Type 'yes' to continue")
        answer = (await ctx.io.prompt()).strip()
        if answer.lower() != "yes":
            return await ctx.message(f"Aborted (you typed: '{answer}')")
    for vm, rec, _ in plan:
        if rec["power_state"] != "Halted":
            await ctx.call("VM.hard_shutdown", vm)
    for vm, _, _ in reversed(plan):
        await ctx.call("VM.destroy", vm)
    for vdi in vdis:
        try:
            await ctx.call("VDI.destroy", vdi)
        except ApiError as e:
            if e.code != "HANDLE_INVALID":
                raise   # else gone already: a suspended VM's image goes with its shutdown
    await ctx.message("All objects destroyed")


async def _copy_like(ctx, method, *extra, single=False):
    vms = await select(ctx, ANY_VM, used=("new-name-label", "new-name-description",
                                          "sr-uuid", "ignore-vdi-uuids"), single=single)
    out = []
    for vm in vms:
        new = await ctx.call(method, vm, ctx.reqd("new-name-label"), *extra)
        if ctx.param("new-name-description") is not None:
            await ctx.call("VM.set_name_description", new, ctx.param("new-name-description"))
        out.append(await uuid_of(ctx, "VM", new))
    await ctx.items(out)


@command("vm-clone", reqd=("new-name-label",), optional=("new-name-description",),
         selectors="vm", std=True, help="Clone the VM(s) or template(s); prints the new uuid.")
async def vm_clone(ctx):
    await _copy_like(ctx, "VM.clone")


@command("vm-copy", reqd=("new-name-label",), optional=("new-name-description", "sr-uuid"),
         selectors="vm", std=True,
         help="Copy a VM with full copies of its disks (to sr-uuid); prints the new uuid.")
async def vm_copy(ctx):
    sr = await ctx.by_uuid("SR", ctx.param("sr-uuid")) if ctx.param("sr-uuid") else NULL_REF
    await _copy_like(ctx, "VM.copy", sr, single=True)


@command("vm-snapshot", reqd=("new-name-label",),
         optional=("new-name-description", "ignore-vdi-uuids"), selectors="vm", std=True,
         help="Snapshot the VM(s); prints the snapshot uuid.")
async def vm_snapshot(ctx):
    ignore = [await ctx.by_uuid("VDI", u) for u in
              (ctx.param("ignore-vdi-uuids") or "").split(",") if u]
    await _copy_like(ctx, "VM.snapshot", ignore)

