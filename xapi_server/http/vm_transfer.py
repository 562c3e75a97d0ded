"""VM export and import: GET /export, PUT /import, GET /export_metadata and
PUT /import_metadata, as xapi answers them (export.ml, import.ml).

The tar work (compression, hashing, chunking) runs in a worker thread on the sync code
of formats/xva_chunks.py, talking to the connection through a LoopBridge; the records
side is api/vm_xva.py; disk bytes come from and go to the storage's raw view of each
VDI. An import that fails for any reason (a truncated, corrupt or hostile archive, a
client that leaves, a cancelled task) removes every VM, VDI, VBD and VIF it made and
fails the task with xapi's IMPORT_ERROR_* code.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from types import SimpleNamespace
from urllib.parse import parse_qsl

from ..api import vm_xva
from ..api.vm_checks import assert_operation_valid, vm_operation
from ..datamodel import NULL_REF
from ..errors import ApiError
from ..formats import ova_xml
from ..formats import xva_chunks as xva
from .dataplane import Refusal, Request
from .raw import ClientGone

log = logging.getLogger(__name__)

SERVER_LINE = f"Server: xapi/{vm_xva.VERSION['xapi_major']}.{vm_xva.VERSION['xapi_minor']}"


# -- shared ---------------------------------------------------------------------------

def _vm_of(req: Request) -> str:
    """The VM named by `ref` (preferred, as xapi) or `uuid`; a refusal if none."""
    store = req.server.store
    ref, uuid = req.param("ref"), req.param("uuid")
    if ref:
        if store.exists("VM", ref):
            return ref
        raise Refusal(500, ApiError("HANDLE_INVALID", "VM", ref))
    if uuid:
        try:
            return store.by_uuid("VM", uuid)
        except ApiError as exc:
            raise Refusal(500, exc) from None
    raise Refusal(500, ApiError("INVALID_VALUE", "ref", ""))


def _flag(req: Request, name: str) -> bool:
    return req.param(name) == "true"      # xapi: only the exact string "true"


async def _in_thread(bridge: xva.LoopBridge, fn, *args):
    """Run blocking `fn` in a worker thread; if we are cancelled meanwhile, stop the
    bridge (the thread's next read or write fails) and wait for the thread to end, so
    nothing still writes into a disk we are about to remove."""
    job = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        bridge.cancel()
        await asyncio.gather(job, return_exceptions=True)
        raise


def _progress_from_thread(req: Request):
    loop = asyncio.get_running_loop()
    return lambda fraction: loop.call_soon_threadsafe(req.progress, min(fraction, 1.0))


@contextlib.asynccontextmanager
async def raw_view(server, vdi: str, writable: bool):
    """The storage's plain-file view of a VDI (services/storage/rawio), opened and
    closed whole even when the transfer is cancelled meanwhile (task.cancel, or the
    server stopping: a second cancel): a view left half-made or unclosed would keep
    its qemu-storage-daemon and its mount."""
    sr = server.store.get("VDI", vdi, "SR")
    manager = server.runtime_of_sr(sr).storage.raw_view(vdi, writable=writable)
    opening = asyncio.ensure_future(manager.__aenter__())
    try:
        view = await asyncio.shield(opening)
    except asyncio.CancelledError:
        if not opening.cancelled() and await _settled(opening):
            await asyncio.shield(manager.__aexit__(None, None, None))
        raise
    try:
        yield view
    except BaseException as exc:
        if not await asyncio.shield(manager.__aexit__(type(exc), exc, exc.__traceback__)):
            raise
    else:
        await asyncio.shield(manager.__aexit__(None, None, None))


async def _settled(job) -> bool:
    """Wait for `job` to end; True if it succeeded."""
    await asyncio.gather(job, return_exceptions=True)
    return not job.cancelled() and job.exception() is None


async def fresh_zeroed(server, vdi: str) -> bool:
    sr = server.store.get("VDI", vdi, "SR")
    return await server.runtime_of_sr(sr).storage.fresh_zeroed(vdi)


def _stream_lines(req: Request, extra=()) -> list[str]:
    return ["HTTP/1.0 200 OK", "Connection: close", "Cache-Control: no-cache, no-store",
            f"task-id: {req.task}", SERVER_LINE, "content-type: application/octet-stream",
            *extra, 'Content-Disposition: attachment; filename="export.xva"']


# -- export ---------------------------------------------------------------------------

def _send_disk(tar: xva.TarWriter, prefix: str, path: str, size: int, ranges, progress):
    fd = os.open(path, os.O_RDONLY)
    try:
        xva.write_disk(tar, prefix, lambda off, n: os.pread(fd, n, off), size,
                       allocated=ranges, progress=progress)
    finally:
        os.close(fd)


def _lock(req: Request, vm: str, op: str):
    ctx = SimpleNamespace(store=req.server.store, task=req.task)
    try:
        assert_operation_valid(ctx.store, vm, op)
    except ApiError as exc:
        raise Refusal(500, exc) from None
    return vm_operation(ctx, vm, op)


async def get_export(req: Request):
    store = req.server.store
    vm = _vm_of(req)
    compression = xva.compression_of(req.param("use_compression"))
    async with _lock(req, vm, "export"):
        objects, disks = vm_xva.export_objects(store, vm)
        sizes = {vdi: store.get("VDI", vdi, "virtual_size") for _, vdi in disks}
        total = max(1, sum(sizes.values()))
        conn = await req.start_stream(_stream_lines(req))
        bridge = xva.LoopBridge(asyncio.get_running_loop(), write=conn.write)
        sink = xva.CompressingSink(bridge, compression)
        tar = xva.TarWriter(sink)
        report = _progress_from_thread(req)
        try:
            await _in_thread(bridge, tar.add, "ova.xml",
                             ova_xml.dumps(vm_xva.header(objects)), int(time.time()))
            done = 0
            for prefix, vdi in disks:
                async with raw_view(req.server, vdi, writable=False) as view:
                    ranges = await view.allocated()
                    base = done
                    await _in_thread(bridge, _send_disk, tar, prefix, view.path,
                                     min(view.size, sizes[vdi]), ranges,
                                     lambda d: report((base + d) / total))
                done += sizes[vdi]
            await _in_thread(bridge, _finish, tar, sink)
        except xva.ClientClosed as exc:
            raise ApiError("INTERNAL_ERROR", f"client closed the connection: {exc}") from None
    return None


def _finish(tar: xva.TarWriter, sink: xva.CompressingSink):
    tar.finish()
    sink.close()


def _all_vms(store) -> list[str]:
    """all=true: every VM and template but the built-in templates and snapshots (which
    go with their VM), as xapi's metadata_handler."""
    return sorted(ref for ref, rec in store.tables["VM"].items()
                  if not rec["is_default_template"] and not rec["is_a_snapshot"]
                  and not rec["is_control_domain"])


async def get_export_metadata(req: Request):
    store = req.server.store
    vms = _all_vms(store) if _flag(req, "all") else [_vm_of(req)]
    if not vms:
        raise Refusal(500, ApiError("INVALID_VALUE", "all", "true"))
    snapshots = req.param("export_snapshots") != "false"     # xapi: true unless "false"
    excluded = frozenset(t.strip().lower() for t in
                         (req.param("excluded_device_types") or "").split(",") if t.strip())
    async with contextlib.AsyncExitStack() as locks:
        for vm in vms:
            await locks.enter_async_context(_lock(req, vm, "metadata_export"))
        objects, _ = vm_xva.export_objects(store, vms, snapshots=snapshots, excluded=excluded)
        body = xva.one_file_archive("ova.xml", ova_xml.dumps(vm_xva.header(objects)),
                                    int(time.time()))
        conn = await req.start_stream(_stream_lines(req, [f"Content-Length: {len(body)}"]))
        await conn.write(body)
    return None


# -- import ---------------------------------------------------------------------------

def _target_sr(req: Request) -> str:
    store = req.server.store
    sr, uuid = req.param("sr_id"), req.param("sr_uuid")
    if sr:
        if not store.exists("SR", sr):
            raise Refusal(404, ApiError("HANDLE_INVALID", "SR", sr))
    elif uuid:
        try:
            sr = store.by_uuid("SR", uuid)
        except ApiError as exc:
            raise Refusal(404, exc) from None
    else:
        sr = store.record("pool", req.server.pool_ref)["default_SR"]
        if sr == NULL_REF or not store.exists("SR", sr):
            raise Refusal(500, ApiError("DEFAULT_SR_NOT_FOUND", sr))
    if store.get("SR", sr, "content_type") == "iso":
        raise Refusal(400, ApiError("SR_OPERATION_NOT_SUPPORTED", sr))
    return sr


def _import_lines(req: Request) -> list[str]:
    return ["HTTP/1.1 200 OK", "Connection: close", "Cache-Control: no-cache, no-store",
            f"task-id:{req.task}", "content-type: application/octet-stream"]


def _refuse_chunked(req: Request):
    if req.header("transfer-encoding") is not None:
        raise Refusal(403, ApiError("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED"))


def as_import_error(exc: BaseException) -> ApiError:
    """xapi's code for what went wrong with an archive (import.ml with_error_handling)."""
    if isinstance(exc, (xva.Truncated, xva.ClientClosed, ClientGone)):
        log.info("import: %s", exc)
        return ApiError("IMPORT_ERROR_PREMATURE_EOF")
    if isinstance(exc, xva.ChecksumMismatch):
        log.info("import: %s", exc)
        return ApiError("IMPORT_ERROR_SOME_CHECKSUMS_FAILED")
    if isinstance(exc, xva.UnexpectedMember):
        return ApiError("IMPORT_ERROR_UNEXPECTED_FILE", exc.expected, exc.actual)
    return ApiError("IMPORT_ERROR", str(exc)[:1000])


class _Upload:
    """The request body for the worker thread: a bridge over req.body(), counting bytes
    for progress."""

    def __init__(self, req: Request):
        self.req = req
        self.body = req.body()
        self.received = 0
        self.bridge = xva.LoopBridge(asyncio.get_running_loop(), read_some=self._piece)

    async def _piece(self) -> bytes:
        data = await anext(self.body, b"")
        self.received += len(data)
        return data


def _open_ova(bridge: xva.LoopBridge):
    tar, _ = xva.open_archive(bridge)
    return tar, tar.expect("ova.xml", xva.MAX_OVA_XML)


def _receive_disk(tar, prefix, path, size, state, fresh, progress):
    fd = os.open(path, os.O_WRONLY)
    try:
        def write_at(offset, data):
            done = 0
            while done < len(data):
                done += os.pwrite(fd, memoryview(data)[done:], offset + done)
        xva.read_disk(tar, prefix, size, write_at, state, zeros_written=fresh,
                      progress=progress)
        os.fsync(fd)
    finally:
        os.close(fd)


def _export_vsn(header: dict) -> int:
    try:
        return int(header.get("version", {}).get("export_vsn", 0))
    except (TypeError, ValueError):
        return 0


@contextlib.asynccontextmanager
async def _undone_on_failure(imp: vm_xva.Importer):
    """Whatever ends the import early removes what it made; archive faults become
    xapi's IMPORT_ERROR_* codes."""
    try:
        yield
    except BaseException as exc:
        await asyncio.shield(imp.undo())     # a second cancel must not stop the cleanup
        if isinstance(exc, (xva.XvaError, ClientGone)):
            raise as_import_error(exc) from None
        raise


async def put_import(req: Request):
    sr = _target_sr(req)
    _refuse_chunked(req)
    await req.start_stream(_import_lines(req))
    upload = _Upload(req)
    length = req.content_length
    imp = vm_xva.Importer(req.server, sr, req.task, restore=_flag(req, "restore"),
                          force=_flag(req, "force"))
    report = _progress_from_thread(req)
    async with _undone_on_failure(imp):
        tar, data = await _in_thread(upload.bridge, _open_ova, upload.bridge)
        header = ova_xml.loads(data)
        disks = await imp.create(header)
        state = xva.ImportState(force=imp.force, verify=_export_vsn(header) > 0)
        for prefix, vdi, size in disks:
            fresh = await fresh_zeroed(req.server, vdi)
            async with raw_view(req.server, vdi, writable=True) as view:
                if view.size < size:
                    raise ApiError("IMPORT_ERROR", f"disk {prefix} got {view.size} bytes "
                                                   f"of the {size} it needs")
                progress = (lambda _d: report(upload.received / length)) if length else None
                await _in_thread(upload.bridge, _receive_disk, tar, prefix, view.path,
                                 size, state, fresh, progress)
        if state.failed:
            log.warning("import forced past %d bad checksums: %s", len(state.failed),
                        ", ".join(state.failed[:5]))
        return imp.finish()


async def put_import_metadata(req: Request):
    _refuse_chunked(req)
    await req.start_stream(_import_lines(req))
    upload = _Upload(req)
    imp = vm_xva.Importer(req.server, NULL_REF, req.task, restore=_flag(req, "restore"),
                          force=_flag(req, "force"), vdi_map=_prefixed(req, "vdi:"),
                          vif_map=_prefixed(req, "vif:"))
    async with _undone_on_failure(imp):
        _, data = await _in_thread(upload.bridge, _open_ova, upload.bridge)
        header = ova_xml.loads(data)
        async for _ in upload.body:     # drain the rest, as xapi does
            pass
        if _flag(req, "dry_run"):       # the refusals, nothing made (assert_can_migrate)
            imp.check(header)
            return []
        await imp.create(header)
        return imp.finish()


def _prefixed(req: Request, prefix: str) -> dict:
    """`vdi:<old uuid>=<new uuid>` query parameters (which local disk replaces which),
    `vif:<VIF uuid>=<network ref>` (the network a VIF joins here)."""
    pairs = parse_qsl(req.scope.get("query_string", b"").decode("latin-1"),
                      keep_blank_values=True)
    return {k[len(prefix):]: v for k, v in pairs if k.startswith(prefix)}
