"""`PUT /import_raw_vdi` (vdi_import.py) and `GET /export_raw_vdi` (vdi_export.py): a
disk's bytes in and out, as xapi's import_raw_vdi.ml / export_raw_vdi.ml (formats raw,
vhd, qcow2, tar). This module holds what both directions share: the parameters, the
header lines, the errors and the worker-thread bridge.

Both check everything they can before the 200 header block (format, VDI, base, SR,
encoding), so a refusal is an ordinary status with the task failed; once the 200 is
out, the outcome is the task's (xapi writes its 500 page into the body, see
dataplane). An upload's 200 goes out BEFORE its body is read: xe, XenCenter and XO's
probe wait for it.

Memory stays bounded whatever the disk's size: an export reads a few pieces ahead
of the one being sent (disk and network overlap), an import has a few pieces being
written while the next arrives, and the format modules (xapi_server/formats) stream.
Both reach a qcow2 image through its NBD export (rawio's bulk views: several
multi-MiB requests in flight), not the FUSE view's one 128 KiB request at a time. A
qcow2 upload cannot be parsed in a stream, so it is spooled to <data-dir>/tmp, checked
and converted by qemu-img. A VDI made by an import is destroyed when the import fails
or is cancelled; an existing one is left as consistent as a half-written disk can be.
"""
from __future__ import annotations

import asyncio
import logging

from ..errors import ApiError
from ..formats import xva_chunks
from .dataplane import Refusal, Request
from .raw import ClientGone

log = logging.getLogger(__name__)

NULL = "OpaqueRef:NULL"
# format -> (export content type, file extension), xapi importexport.ml Format
FORMATS = {"raw": ("application/octet-stream", "raw"), "vhd": ("application/vhd", "vhd"),
           "tar": ("application/x-tar", "tar"), "qcow2": ("application/x-qemu-disk", "qcow2")}
PIECE = 4 << 20                 # one read or write of the disk
READ_AHEAD = 3                  # disk reads in flight while an export sends
IN_FLIGHT = 3                   # disk writes in flight while an import receives
ZEROS = bytes(PIECE)
# XO sends a stream of unknown length with this Content-Length and cuts the connection
# after the data (it then ignores the VDI_IO_ERROR): not a body too big for the disk.
UNKNOWN_LENGTH = 1 << 50
SKIP_GRAIN = 64 << 10           # a fresh disk: all-zero 64 KiB (qcow2 clusters) not written
ZERO_GRAIN = bytes(SKIP_GRAIN)


# -- parameters ---------------------------------------------------------------------------

def format_of(req: Request) -> str:
    fmt = (req.param("format") or "raw").lower()
    if fmt not in FORMATS:
        raise Refusal(404, ApiError("INTERNAL_ERROR", f"Unknown format {fmt}"), version="1.0")
    return fmt


def vdi_of(req: Request, name: str = "vdi") -> str | None:
    """The VDI a parameter names, by reference or uuid (xapi vdi_of_req)."""
    value = req.param(name)
    if not value:
        return None
    store = req.server.store
    if value.startswith("OpaqueRef:"):
        if store.exists("VDI", value):
            return value
        raise Refusal(500, ApiError("HANDLE_INVALID", "VDI", value))
    try:
        return store.by_uuid("VDI", value)
    except ApiError as exc:
        raise Refusal(500, exc) from None


def sr_of(req: Request, vdi: str | None) -> str | None:
    store = req.server.store
    if vdi is not None:
        return store.get("VDI", vdi, "SR")
    ref, uuid = req.param("sr_id"), req.param("sr_uuid")
    if ref and store.exists("SR", ref):
        return ref
    if uuid:
        try:
            return store.by_uuid("SR", uuid)
        except ApiError:
            return None
    return None


def storage_of(req: Request, sr: str):
    return req.server.runtime_of_sr(sr).storage


def header_lines(req: Request, extra: list[str]) -> list[str]:
    return ["HTTP/1.1 200 OK", "Connection: close", "Cache-Control: no-cache, no-store",
            f"task-id:{req.task}", *extra]


def io_error(reason: str) -> ApiError:
    return ApiError("VDI_IO_ERROR", f"Device I/O errors: {reason}")


async def settled(future):
    """Wait for a worker thread's job even when we are being cancelled (again): the
    file it uses is closed right after. The job is one bounded read or write, or a
    chunk-tar job whose connection has been cut."""
    cancelled = False
    while not future.done():
        try:
            await asyncio.wait([future])
        except asyncio.CancelledError:
            cancelled = True
    if not future.cancelled():
        future.exception()                # retrieved: no "never retrieved" warning
    if cancelled:
        raise asyncio.CancelledError()


async def in_thread(job, bridge, conn):
    """Run a chunk-tar job in a worker thread and return once it has ended. Cancelled,
    the bridge refuses its next read or write and the connection is cut, so a read or
    write it is waiting on ends too (a cancelled transfer closes the connection anyway)."""
    future = asyncio.get_running_loop().run_in_executor(None, job)
    try:
        return await asyncio.shield(future)
    except xva_chunks.ClientClosed as exc:
        raise ClientGone(str(exc)) from None
    finally:
        bridge.cancel()
        if not future.done():
            conn.transport.abort()
        await settled(future)
