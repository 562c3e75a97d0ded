"""Blobs: records and their bytes under <data_dir>/blobs/<uuid>.

Bytes are written to a temporary file, flushed to the disk (fsync) and renamed over
the old ones, so a reader sees the old bytes or the new ones, never a mix, and an
acknowledged upload survives a crash. A blob belongs to the objects whose `blobs`
map names it; destroying it takes it out of those maps.
"""
from __future__ import annotations

import os
import tempfile
from datetime import datetime, timezone

# The classes with a `blobs` map (X.create_new_blob).
OWNERS = ("pool", "host", "VM", "SR", "network")


def folder(settings) -> str:
    return os.path.join(settings.data_dir, "blobs")


def path(settings, uuid: str) -> str:
    return os.path.join(folder(settings), uuid)


def create(store, mime_type: str, public: bool, name: str = "") -> str:
    return store.create("blob", {"name_label": name, "mime_type": mime_type,
                                 "public": public,
                                 "last_updated": datetime.now(timezone.utc)})


def write(settings, uuid: str, data: bytes):
    """Durable replace of a blob's bytes (blocking: run it in a thread)."""
    os.makedirs(folder(settings), mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder(settings), prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path(settings, uuid))
        dirfd = os.open(folder(settings), os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read(settings, uuid: str) -> bytes:
    """The blob's bytes; empty when nothing was uploaded yet."""
    try:
        with open(path(settings, uuid), "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def destroy(server, blob: str):
    store = server.store
    uuid = store.get("blob", blob, "uuid")
    for cls in OWNERS:
        for ref, rec in store.tables[cls].items():
            if blob in rec["blobs"].values():
                store.update(cls, ref, blobs={k: v for k, v in rec["blobs"].items()
                                              if v != blob})
    store.delete("blob", blob)
    try:
        os.unlink(path(server.settings, uuid))
    except FileNotFoundError:
        pass


def destroy_orphans(server):
    """Blobs no object lists any more (their owner was destroyed) go, bytes and all.
    blob.create makes unlisted blobs on purpose: those are kept while they are new."""
    store = server.store
    listed = {b for cls in OWNERS for rec in store.tables[cls].values()
              for b in rec["blobs"].values()}
    for blob, rec in list(store.tables["blob"].items()):
        if blob not in listed and rec["name_label"]:
            destroy(server, blob)
