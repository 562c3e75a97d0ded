"""VDI operations shared by the VDI API and VM clone/copy/snapshot.

Each function does the driver work, then records the result; on failure whatever
the driver made is removed again, so the store and the device agree.
"""
from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timezone

from ...backends.storage import qcow
from ...errors import ApiError
from . import service
from .service import NULL, errors, lock

# Fields a clone or copy takes over from its source.
_INHERITED = ("name_label", "name_description", "type", "sharable", "read_only",
              "other_config", "xenstore_data", "sm_config", "tags", "on_boot",
              "allow_caching")


def _inherit(rec: dict) -> dict:
    return {k: rec[k] for k in _INHERITED}


def is_live(store, vdi: str) -> bool:
    """A running guest has it open (so its image must not be renamed or resized)."""
    return bool(service.attached_vbds(store, vdi))


def _writable(server, vdi: str):
    """(record, SR, driver) of a VDI whose SR accepts changes."""
    rec = server.store.record("VDI", vdi)
    drv = service.driver_for(server, rec["SR"])
    if drv.read_only:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", rec["SR"])
    return rec, rec["SR"], drv


async def create(server, sr: str, size: int, fields: dict) -> str:
    store = server.store
    drv = service.driver_for(server, sr)
    if drv.read_only:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", sr)
    if not 0 < size <= drv.max_volume_size:
        raise ApiError("INVALID_VALUE", "virtual_size", size)
    uuid = str(uuidlib.uuid4())
    async with lock(server, sr):
        with errors(sr):
            vol = await drv.create_volume(uuid, size)
        ref = service.record_volume(store, sr, vol, uuid=uuid, **fields)
    await _durable_or_undo(server, drv, vol.location)
    await service.refresh(server, sr, drv)
    return ref


async def _durable_or_undo(server, drv, location):
    """If the database cannot record the new volume, do not leave it on the device."""
    try:
        await server.store.flush()
    except ApiError:
        try:
            await drv.destroy_volume(location)
        except Exception:
            pass   # SR.scan will show it
        raise


async def destroy(server, vdi: str) -> None:
    store = server.store
    rec, sr, drv = _writable(server, vdi)
    if is_live(store, vdi):
        raise ApiError("VDI_IN_USE", vdi, "destroy")
    async with lock(server, sr):
        try:
            with errors(sr, vdi):
                await drv.destroy_volume(rec["location"])
        except ApiError as e:
            if e.code != "VDI_MISSING":   # already gone: just drop the record
                raise
        service.forget_vdi(store, vdi)
    await service.refresh(server, sr, drv)


async def clone(server, vdi: str, snapshot: bool = False) -> str:
    """VDI.clone / VDI.snapshot within the VDI's SR."""
    store = server.store
    rec, sr, drv = _writable(server, vdi)
    uuid = str(uuidlib.uuid4())
    live = is_live(store, vdi)
    async with lock(server, sr):
        with errors(sr, vdi):
            if snapshot:
                vol = await drv.snapshot_volume(rec["location"], uuid, live)
            else:
                vol = await drv.clone_volume(rec["location"], uuid, live)
        fields = _inherit(rec)
        if snapshot:
            fields.update(is_a_snapshot=True, snapshot_of=vdi,
                          snapshot_time=datetime.now(timezone.utc))
        ref = service.record_volume(store, sr, vol, uuid=uuid, **fields)
        # The source's image may now sit on a new base: refresh its figures too.
        with errors(sr, vdi):
            service.update_volume(store, vdi, await drv.volume(rec["location"]))
    await _durable_or_undo(server, drv, vol.location)
    await service.refresh(server, sr, drv)
    return ref


