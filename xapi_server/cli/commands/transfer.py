"""vm-export / vm-import: the CLI side of the XVA handlers (xapi cli_operations.ml
`export_common`, `vm_import`).

Each runs one HTTP transfer through cli/transfer.track_http_operation: a task, the xe
client ordered to GET or PUT the file on our URL with the CLI session and that task,
then the task's result (for an import, the new VMs) or its error is what xe reports.
"""
from __future__ import annotations

import re

from ...datamodel import NULL_REF
from ..errors import CliFailure
from ..select import select
from ..table import command
from ..transfer import track_http_operation
from .vm import ANY_VM, uuid_of

_REF = re.compile(r"OpaqueRef:[0-9A-Za-z-]+")


@command("vm-export", reqd=("filename",),
         optional=("compress", "preserve-power-state", "metadata", "include-snapshots",
                   "excluded-device-types"), selectors="vm",
         help="Export a halted or suspended VM to an XVA file where xe runs "
              "(compress=true|gzip|zstd; metadata=true: ova.xml only).")
async def vm_export(ctx):
    used = ("filename", "compress", "preserve-power-state", "metadata", "include-snapshots",
            "excluded-device-types")
    vm = (await select(ctx, ANY_VM, used=used, single=True))[0]
    compress = ctx.param("compress", "false")
    compression = {"true": "true", "gzip": "gzip", "zstd": "zstd"}.get(compress, "false")
    uuid = await uuid_of(ctx, "VM", vm)
    if ctx.flag("metadata"):
        path = "/export_metadata"
        query = {"ref": vm, "export_snapshots": str(ctx.flag("include-snapshots")).lower(),
                 "excluded_device_types": ctx.param("excluded-device-types", "")}
    else:
        path = "/export"
        query = {"ref": vm, "use_compression": compression,
                 "preserve_power_state": str(ctx.flag("preserve-power-state")).lower()}
    await track_http_operation(ctx, f"Export of VM: {uuid}", False, ctx.reqd("filename"),
                               path, query)


@command("vm-import", reqd=("filename",),
         optional=("sr-uuid", "preserve", "force", "metadata", "dry-run"),
         help="Import a VM from an XVA file where xe runs, into the SR given or the "
              "pool's default SR (preserve=true keeps uuids and MACs; force=true ignores "
              "checksum failures). Prints the new VMs' uuids.")
async def vm_import(ctx):
    filename = ctx.reqd("filename")
    query = {"restore": str(ctx.flag("preserve")).lower(),
             "force": str(ctx.flag("force")).lower(),
             "dry_run": str(ctx.flag("dry-run")).lower()}
    if ctx.flag("metadata"):
        path = "/import_metadata"
        query.update({k: v for k, v in ctx.params.items() if k.startswith("vdi:")})
    else:
        path = "/import"
        if ctx.param("sr-uuid"):
            sr = await ctx.call("SR.get_by_uuid", ctx.param("sr-uuid"))
        else:
            pools = await ctx.call("pool.get_all")
            sr = await ctx.call("pool.get_default_SR", pools[0])
            if sr == NULL_REF:
                raise CliFailure("No SR specified and Pool default SR is null")
        query["sr_id"] = sr
    result = await track_http_operation(ctx, f"Import of {filename}", True, filename, path,
                                        query)
    vms = _REF.findall(result or "")
    await ctx.items([await uuid_of(ctx, "VM", vm) for vm in vms])
