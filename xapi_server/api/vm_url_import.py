"""VM.import: an XVA the server downloads from an http(s) URL, as xapi's VM.import.

xapi streams the download into its own import handler; so does this server: a worker
thread reads the URL and PUTs it, as it arrives, to this server's /import (the HTTP
layer's handler, above the API layer, reached over loopback with the caller's
session), under a task of its own whose result is the new VMs. A download without a
Content-Length is spooled to a file first: /import needs the length (it refuses
chunked uploads, as xapi).
"""
from __future__ import annotations

import asyncio
import http.client
import shutil
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client

from ..dispatch.registry import implements
from ..errors import ApiError

BLOCK = 1 << 20
TIMEOUT = 60.0   # seconds without a byte from the URL or from /import


def _open_url(url: str):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError("IMPORT_ERROR", f"not an http(s) URL: {url}")
    try:
        return urllib.request.urlopen(url, timeout=TIMEOUT)
    except (urllib.error.URLError, OSError, ValueError, http.client.HTTPException) as exc:
        raise ApiError("IMPORT_ERROR", f"cannot download {url}: {exc}") from None


def _loopback_host(settings) -> str:
    return "127.0.0.1" if settings.listen in ("", "0.0.0.0", "::") else settings.listen


def _put_import(settings, query: dict, source, length: int) -> None:
    """Send `length` bytes of `source` to our own PUT /import."""
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE   # ourselves, on loopback
    conn = http.client.HTTPSConnection(_loopback_host(settings), settings.port,
                                       timeout=TIMEOUT, context=tls)
    try:
        conn.putrequest("PUT", "/import?" + urllib.parse.urlencode(query))
        conn.putheader("Content-Length", str(length))
        conn.putheader("Connection", "close")
        conn.endheaders()
        sent = 0
        while sent < length:
            block = source.read(min(BLOCK, length - sent))
            if not block:
                break   # the download ended early: /import fails the task for it
            conn.send(block)
            sent += len(block)
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass   # /import gave up on us: its task says why
    finally:
        conn.close()


def _download_and_import(settings, url: str, query: dict, spool_dir: str) -> None:
    with _open_url(url) as response:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            _put_import(settings, query, response, int(length))
            return
        with tempfile.TemporaryFile(dir=spool_dir) as spool:
            try:
                shutil.copyfileobj(response, spool, BLOCK)
            except (OSError, http.client.HTTPException) as exc:
                raise ApiError("IMPORT_ERROR", f"cannot download {url}: {exc}") from None
            size = spool.tell()
            spool.seek(0)
            _put_import(settings, query, spool, size)


def _decode(result: str):
    wrapped = f"<methodResponse><params><param>{result}</param></params></methodResponse>"
    return xmlrpc.client.loads(wrapped)[0][0]


@implements("VM.import")
async def import_(ctx, url, sr, full_restore, force):
    ctx.store.record("SR", sr)
    tasks = ctx.server.tasks
    task = tasks.create(f"VM.import from {url}", session=ctx.session)
    query = {"session_id": ctx.session, "task_id": task, "sr_id": sr,
             "restore": str(full_restore).lower(), "force": str(force).lower()}
    try:
        await asyncio.to_thread(_download_and_import, ctx.server.settings, url, query,
                                ctx.server.settings.data_dir)
        rec = ctx.store.record("task", task)
        if rec["status"] == "success":
            return list(_decode(rec["result"]))
        if rec["error_info"]:
            raise ApiError(*rec["error_info"])
        raise ApiError("IMPORT_ERROR", f"the import of {url} did not finish")
    finally:
        if ctx.store.exists("task", task):
            ctx.store.delete("task", task)
        tasks.forget(task)