async def copy(server, vdi: str, sr: str = NULL, into: str = NULL, progress=None) -> str:
    """VDI.copy: a full, flattened copy into `sr` (default: the same SR) or into the
    existing VDI `into`. `progress(fraction)` follows qemu-img."""
    store = server.store
    rec = store.record("VDI", vdi)
    src_drv = service.driver_for(server, rec["SR"])
    if into != NULL:
        target = store.record("VDI", into)
        if target["read_only"]:
            raise ApiError("VDI_READONLY", into)
        if target["virtual_size"] < rec["virtual_size"]:
            raise ApiError("VDI_TOO_SMALL", into, rec["virtual_size"])
        if is_live(store, into):
            raise ApiError("VDI_IN_USE", into, "copy")
        dst, made = into, False
    else:
        fields = _inherit(rec)
        dst = await create(server, rec["SR"] if sr == NULL else sr, rec["virtual_size"], fields)
        made = True
    dst_rec = store.record("VDI", dst)
    dst_drv = service.driver_for(server, dst_rec["SR"])
    try:
        src_path = await service.activate(server, vdi)
        try:
            dst_path = await service.activate(server, dst)
            try:
                with errors(dst_rec["SR"], dst):
                    await qcow.convert(src_path, src_drv.disk_format, dst_path,
                                       dst_drv.disk_format, existing=True,
                                       share=is_live(store, vdi), progress=progress)
            finally:
                await service.deactivate(server, dst)
        finally:
            await service.deactivate(server, vdi)
        with errors(dst_rec["SR"], dst):
            service.update_volume(store, dst, await dst_drv.volume(dst_rec["location"]))
    except BaseException:
        if made:
            await destroy(server, dst)
        raise
    await service.refresh(server, dst_rec["SR"], dst_drv)
    return dst


async def resize(server, vdi: str, size: int) -> None:
    store = server.store
    rec, sr, drv = _writable(server, vdi)
    if rec["read_only"]:
        raise ApiError("VDI_READONLY", vdi)
    if is_live(store, vdi):
        raise ApiError("VDI_IN_USE", vdi, "resize")
    if not 0 < size <= drv.max_volume_size:
        raise ApiError("INVALID_VALUE", "size", size)
    if size < rec["virtual_size"]:
        # Shrinking would cut off the guest's data: xapi's drivers refuse it too.
        raise ApiError("VDI_TOO_SMALL", vdi, rec["virtual_size"])
    async with lock(server, sr):
        with errors(sr, vdi):
            vol = await drv.resize_volume(rec["location"], size)
        service.update_volume(store, vdi, vol)
    await service.refresh(server, sr, drv)


async def revert(server, snapshot: str) -> str:
    """VDI.revert: the VDI `snapshot` was taken of gets the snapshot's contents (and
    size) back; it keeps its record, uuid and location. Returns that VDI."""
    store = server.store
    snap = store.record("VDI", snapshot)
    target = snap["snapshot_of"]
    if not snap["is_a_snapshot"] or target == NULL or not store.exists("VDI", target):
        raise ApiError("OPERATION_NOT_ALLOWED", "the VDI is not a snapshot of an existing VDI")
    rec, sr, drv = _writable(server, target)
    if snap["SR"] != sr:
        raise ApiError("UNIMPLEMENTED_IN_SM_BACKEND", sr)   # the SR driver's own revert
    if is_live(store, target):
        raise ApiError("VDI_IN_USE", target, "revert")
    async with lock(server, sr):
        with errors(sr, target):
            # A fresh volume at the same location, the snapshot's size, then its data.
            await drv.destroy_volume(rec["location"])
            await drv.create_volume(rec["location"], snap["virtual_size"])
        src = await service.activate(server, snapshot)
        try:
            dst = await service.activate(server, target)
            try:
                with errors(sr, target):
                    await qcow.convert(src, drv.disk_format, dst, drv.disk_format,
                                       existing=True)
            finally:
                await service.deactivate(server, target)
        finally:
            await service.deactivate(server, snapshot)
        with errors(sr, target):
            service.update_volume(store, target, await drv.volume(rec["location"]))
    await service.refresh(server, sr, drv)
    return target


async def resize_online(server, vdi: str, size: int, grow_in_guests) -> None:
    """VDI.resize_online: grow the volume, then tell each running guest that has it
    attached (`grow_in_guests(vbds, size)`, the hypervisor's block resize)."""
    store = server.store
    rec, sr, drv = _writable(server, vdi)
    if rec["read_only"]:
        raise ApiError("VDI_READONLY", vdi)
    if not 0 < size <= drv.max_volume_size:
        raise ApiError("INVALID_VALUE", "size", size)
    if size < rec["virtual_size"]:
        raise ApiError("VDI_TOO_SMALL", vdi, rec["virtual_size"])
    live = service.attached_vbds(store, vdi)
    if not live:
        return await resize(server, vdi, size)
    async with lock(server, sr):
        # The guest's QEMU holds the image: it grows it (and the guest sees it at once).
        await grow_in_guests(live, size)
        with errors(sr, vdi):
            service.update_volume(store, vdi, await drv.volume(rec["location"]))
    await service.refresh(server, sr, drv)
