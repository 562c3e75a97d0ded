"""sr-create/-scan/-destroy/-forget, pbd-plug/-unplug, vdi-*, vbd-* actions."""
from __future__ import annotations

import os
import re

from ...datamodel import NULL_REF
from .. import args
from ..errors import CliFailure, MissingParam
from ..table import command
from ..transfer import track_http_operation
from .vm import run_op, uuid_of
from .vmdevices import record_pairs

VDI_TYPES = ("system", "user", "suspend", "crashdump", "ephemeral", "ha_statefile",
             "metadata", "redo_log", "rrd", "pvs_cache", "cbt_metadata")


def prefixed(ctx, prefix: str) -> dict:
    """`device-config:key=value` parameters (and the legacy `device-config-key=`)."""
    out = {}
    for k, v in ctx.params.items():
        for sep in (":", "-"):
            if k.startswith(prefix + sep):
                out[k[len(prefix) + 1:]] = v
    return out


def _simple(name, cname, method, help):
    async def run(ctx):
        await ctx.call(method, await ctx.by_uuid(cname, ctx.reqd("uuid")))
    command(name, reqd=("uuid",), help=help)(run)


@command("sr-create", reqd=("name-label", "type"),
         optional=("name-description", "host-uuid", "device-config", "shared",
                   "physical-size", "content-type", "sm-config"), std=True,
         help="Create an SR on a device (device-config:<k>=<v> ...); prints its uuid.")
async def sr_create(ctx):
    shared = ctx.flag("shared")
    if ctx.param("host-uuid"):
        host = await ctx.by_uuid("host", ctx.param("host-uuid"))
    else:
        hosts = await ctx.call("host.get_all")
        if not shared and len(hosts) != 1:
            raise MissingParam("host-uuid")
        pool = (await ctx.call("pool.get_all"))[0]
        host = await ctx.call("pool.get_master", pool)
    size = args.size(ctx.param("physical-size", "0"), "physical-size")
    sr = await ctx.call("SR.create", host, prefixed(ctx, "device-config"), size,
                        ctx.reqd("name-label"), ctx.param("name-description", ""),
                        ctx.reqd("type"), ctx.param("content-type", ""), shared,
                        prefixed(ctx, "sm-config"))
    await ctx.items([await uuid_of(ctx, "SR", sr)])


_simple("sr-scan", "SR", "SR.scan", "Make the SR's VDI records match its volumes.")
_simple("sr-destroy", "SR", "SR.destroy", "Destroy the SR and the data on it.")
_simple("sr-forget", "SR", "SR.forget", "Forget the SR's records; its data stays.")
_simple("pbd-plug", "PBD", "PBD.plug", "Attach the SR on the PBD's host.")
_simple("pbd-unplug", "PBD", "PBD.unplug", "Detach the SR on the PBD's host.")
_simple("pbd-destroy", "PBD", "PBD.destroy", "Destroy the PBD record.")
_simple("vdi-destroy", "VDI", "VDI.destroy", "Destroy the VDI and its data.")
_simple("vbd-plug", "VBD", "VBD.plug", "Hot-plug the VBD into its running VM.")
_simple("vbd-destroy", "VBD", "VBD.destroy", "Destroy the VBD (the VDI stays).")


@command("vdi-create", reqd=("sr-uuid", "name-label", "virtual-size"),
         optional=("type", "sharable", "read-only", "name-description", "sm-config",
                   "tags"),
         help="Create a VDI (virtual-size takes units: 10GiB); prints its uuid.")
