"""/blob: a blob's bytes, as xapi's blob handler (xapi_blob.ml).

`GET /blob?ref=<blob>` (or `uuid=`) answers the bytes with the blob's mime type; a
public blob is readable without a session, any other needs http/get_blob. `PUT
/blob?ref=` replaces the bytes (http/put_blob), up to the setting max_blob_bytes
(413 beyond); they are on the disk (fsync) before the 200, and the blob's size and
last_updated follow. No blob named: 400; no such blob: 404.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from ..errors import ApiError
from ..services import blobs
from . import auth
from .responses import read_body, respond

GET_PERMISSION, PUT_PERMISSION = "http/get_blob", "http/put_blob"


def _blob(server, scope) -> str:
    ref, uuid = auth.param(scope, "ref"), auth.param(scope, "uuid")
    if ref is None and uuid is None:
        raise _Answer(400, "name the blob: ref= or uuid=")
    store = server.store
    try:
        if ref is not None:
            store.record("blob", ref)
            return ref
        return store.by_uuid("blob", uuid)
    except ApiError:
        raise _Answer(404, "no such blob") from None


class _Answer(Exception):
    def __init__(self, status: int, text: str, headers=()):
        super().__init__(text)
        self.status, self.text, self.headers = status, text, list(headers)


async def _answering(send, work):
    try:
        await work()
    except _Answer as answer:
        await respond(send, answer.status, answer.text.encode() + b"\n", b"text/plain",
                      answer.headers)
    except auth.Refused as refusal:
        await respond(send, refusal.status, refusal.reason.encode() + b"\n", b"text/plain",
                      refusal.headers)


async def get_blob(app, scope, receive, send):
    server = app.server

    async def work():
        blob = _blob(server, scope)
        rec = server.store.record("blob", blob)
        if not rec["public"]:
            async with auth.session_for(server, scope, GET_PERMISSION):
                pass
        data = await asyncio.to_thread(blobs.read, server.settings, rec["uuid"])
        await respond(send, 200, data,
                      (rec["mime_type"] or "application/octet-stream").encode("latin-1"),
                      [(b"cache-control", b"no-cache")])
    await _answering(send, work)


async def put_blob(app, scope, receive, send):
    server = app.server

    async def work():
        async with auth.session_for(server, scope, PUT_PERMISSION):
            blob = _blob(server, scope)
            data = await read_body(scope, receive, server.settings.max_blob_bytes)
            uuid = server.store.get("blob", blob, "uuid")
            await asyncio.to_thread(blobs.write, server.settings, uuid, data)
            if server.store.exists("blob", blob):   # not destroyed meanwhile
                server.store.update("blob", blob, size=len(data),
                                    last_updated=datetime.now(timezone.utc))
                await server.store.flush()
            await respond(send, 200, b"", b"text/plain")
    await _answering(send, work)
