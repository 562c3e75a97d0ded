"""What a host tells about itself and its data (xapi_host.ml): the messages the server
answers, the client programs it has seen, VMs that do not give memory back, what a
status report holds (and uploading one), its metrics archives on disk, and local
storage caching, which needs a driver that can cache (none here: xapi's
SR_OPERATION_NOT_SUPPORTED).
"""
from __future__ import annotations

import asyncio
import io
import os
import platform
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request

from .. import hostinfo
from .._logging import RECENT
from ..datamodel import METHODS
from ..dispatch.registry import implements
from ..errors import ApiError
from .host_maintenance import _assert_bacon_mode, run_command

NULL = "OpaqueRef:NULL"
MAX_TRACKED_AGENTS = 128          # xapi keeps this many user agents
UPLOAD_TIMEOUT = 300.0
# What a status report of this host holds: its parts, as xen-bugtool lists them.
_STATUS_PARTS = (("xapi-py-log", "The management server's recent log lines", "yes"),
                 ("kernel-log", "The kernel's message buffer (dmesg)", "yes"))


@implements("host.list_methods")
def list_methods(ctx):
    return sorted(METHODS)


@implements("host.get_tracked_user_agents")
def get_tracked_user_agents(ctx, self):
    """name -> version of each User-Agent seen since the start (`name/version ...`),
    the last seen version of a name winning, at most MAX_TRACKED_AGENTS names."""
    ctx.store.record("host", self)
    limiter, callers = ctx.server.limiter, ctx.store.tables["Caller"]
    seen = sorted((stats.last_call, callers[ref]["user_agent"])
                  for ref, stats in limiter.stats.items() if ref in callers)
    agents: dict[str, str] = {}
    for _, agent in seen:
        name, _, version = agent.split(" ")[0].partition("/")
        if name:
            agents.pop(name, None)
            agents[name] = version
    return dict(list(agents.items())[-MAX_TRACKED_AGENTS:])


@implements("host.get_uncooperative_resident_VMs")
def get_uncooperative_resident_VMs(ctx, self):
    """Running VMs holding more memory than their balloon target (by over 1%)."""
    store = ctx.store
    store.record("host", self)
    found = []
    for vm in store.get("host", self, "resident_VMs"):
        rec = store.record("VM", vm)
        if rec["is_control_domain"] or rec["power_state"] != "Running":
            continue
        target, metrics = rec["memory_target"], rec["metrics"]
        if target > 0 and store.exists("VM_metrics", metrics) and \
                store.get("VM_metrics", metrics, "memory_actual") > target * 1.01:
            found.append(vm)
    return found


@implements("host.get_system_status_capabilities")
def get_system_status_capabilities(ctx, host):
    ctx.store.record("host", host)
    parts = "".join(
        f'<capability content-type="text/plain" default-checked="{checked}" key="{key}" '
        f'max-size="-1" max-time="-1" min-size="-1" min-time="-1" pii="maybe" />'
        f'<!-- {what} -->' for key, what, checked in _STATUS_PARTS)
    return f'<?xml version="1.0" ?><system-status-capabilities>{parts}' \
           '</system-status-capabilities>'


async def status_report() -> bytes:
    """A tar of the report's parts, as the bug tool makes one."""
    parts = {"xapi-py.log": RECENT.text().encode(),
             "dmesg.log": (await run_command(["dmesg"])).encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in parts.items():
            info = tarfile.TarInfo(f"status-report/{name}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _put(url: str, data: bytes, proxy: str):
    handlers = [urllib.request.ProxyHandler({"http": proxy, "https": proxy} if proxy
                                            else {})]
    request = urllib.request.Request(url, data=data, method="PUT",
                                     headers={"Content-Type": "application/x-tar"})
    with urllib.request.build_opener(*handlers).open(request, timeout=UPLOAD_TIMEOUT) as r:
        r.read()


@implements("host.bugreport_upload")
async def bugreport_upload(ctx, host, url, options):
    ctx.store.record("host", host)
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise ApiError("INVALID_VALUE", "url", url)
    data = await status_report()
    try:
        await asyncio.to_thread(_put, url, data, options.get("http_proxy", ""))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ApiError("INTERNAL_ERROR", f"status report upload to {url} failed: {exc}") \
            from None


@implements("host.backup_rrds")
async def backup_rrds(ctx, host, delay):
    """The archives are written at every sample; this puts them on the disk (fsync)."""
    ctx.store.record("host", host)
    await asyncio.sleep(min(max(delay, 0.0), 3600.0))
    metrics = ctx.server.metrics
    paths = [a.path for a in metrics.archives.values()] if metrics is not None else []
    await asyncio.to_thread(_sync_files, paths)


def _sync_files(paths):
    for path in paths:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@implements("host.refresh_pack_info")
def refresh_pack_info(ctx, host):
    """What can change under a running server: the kernel (after an update), the host
    name, the Python runtime (the rest is this server's own version)."""
    ctx.store.record("host", host)
    ctx.store.update("host", host, software_version={
        **ctx.store.get("host", host, "software_version"),
        "hostname": hostinfo.hostname(), "linux": hostinfo.kernel_version(),
        "python": platform.python_version()})


@implements("host.sync_data")
def sync_data(ctx, host):
    """The pool's shared data (blobs) lives on its master, this host: nothing to copy."""
    ctx.store.record("host", host)


@implements("host.rescan_drivers")
def rescan_drivers(ctx, self):
    """The kernel's drivers are the running kernel's; there are no driver variants to
    choose between (xapi's Host_driver records) on this host."""
    ctx.store.record("host", self)


# -- local storage caching ------------------------------------------------------------------

def _can_cache(store, sr: str) -> bool:
    sms = store.find("SM", type=store.get("SR", sr, "type"))
    return (not store.get("SR", sr, "shared") and len(store.get("SR", sr, "PBDs")) == 1
            and bool(sms) and "SR_SUPPORTS_LOCAL_CACHING" in store.get("SM", sms[0],
                                                                       "features"))


def enable_caching(store, host: str, sr: str):
    store.record("SR", sr)
    _assert_bacon_mode(store, host)
    if not _can_cache(store, sr):
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", sr)
    store.update("host", host, local_cache_sr=sr)
    store.update("SR", sr, local_cache_enabled=True)


def disable_caching(store, host: str):
    _assert_bacon_mode(store, host)
    sr = store.get("host", host, "local_cache_sr")
    store.update("host", host, local_cache_sr=NULL)
    if sr != NULL and store.exists("SR", sr):
        store.update("SR", sr, local_cache_enabled=False)


@implements("host.enable_local_storage_caching")
def host_enable_local_storage_caching(ctx, host, sr):
    ctx.store.record("host", host)
    enable_caching(ctx.store, host, sr)


@implements("host.disable_local_storage_caching")
def host_disable_local_storage_caching(ctx, host):
    ctx.store.record("host", host)
    disable_caching(ctx.store, host)


@implements("pool.enable_local_storage_caching")
def pool_enable_local_storage_caching(ctx, self):
    """xapi: each host with a local SR that can cache uses it; others are skipped."""
    store = ctx.store
    store.record("pool", self)
    for host in store.refs("host"):
        for pbd in store.get("host", host, "PBDs"):
            sr = store.get("PBD", pbd, "SR")
            if _can_cache(store, sr):
                try:
                    enable_caching(store, host, sr)
                except ApiError:
                    pass
                break


@implements("pool.disable_local_storage_caching")
def pool_disable_local_storage_caching(ctx, self):
    store = ctx.store
    store.record("pool", self)
    for host in store.refs("host"):
        try:
            disable_caching(store, host)
        except ApiError:
            pass