async def vdi_create(ctx):
    kind = ctx.param("type", "user").lower()
    if kind not in VDI_TYPES:
        raise CliFailure(f"Unknown vdi type: {ctx.param('type')}")
    rec = {"SR": await ctx.by_uuid("SR", ctx.reqd("sr-uuid")),
           "name_label": ctx.reqd("name-label"),
           "name_description": ctx.param("name-description", ""),
           "virtual_size": args.size(ctx.reqd("virtual-size"), "virtual-size"),
           "type": kind, "sharable": ctx.flag("sharable"), "read_only": ctx.flag("read-only"),
           "other_config": {}, "sm_config": prefixed(ctx, "sm-config"),
           "tags": [v for k, v in ctx.params.items() if k.startswith("tags:")]}
    await ctx.items([await uuid_of(ctx, "VDI", await ctx.call("VDI.create", rec))])


@command("vdi-resize", reqd=("uuid", "disk-size"), optional=("online",),
         help="Grow the VDI to disk-size (units allowed).")
async def vdi_resize(ctx):
    vdi = await ctx.by_uuid("VDI", ctx.reqd("uuid"))
    await ctx.call("VDI.resize", vdi, args.size(ctx.reqd("disk-size"), "disk-size"))


@command("vdi-clone", reqd=("uuid",), optional=("new-name-label", "new-name-description",
                                                "driver-params"),
         help="Clone the VDI; prints the new uuid.")
async def vdi_clone(ctx):
    new = await ctx.call("VDI.clone", await ctx.by_uuid("VDI", ctx.reqd("uuid")),
                         prefixed(ctx, "driver-params"))
    if ctx.param("new-name-label") is not None:
        await ctx.call("VDI.set_name_label", new, ctx.param("new-name-label"))
    if ctx.param("new-name-description") is not None:
        await ctx.call("VDI.set_name_description", new, ctx.param("new-name-description"))
    await ctx.items([await uuid_of(ctx, "VDI", new)])


@command("vdi-snapshot", reqd=("uuid",), optional=("driver-params",),
         help="Snapshot the VDI; prints the snapshot's uuid.")
async def vdi_snapshot(ctx):
    new = await ctx.call("VDI.snapshot", await ctx.by_uuid("VDI", ctx.reqd("uuid")),
                         prefixed(ctx, "driver-params"))
    await ctx.items([await uuid_of(ctx, "VDI", new)])


@command("vdi-copy", reqd=("uuid",), optional=("sr-uuid", "into-vdi-uuid", "base-vdi-uuid",
                                               "progress"),
         help="Copy the VDI to sr-uuid, or into the VDI into-vdi-uuid; prints the uuid "
              "of the copy.")
async def vdi_copy(ctx):
    if (ctx.param("sr-uuid") is None) == (ctx.param("into-vdi-uuid") is None):
        raise CliFailure("Exactly one of sr-uuid and into-vdi-uuid must be given")
    vdi = await ctx.by_uuid("VDI", ctx.reqd("uuid"))
    sr = await ctx.by_uuid("SR", ctx.param("sr-uuid")) if ctx.param("sr-uuid") else NULL_REF
    into = await ctx.by_uuid("VDI", ctx.param("into-vdi-uuid")) \
        if ctx.param("into-vdi-uuid") else NULL_REF
    base = await ctx.by_uuid("VDI", ctx.param("base-vdi-uuid")) \
        if ctx.param("base-vdi-uuid") else NULL_REF
    new = await run_op(ctx, "VDI.copy", vdi, sr, base, into)
    if new.startswith("<"):          # an Async task's result is XML-RPC encoded
        new = re.search(r"OpaqueRef:[^<]+", new).group(0)
    await ctx.items([await uuid_of(ctx, "VDI", new)])


async def _disk_transfer(ctx, put: bool):
    """vdi-import / vdi-export: the VDI's bytes through /import_raw_vdi or
    /export_raw_vdi, the file where xe runs."""
    params = {"vdi": await ctx.by_uuid("VDI", ctx.reqd("uuid"))}
    if ctx.param("format"):
        params["format"] = ctx.param("format")
    if ctx.param("base"):
        params["base"] = await ctx.by_uuid("VDI", ctx.param("base"))
    await track_http_operation(ctx, "VDI import" if put else "VDI export", put,
                               ctx.reqd("filename"),
                               "/import_raw_vdi" if put else "/export_raw_vdi", params)


