"""xe vm-migrate: within the pool, VM.pool_migrate, or VM.migrate_send when disks move
(vdi:<vdi uuid>=<sr uuid>); with remote-master (another pool) xe logs in there with
remote-username/remote-password, asks that pool's host.migrate_receive for the host
named (host=, on remote-network= or its management network) and gives the map to
VM.migrate_send here, with vdi:<vdi uuid>=<sr uuid there> (destination-sr-uuid= for
the disks not named) and vif:<vif uuid>=<network uuid there>; xe's choice of call is
xapi's (cli_operations.ml)."""
from __future__ import annotations

import asyncio

from ...datamodel import NULL_REF
from ...services.pool.migrate_remote import RemotePool
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


def _network_of(pifs: dict, host: str) -> str:
    """The network to receive on: the host's management network first."""
    mine = sorted((rec for rec in pifs.values() if rec["host"] == host),
                  key=lambda rec: not rec["management"])
    return mine[0]["network"] if mine else NULL_REF


async def _migrate(ctx, vm):
    vdis = prefixed(ctx, "vdi")
    options = {k: ctx.param(k) for k in ("force", "live", "copy", "compress")
               if ctx.param(k) is not None}
    if not vdis and not any(ctx.param(k) for k in _SEND):
        return await run_op(ctx, "VM.pool_migrate", vm, await _host(ctx), options)
    if ctx.param("remote-master"):
        return await _to_other_pool(ctx, vm, vdis, options)
    host = await _host(ctx)
    network = _network_of(await ctx.all_records("PIF"), host)
    dest = await ctx.call("host.migrate_receive", host, network, {})
    vdi_map = {}
    for vdi_uuid, sr_uuid in vdis.items():
        vdi_map[await ctx.by_uuid("VDI", vdi_uuid)] = await ctx.by_uuid("SR", sr_uuid)
    await run_op(ctx, "VM.migrate_send", vm, dest, ctx.param("live") != "false", vdi_map,
                 {}, options, {}, {})


async def _to_other_pool(ctx, vm, vdis: dict, options: dict):
    credentials = (ctx.param("remote-username"), ctx.param("remote-password"))
    if not all(credentials):
        raise CliFailure("remote-master needs remote-username and remote-password")
    remote = RemotePool(ctx.param("remote-master"))
    await asyncio.to_thread(remote.login, *credentials)
    try:
        def there(method, *args):
            return asyncio.to_thread(remote.call, method, *args)
        name = ctx.param("host") or ctx.param("host-uuid")
        hosts = [r for r, rec in (await there("host.get_all_records")).items()
                 if name in (rec["uuid"], rec["name_label"], rec["hostname"])]
        if not name or not hosts:
            raise CliFailure("No matching hosts found")
        if ctx.param("remote-network"):
            network = await there("network.get_by_uuid", ctx.param("remote-network"))
        else:
            network = _network_of(await there("PIF.get_all_records"), hosts[0])
        dest = await there("host.migrate_receive", hosts[0], network, {})
        vdi_map = {await ctx.by_uuid("VDI", v): await there("SR.get_by_uuid", sr)
                   for v, sr in vdis.items()}
        if ctx.param("destination-sr-uuid"):
            every = await there("SR.get_by_uuid", ctx.param("destination-sr-uuid"))
            for vbd in await ctx.call("VM.get_VBDs", vm):
                rec = await ctx.call("VBD.get_record", vbd)
                if rec["type"] != "CD" and not rec["empty"]:
                    vdi_map.setdefault(rec["VDI"], every)
        vif_map = {await ctx.by_uuid("VIF", v): await there("network.get_by_uuid", n)
                   for v, n in prefixed(ctx, "vif").items()}
        await run_op(ctx, "VM.migrate_send", vm, dest, ctx.param("live") != "false",
                     vdi_map, vif_map, options, {}, {})
    finally:
        await asyncio.to_thread(remote.logout)


async def vm_migrate(ctx):
    maps = [k for k in ctx.params if k.startswith(("vdi:", "vif:"))]
    vms = await select(ctx, VIEWS["vm"], used=("host", "host-uuid", "live", "force",
                                                "copy", "compress", *_SEND, *maps))
    await each(ctx, "VM", vms, lambda vm: _migrate(ctx, vm))


command("vm-migrate", selectors="vm",
        optional=("host", "host-uuid", "live", "force", "copy", "compress", "vdi", "vif",
                  "progress", *_SEND),
        help="Move the selected VM(s), running, to another host (host=); disks named "
             "vdi:<vdi uuid>=<sr uuid> are copied to that SR on the way. With "
             "remote-master= remote-username= remote-password= the host is in another "
             "pool: every disk needs an SR there (vdi:, destination-sr-uuid=), every VIF "
             "a network there (vif:<vif uuid>=<network uuid>).")(vm_migrate)
