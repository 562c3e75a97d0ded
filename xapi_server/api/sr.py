"""SR: create/introduce/forget/destroy, scan/update/probe, supported types.

The driver acts first; the store records what the device really holds afterwards
(services/storage/service.py). SR.create also makes and plugs the PBD for its host.
"""
from __future__ import annotations

import os
import uuid as uuidlib

from ..backends.hypervisor import qemu_access
from ..backends.storage import DRIVERS
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.storage import service
from ..services.storage.service import errors, lock
from . import sr_shared


def _content_type(cls, given: str) -> str:
    return given or cls.content_type


async def _reachable_by_qemu(server, host, folder):
    """A folder of images QEMU's user cannot reach is said now, not at the first
    VM.start (or made reachable: see qemu_access). Not checked before the hypervisor
    is connected (the first start's local SR): VM.start checks every disk anyway."""
    vms = server.runtime(host).vms    # the SR's host: its QEMU reads the images
    if folder is None or vms is None:
        return
    hv = vms.hv
    problem = await qemu_access.unreachable(server.settings, hv,
                                            [os.path.join(folder, "any-image")])
    if problem is not None:
        raise ApiError("SR_BACKEND_FAILURE", "EACCES", "",
                       qemu_access.explain(*problem, f"the images in {folder}"))


@implements("SR.get_supported_types")
def get_supported_types(ctx):
    return sorted(DRIVERS)


@implements("SR.create")
async def create(ctx, host, device_config, physical_size, name_label, name_description,
                 sr_type, content_type, shared, sm_config):
    store = ctx.store
    cls = service.driver_class(sr_type)
    store.record("host", host)
    if physical_size < 0:
        raise ApiError("INVALID_VALUE", "physical_size", physical_size)
    sr_uuid = str(uuidlib.uuid4())
    drv = service.make_driver(sr_type, sr_uuid, device_config)
    with errors():
        await drv.create(physical_size)
    try:
        with errors():
            await drv.attach()
            stats = await drv.stats()
        await _reachable_by_qemu(ctx.server, host, getattr(drv, "root", None))
        sr = store.create("SR", {
            "uuid": sr_uuid, "name_label": name_label, "name_description": name_description,
            "type": sr_type, "content_type": _content_type(cls, content_type),
            "shared": shared, "sm_config": dict(sm_config),
            "physical_size": stats.physical_size,
            "physical_utilisation": stats.physical_utilisation})
        store.create("PBD", {"host": host, "SR": sr, "device_config": dict(device_config),
                             "currently_attached": True})
        if shared and not ctx.server.role.is_member:   # a PBD on every host of the pool
            await sr_shared.plug_on_members(ctx.server, sr, device_config)
        await store.flush()
    except BaseException:
        # Nothing recorded (or the record could not be kept): undo the device work.
        try:
            await drv.delete()
        except Exception:
            pass
        raise
    if cls.read_only:   # an ISO library shows its contents at once
        async with lock(ctx.server, sr):
            await service.sync(ctx.server, sr, drv)
    return sr


@implements("SR.introduce")
def introduce(ctx, uuid, name_label, name_description, sr_type, content_type, shared,
              sm_config):
    store = ctx.store
    if not service.uuid_free(store, "SR", uuid):
        raise ApiError("SR_UUID_EXISTS", uuid)
    cls = DRIVERS.get(sr_type)   # an unknown type is refused at PBD.plug, as xapi does
    return store.create("SR", {
        "uuid": uuid, "name_label": name_label, "name_description": name_description,
        "type": sr_type, "content_type": content_type or (cls.content_type if cls else ""),
        "shared": shared, "sm_config": dict(sm_config)})


def _no_attached_pbds(store, sr):
    if any(store.get("PBD", p, "currently_attached") for p in store.get("SR", sr, "PBDs")):
        raise ApiError("SR_HAS_PBD", sr)


def _drop_records(store, sr):
    for vdi in list(store.get("SR", sr, "VDIs")):
        service.forget_vdi(store, vdi)
    for pbd in list(store.get("SR", sr, "PBDs")):
        store.delete("PBD", pbd)
    store.delete("SR", sr)


@implements("SR.forget")
def forget(ctx, sr):
    store = ctx.store
    store.record("SR", sr)
    _no_attached_pbds(store, sr)
    _drop_records(store, sr)


@implements("SR.destroy")
async def destroy(ctx, sr):
    """As xapi: unplug the PBD first; we reach the device through its config."""
    store = ctx.store
    store.record("SR", sr)
    _no_attached_pbds(store, sr)
    for vdi in store.get("SR", sr, "VDIs"):
        if store.get("VDI", vdi, "VBDs"):
            raise ApiError("VDI_IN_USE", vdi, "destroy")
    drv = service.driver_for(ctx.server, sr, attached=False)
    async with lock(ctx.server, sr):
        with errors(sr):
            await drv.attach()
            await drv.delete()
        _drop_records(store, sr)


@implements("SR.scan")
async def scan(ctx, sr):
    drv = service.driver_for(ctx.server, sr)
    async with lock(ctx.server, sr):
        await service.sync(ctx.server, sr, drv)


@implements("SR.update")
async def update(ctx, sr):
    drv = service.driver_for(ctx.server, sr)
    await service.refresh(ctx.server, sr, drv)


@implements("SR.probe")
async def probe(ctx, host, device_config, sr_type, sm_config):
    ctx.store.record("host", host)
    cls = service.driver_class(sr_type)
    with errors():
        return await cls.probe(dict(device_config))


@implements("SR.set_physical_size")
def set_physical_size(ctx, sr, value):
    ctx.store.record("SR", sr)
    if value < 0:
        raise ApiError("INVALID_VALUE", "physical_size", value)
    ctx.store.update("SR", sr, physical_size=value)

