"""snapshot-* actions and vm-checkpoint. A snapshot is chosen by `snapshot-uuid=` (or
`uuid=`), as xe does."""
from __future__ import annotations

from ...datamodel import NULL_REF as NULL
from ..errors import CliFailure
from ..table import command
from ..transfer import track_http_operation
from .vm import _copy_like, uninstall

_WHICH = ("uuid", "snapshot-uuid")


async def _snapshot(ctx) -> str:
    uuid = ctx.param("snapshot-uuid") or ctx.param("uuid")
    if not uuid:
        raise CliFailure("Required parameter not found: snapshot-uuid")
    ref = await ctx.by_uuid("VM", uuid)
    if not await ctx.call("VM.get_is_a_snapshot", ref):
        raise CliFailure(f"{uuid} is not a snapshot")
    return ref


@command("vm-checkpoint", reqd=("new-name-label",), optional=("new-name-description",),
         selectors="vm", std=True,
         help="Checkpoint the VM(s): a snapshot with the memory of the running guest; "
              "prints the checkpoint's uuid.")
async def vm_checkpoint(ctx):
    await _copy_like(ctx, "VM.checkpoint")


@command("snapshot-revert", optional=_WHICH,
         help="Revert the VM to the snapshot (a checkpoint leaves it suspended).")
async def snapshot_revert(ctx):
    await ctx.call("VM.revert", await _snapshot(ctx))


@command("snapshot-destroy", optional=_WHICH,
         help="Destroy the snapshot's record (its memory image too); its disks stay.")
async def snapshot_destroy(ctx):
    snap = await _snapshot(ctx)
    if await ctx.call("VM.get_power_state", snap) != "Halted":
        await ctx.call("VM.hard_shutdown", snap)
    await ctx.call("VM.destroy", snap)


@command("snapshot-uninstall", optional=(*_WHICH, "force"),
         help="Destroy the snapshot and its own disks (asks first unless --force).")
async def snapshot_uninstall(ctx):
    await uninstall(ctx, [await _snapshot(ctx)])


@command("snapshot-reset-powerstate", optional=(*_WHICH, "force"),
         help="Force the snapshot's recorded power state to Halted (needs --force).")
async def snapshot_reset_powerstate(ctx):
    snap = await _snapshot(ctx)
    if not ctx.flag("force"):
        raise CliFailure("This operation is extremely dangerous and may cause data loss. "
                         "This operation must be forced (use --force).")
    await ctx.call("VM.power_state_reset", snap)


async def _from_snapshot(ctx, method: str, *extra):
    new = await ctx.call(method, await _snapshot(ctx), ctx.reqd("new-name-label"), *extra)
    if ctx.param("new-name-description") is not None:
        await ctx.call("VM.set_name_description", new, ctx.param("new-name-description"))
    await ctx.items([await ctx.call("VM.get_uuid", new)])


@command("snapshot-clone", reqd=("new-name-label",),
         optional=(*_WHICH, "new-name-description"),
         help="Make a template from the snapshot (its disks cloned); prints its uuid.")
async def snapshot_clone(ctx):
    await _from_snapshot(ctx, "VM.clone")


@command("snapshot-copy", reqd=("new-name-label",),
         optional=(*_WHICH, "new-name-description", "sr-uuid"),
         help="Make a template from the snapshot with full copies of its disks (on "
              "sr-uuid if given); prints its uuid.")
async def snapshot_copy(ctx):
    sr = await ctx.by_uuid("SR", ctx.param("sr-uuid")) if ctx.param("sr-uuid") else NULL
    await _from_snapshot(ctx, "VM.copy", sr)


@command("snapshot-export-to-template", reqd=("filename", "snapshot-uuid"),
         optional=("preserve-power-state", "compress", "metadata", "excluded-device-types"),
         help="Export the snapshot to an XVA file where xe runs; it imports as a template "
              "(compress=true|gzip|zstd; metadata=true: ova.xml only).")
async def snapshot_export_to_template(ctx):
    snap = await _snapshot(ctx)
    if ctx.flag("metadata"):
        path = "/export_metadata"
        query = {"ref": snap, "export_snapshots": "false",
                 "excluded_device_types": ctx.param("excluded-device-types", "")}
    else:
        compress = ctx.param("compress", "false")
        path = "/export"
        query = {"ref": snap,
                 "use_compression": compress if compress in ("true", "gzip", "zstd") else
                 "false",
                 "preserve_power_state": str(ctx.flag("preserve-power-state")).lower()}
    await track_http_operation(ctx, f"Export of VM: {ctx.param('snapshot-uuid')}", False,
                               ctx.reqd("filename"), path, query)
