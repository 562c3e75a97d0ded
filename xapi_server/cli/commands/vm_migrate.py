"""xe vm-migrate: within the pool, VM.pool_migrate, or VM.migrate_send when disks move
(vdi:<vdi uuid>=<sr uuid>); with remote-master (another pool) the server's answer to a
cross-pool VM.migrate_send, as xe's choice of call is xapi's (cli_operations.ml)."""
from __future__ import annotations

from ...datamodel import NULL_REF
from ..errors import CliFailure
from ..generic import VIEWS
from ..select import each, select
from ..table import command
from .storage import prefixed
from .vm import run_op

# Parameters that make xe use VM.migrate_send rather than VM.pool_migrate.
_SEND = ("remote-master", "remote-username", "remote-password", "remote-network",
         "destination-sr-uuid")


async def _host(ctx):
    name = ctx.param("host") or ctx.param("host-uuid")
    hosts = [r for r, rec in (await ctx.all_records("host")).items()
             if name in (rec["uuid"], rec["name_label"], rec["hostname"])]
    if not name or not hosts:
        raise CliFailure("No matching hosts found")
    return hosts[0]


async def _migrate(ctx, vm):
    vdis = prefixed(ctx, "vdi")
    options = {k: ctx.param(k) for k in ("force", "live", "copy", "compress")
               if ctx.param(k) is not None}
    if not vdis and not any(ctx.param(k) for k in _SEND):
        return await run_op(ctx, "VM.pool_migrate", vm, await _host(ctx), options)
    if ctx.param("remote-master"):
        dest = {"master": ctx.param("remote-master")}   # another pool: refused there
    else:
        host = await _host(ctx)
        pifs = [rec for rec in (await ctx.all_records("PIF")).values()
                if rec["host"] == host]
        pifs.sort(key=lambda rec: not rec["management"])   # the management network first
        network = pifs[0]["network"] if pifs else NULL_REF
        dest = await ctx.call("host.migrate_receive", host, network, {})
    vdi_map = {}
    for vdi_uuid, sr_uuid in vdis.items():
        vdi_map[await ctx.by_uuid("VDI", vdi_uuid)] = await ctx.by_uuid("SR", sr_uuid)
    await run_op(ctx, "VM.migrate_send", vm, dest, ctx.param("live") != "false", vdi_map,
                 {}, options, {}, {})


async def vm_migrate(ctx):
    maps = [k for k in ctx.params if k.startswith(("vdi:", "vif:"))]
    vms = await select(ctx, VIEWS["vm"], used=("host", "host-uuid", "live", "force",
                                                "copy", "compress", *_SEND, *maps))
    await each(ctx, "VM", vms, lambda vm: _migrate(ctx, vm))


command("vm-migrate", selectors="vm",
        optional=("host", "host-uuid", "live", "force", "copy", "compress", "vdi",
                  "progress", *_SEND),
        help="Move the selected VM(s), running, to another host (host=); disks named "
             "vdi:<vdi uuid>=<sr uuid> are copied to that SR on the way.")(vm_migrate)
