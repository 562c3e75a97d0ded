"""VDI: create/destroy/resize/clone/snapshot/copy/introduce/forget/update.

The work itself is in services/storage/vdiops.py (VM clone/copy uses it too); here
are the API's checks and shapes."""
from __future__ import annotations

import uuid as uuidlib

from ..datamodel.types import parse_datetime
from ..dispatch.generic import constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import service, vdiops
from ..services.storage.service import NULL, errors, lock

# What a caller may choose in VDI.create; sizes and locations come from the driver.
_CREATE_FIELDS = ("name_label", "name_description", "type", "sharable", "read_only",
                  "other_config", "xenstore_data", "sm_config", "tags")


@implements("VDI.create")
async def create(ctx, args):
    fields = constructor_fields(ctx, "VDI", args)
    sr = fields.get("SR", NULL)
    ctx.store.record("SR", sr)
    wanted = {k: fields[k] for k in _CREATE_FIELDS if k in fields}
    return await vdiops.create(ctx.server, sr, fields.get("virtual_size", 0), wanted)


@implements("VDI.destroy")
async def destroy(ctx, self):
    ctx.store.record("VDI", self)
    await vdiops.destroy(ctx.server, self)


@implements("VDI.resize")
async def resize(ctx, vdi, size):
    ctx.store.record("VDI", vdi)
    await vdiops.resize(ctx.server, vdi, size)


@implements("VDI.snapshot")
async def snapshot(ctx, vdi, driver_params):
    ctx.store.record("VDI", vdi)
    return await vdiops.clone(ctx.server, vdi, snapshot=True)


@implements("VDI.clone")
async def clone(ctx, vdi, driver_params):
    ctx.store.record("VDI", vdi)
    return await vdiops.clone(ctx.server, vdi, snapshot=False)


@implements("VDI.copy")
async def copy(ctx, vdi, sr, base_vdi, into_vdi):
    """base_vdi only lets xapi skip blocks both share; a full copy is equally right."""
    store = ctx.store
    store.record("VDI", vdi)
    if sr != NULL:
        store.record("SR", sr)
    if into_vdi != NULL:
        store.record("VDI", into_vdi)
    tasks = ctx.server.tasks
    return await vdiops.copy(ctx.server, vdi, sr, into_vdi,
                             progress=lambda f: tasks.set_progress(ctx.task, f))


@implements("VDI.introduce")
async def introduce(ctx, uuid, name_label, name_description, sr, vdi_type, sharable,
                    read_only, other_config, location, xenstore_data, sm_config, managed,
                    virtual_size, physical_utilisation, metadata_of_pool, is_a_snapshot,
                    snapshot_time, snapshot_of):
    store = ctx.store
    store.record("SR", sr)
    if uuid and not service.uuid_free(store, "VDI", uuid):
        raise ApiError("UUID_INVALID", "VDI", uuid)  # as xapi: the uuid is taken
    if any(store.get("VDI", v, "location") == location for v in store.get("SR", sr, "VDIs")):
        raise ApiError("LOCATION_NOT_UNIQUE", sr, location)
    drv = service.driver_for(ctx.server, sr)
    async with lock(ctx.server, sr):
        try:
            with errors(sr):
                vol = await drv.volume(location)   # confined to the SR, chain checked
        except ApiError as e:
            if e.code == "VDI_MISSING":
                raise ApiError("VDI_LOCATION_MISSING", sr, location) from None
            raise
        if isinstance(snapshot_time, str):   # the declared default arrives as text
            snapshot_time = parse_datetime(snapshot_time)
        fields = {"name_label": name_label, "name_description": name_description,
                  "type": vdi_type, "sharable": sharable,
                  "read_only": read_only or vol.read_only, "other_config": dict(other_config),
                  "xenstore_data": dict(xenstore_data), "sm_config": dict(sm_config),
                  "managed": managed, "is_a_snapshot": is_a_snapshot,
                  "snapshot_time": snapshot_time, "metadata_of_pool": metadata_of_pool,
                  "snapshot_of": snapshot_of if store.exists("VDI", snapshot_of) else NULL,
                  "uuid": uuid or str(uuidlib.uuid4())}
        ref = service.record_volume(store, sr, vol, **fields)
    await service.refresh(ctx.server, sr, drv)
    return ref


@implements("VDI.forget")
def forget(ctx, vdi):
    store = ctx.store
    sr = store.get("VDI", vdi, "SR")
    if vdiops.is_live(store, vdi):
        raise ApiError("VDI_IN_USE", vdi, "forget")
    service.forget_vdi(store, vdi)
    alloc = sum(store.get("VDI", v, "virtual_size") for v in store.get("SR", sr, "VDIs"))
    store.update("SR", sr, virtual_allocation=alloc)


@implements("VDI.update")
async def update(ctx, vdi):
    store = ctx.store
    rec = store.record("VDI", vdi)
    drv = service.driver_for(ctx.server, rec["SR"])
    with errors(rec["SR"], vdi):
        vol = await drv.volume(rec["location"])
    service.update_volume(store, vdi, vol)
    await service.refresh(ctx.server, rec["SR"], drv)


@implements("VDI.set_read_only")
def set_read_only(ctx, self, value):
    rec = ctx.store.record("VDI", self)
    if not value and ctx.store.get("SR", rec["SR"], "content_type") == "iso":
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", rec["SR"])  # the ISO library is RO
    if value and any(ctx.store.get("VBD", v, "mode") == "RW"
                     for v in service.attached_vbds(ctx.store, self)):
        raise ApiError("VDI_IN_USE", self, "set_read_only")
    ctx.store.update("VDI", self, read_only=value)
