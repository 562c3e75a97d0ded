"""SM records (one per storage driver) and the storage part of server start: the
first start makes a "Local storage" file SR in the data dir and makes it the pool's
default SR."""
from __future__ import annotations

import os

from .. import __version__
from ..datamodel import METHODS
from ..dispatch import Context
from ..backends.storage import DRIVERS
from ..services.storage import rawio, service
from ..services.storage.service import NULL
from .sr import create   # the local SR is made by the path an SR.create call takes

LOCAL_SR_META = "local_sr_ref"


def sync_sm_records(store) -> None:
    """One SM record per driver, refreshed at every start; gone drivers lose theirs."""
    existing = {store.get("SM", ref, "type"): ref for ref in store.refs("SM")}
    for sr_type, cls in DRIVERS.items():
        fields = {
            "name_label": cls.name, "name_description": cls.description, "type": sr_type,
            "vendor": "xapi-py", "copyright": "xapi-py contributors", "version": __version__,
            "required_api_version": "1.0", "configuration": dict(cls.configuration),
            "capabilities": list(cls.capabilities),
            "features": {c: 1 for c in cls.capabilities},
            "driver_filename": f"{cls.__module__}.{cls.__name__}",
            "supported_image_formats": [cls.disk_format],
        }
        ref = existing.pop(sr_type, None)
        if ref is None:
            store.create("SM", fields)
        elif any(store.get("SM", ref, k) != v for k, v in fields.items()):
            store.update("SM", ref, **fields)
    for ref in existing.values():
        store.delete("SM", ref)


async def storage_start(server) -> None:
    """After Server.startup has refreshed the SM records and started the power-state
    watcher: the Local storage SR on the first start, fresh sizes on later ones."""
    store = server.store
    await rawio.clear_stale_views(server)   # a crash left data-handler views mounted
    local = store.meta.get(LOCAL_SR_META)
    if local is None:
        path = os.path.join(os.path.abspath(server.settings.data_dir), "sr", "local")
        sr = await _create_local_sr(server, path)
        store.set_meta(LOCAL_SR_META, sr)
        if store.get("pool", server.pool_ref, "default_SR") == NULL:
            store.update("pool", server.pool_ref, default_SR=sr,
                         suspend_image_SR=sr, crash_dump_SR=sr)
    elif store.exists("SR", local):
        try:   # sizes may have changed while we were down
            await service.refresh(server, local, service.driver_for(server, local))
        except Exception:
            pass


async def _create_local_sr(server, path: str) -> str:
    ctx = Context(server, METHODS["SR.create"])
    return await create(ctx, server.host_ref, {"path": path}, 0, "Local storage",
                        "qcow2 images in the server's data directory", "file", "user",
                        False, {})
