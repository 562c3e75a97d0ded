"""blob: X.create_new_blob on pool, host, VM, SR and network, blob.create and
blob.destroy (xapi_blob.ml). The bytes travel over /blob (http/blob.py)."""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services import blobs


def _new_blob(ctx, cls: str, ref: str, name: str, mime_type: str, public: bool) -> str:
    store = ctx.store
    store.record(cls, ref)
    blobs.destroy_orphans(ctx.server)
    if name in store.get(cls, ref, "blobs"):   # as xapi's add_to_blobs
        raise ApiError("MAP_DUPLICATE_KEY", cls, "blobs", ref, name)
    blob = blobs.create(store, mime_type, public, name)
    store.update(cls, ref, blobs={**store.get(cls, ref, "blobs"), name: blob})
    return blob


@implements("pool.create_new_blob")
def pool_create_new_blob(ctx, pool, name, mime_type, public):
    return _new_blob(ctx, "pool", pool, name, mime_type, public)


@implements("host.create_new_blob")
def host_create_new_blob(ctx, host, name, mime_type, public):
    return _new_blob(ctx, "host", host, name, mime_type, public)


@implements("SR.create_new_blob")
def sr_create_new_blob(ctx, sr, name, mime_type, public):
    return _new_blob(ctx, "SR", sr, name, mime_type, public)


@implements("network.create_new_blob")
def network_create_new_blob(ctx, network, name, mime_type, public):
    return _new_blob(ctx, "network", network, name, mime_type, public)


@implements("blob.create")
def create(ctx, mime_type, public):
    return blobs.create(ctx.store, mime_type, public)


@implements("VM.create_new_blob")
def vm_create_new_blob(ctx, vm, name, mime_type, public):
    return _new_blob(ctx, "VM", vm, name, mime_type, public)


@implements("blob.destroy")
def destroy(ctx, self):
    ctx.store.record("blob", self)
    blobs.destroy(ctx.server, self)
