"""PBD: how this host reaches an SR. plug attaches the SR (checking the device
really holds it) and refreshes its sizes; unplug refuses while guests use its disks."""
from __future__ import annotations

from ..dispatch.generic import constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import service
from ..services.storage.service import errors


@implements("PBD.create")
def create(ctx, args):
    fields = constructor_fields(ctx, "PBD", args)
    fields["currently_attached"] = False   # only plug makes it true
    store = ctx.store
    for ref_field, cname in (("SR", "SR"), ("host", "host")):
        store.record(cname, fields.get(ref_field, "OpaqueRef:NULL"))
    if service.host_pbd(store, fields["SR"], fields["host"]):
        raise ApiError("OPERATION_NOT_ALLOWED", "the SR already has a PBD for this host")
    return store.create("PBD", fields)


@implements("PBD.destroy")
def destroy(ctx, self):
    if ctx.store.get("PBD", self, "currently_attached"):
        raise ApiError("OPERATION_NOT_ALLOWED", "PBD is currently attached")
    ctx.store.delete("PBD", self)


@implements("PBD.set_device_config")
def set_device_config(ctx, self, value):
    if ctx.store.get("PBD", self, "currently_attached"):
        raise ApiError("OPERATION_NOT_ALLOWED", "PBD is currently attached")
    ctx.store.update("PBD", self, device_config=dict(value))


@implements("PBD.plug")
async def plug(ctx, self):
    store = ctx.store
    rec = store.record("PBD", self)
    if rec["currently_attached"]:
        return
    sr = store.record("SR", rec["SR"])
    drv = service.make_driver(sr["type"], sr["uuid"], rec["device_config"], rec["SR"])
    with errors(rec["SR"]):
        await drv.attach()
    store.update("PBD", self, currently_attached=True)
    await service.refresh(ctx.server, rec["SR"], drv)


@implements("PBD.unplug")
async def unplug(ctx, self):
    store = ctx.store
    rec = store.record("PBD", self)
    if not rec["currently_attached"]:
        return
    sr = store.record("SR", rec["SR"])
    in_use = [v for v in sr["VDIs"] if service.attached_vbds(store, v)]
    if in_use:
        raise ApiError("VDI_IN_USE", *in_use)
    drv = service.make_driver(sr["type"], sr["uuid"], rec["device_config"], rec["SR"])
    with errors(rec["SR"]):
        await drv.detach()
    store.update("PBD", self, currently_attached=False)