@command("vdi-import", reqd=("filename",), optional=("uuid", "sr-uuid", "format", "progress"),
         help="Write a file into the VDI (format raw, vhd, qcow2 or tar; raw by default). "
              "The file is read where xe runs. With sr-uuid= instead of uuid= (beyond "
              "xapi's xe): a new VDI of the file's size, or into an ISO SR an ISO under "
              "the file's name; prints the new VDI's uuid.")
async def vdi_import(ctx):
    if ctx.param("uuid") or not ctx.param("sr-uuid"):
        await _disk_transfer(ctx, put=True)
        return
    filename = ctx.reqd("filename")
    params = {"sr_id": await ctx.by_uuid("SR", ctx.param("sr-uuid")),
              "filename": os.path.basename(filename)}
    result = await track_http_operation(ctx, "VDI import", True, filename,
                                        "/import_raw_vdi", params)
    await ctx.items([await uuid_of(ctx, "VDI", re.search(r"OpaqueRef:[^<]+", result)[0])])


@command("cd-list", optional=("params",), std=True,
         help="The ISOs a VM's CD drive can take: the VDIs of the ISO SRs.")
async def cd_list(ctx):
    isos = [sr for sr, rec in (await ctx.call("SR.get_all_records")).items()
            if rec["content_type"] == "iso"]
    vdis = await ctx.call("VDI.get_all_records")
    chosen = sorted((rec for rec in vdis.values() if rec["SR"] in isos),
                    key=lambda r: r["name_label"])
    await ctx.table([await record_pairs(ctx, "VDI", rec, ctx.param("params"),
                                        ("uuid", "name-label")) for rec in chosen])


@command("vdi-export", reqd=("uuid", "filename"), optional=("format", "base", "progress"),
         help="Write the VDI's contents to a file where xe runs (format raw, vhd, qcow2 "
              "or tar; base=<vdi uuid>: only what differs from that VDI, vhd or qcow2).")
async def vdi_export(ctx):
    await _disk_transfer(ctx, put=False)


@command("vbd-create", reqd=("vm-uuid", "device"),
         optional=("vdi-uuid", "bootable", "type", "mode", "unpluggable"),
         help="Create a VBD (type Disk|CD|Floppy, mode RO|RW); prints its uuid.")
async def vbd_create(ctx):
    kind = {"disk": "Disk", "cd": "CD", "floppy": "Floppy"}.get(
        ctx.param("type", "Disk").lower())
    if kind is None:
        raise CliFailure(f"Unknown VBD type: {ctx.param('type')}")
    mode = ctx.param("mode", "RW").upper()
    if mode not in ("RO", "RW"):
        raise CliFailure(f"Unknown VBD mode: {ctx.param('mode')}")
    vdi = await ctx.by_uuid("VDI", ctx.param("vdi-uuid")) if ctx.param("vdi-uuid") else NULL_REF
    if vdi == NULL_REF and kind != "CD":
        raise CliFailure("Empty VBDs can only be made for type=CD")
    rec = {"VM": await ctx.by_uuid("VM", ctx.reqd("vm-uuid")), "VDI": vdi,
           "userdevice": ctx.reqd("device"), "bootable": ctx.flag("bootable"),
           "mode": mode, "type": kind, "empty": vdi == NULL_REF,
           "unpluggable": ctx.param("unpluggable") is None or ctx.flag("unpluggable"),
           "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
    await ctx.items([await uuid_of(ctx, "VBD", await ctx.call("VBD.create", rec))])


@command("vbd-unplug", reqd=("uuid",), optional=("timeout", "force"),
         help="Hot-unplug the VBD from its running VM.")
async def vbd_unplug(ctx):
    vbd = await ctx.by_uuid("VBD", ctx.reqd("uuid"))
    await ctx.call("VBD.unplug", vbd)
