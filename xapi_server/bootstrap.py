"""First start creates the pool, this host and user root; every start refreshes the
host's facts from the machine (hostname, address, CPUs, memory, versions)."""
from __future__ import annotations

import os
import platform
import secrets
import sys
from datetime import datetime, timezone

from . import __version__, hostinfo, templates
from .api.host_maintenance import STAY_DISABLED, update_allowed_operations
from .rbac import ensure_roles

API_VERSION = (2, 21)  # XenServer 8 / XCP-ng 8.3


def software_version() -> dict[str, str]:
    return {
        "product_brand": "xapi-py", "product_version": __version__,
        "product_version_text": __version__, "product_version_text_short": __version__,
        "platform_name": "xapi-py", "platform_version": __version__,
        "xapi": __version__, "xapi_build": __version__, "xen": "",
        "build_number": __version__, "hostname": hostinfo.hostname(),
        "linux": hostinfo.kernel_version(), "date": "",
        "python": platform.python_version(),
    }


def start(server):
    """Create or refresh the objects every client expects; returns (pool, host)."""
    store, settings = server.store, server.settings
    host = store.meta.get("host_ref")
    if host is None or not store.exists("host", host):
        host = store.create("host", {"enabled": True})
        store.set_meta("host_ref", host)
    pool = store.meta.get("pool_ref")
    if pool is None or not store.exists("pool", pool):
        pool = store.create("pool", {"master": host})
        store.set_meta("pool_ref", pool)
    ensure_roles(store)
    _refresh_host(store, host)
    store.update("host", host, bios_strings=hostinfo.bios_strings(settings.dmi_dir,
                                                                  settings.dmi_entries_dir))
    update_allowed_operations(store, host)
    store.update("pool", pool, cpu_info=hostinfo.cpu_info())
    if not server.auth.has_user("root"):
        _create_root(server, settings.data_dir)
    templates.ensure(store)
    return pool, host


def _refresh_host(store, host):
    name = hostinfo.hostname()
    record = store.record("host", host)
    metrics = record["metrics"]
    mem = hostinfo.meminfo()
    now = datetime.now(timezone.utc)
    metric_fields = {"memory_total": mem.get("MemTotal", 0),
                     "memory_free": mem.get("MemAvailable", mem.get("MemFree", 0)),
                     "live": True, "last_updated": now}
    if not store.exists("host_metrics", metrics):
        metrics = store.create("host_metrics", metric_fields)
    else:
        store.update("host_metrics", metrics, **metric_fields)
    changes = {
        "hostname": name, "address": hostinfo.primary_address(),
        "API_version_major": API_VERSION[0], "API_version_minor": API_VERSION[1],
        "API_version_vendor": "XenSource", "software_version": software_version(),
        "cpu_info": hostinfo.cpu_info(), "metrics": metrics,
        # enabled again at every start, unless disabled with auto_enable=false
        "enabled": store.meta.get(STAY_DISABLED) != "true",
        "capabilities": [f"hvm-3.0-{platform.machine()}"],
        "sched_policy": "", "edition": "free",
    }
    if not record["name_label"]:
        changes["name_label"] = name
    store.update("host", host, **changes)
    _refresh_cpus(store, host)


def _refresh_cpus(store, host):
    cpus = hostinfo.cpus()
    existing = {store.get("host_cpu", ref, "number"): ref
                for ref in store.find("host_cpu", host=host)}
    for number, cpu in enumerate(cpus):
        fields = {"host": host, "number": number, "vendor": cpu.get("vendor_id", ""),
                  "speed": int(float(cpu.get("cpu MHz", "0") or 0)),
                  "modelname": cpu.get("model name", ""), "family": _int(cpu.get("cpu family")),
                  "model": _int(cpu.get("model")), "stepping": cpu.get("stepping", ""),
                  "flags": cpu.get("flags", "")}
        if number in existing:
            store.update("host_cpu", existing.pop(number), **fields)
        else:
            store.create("host_cpu", fields)
    for ref in existing.values():  # CPUs that went away
        store.delete("host_cpu", ref)


def _int(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _create_root(server, data_dir):
    password = os.environ.get("XAPI_ROOT_PASSWORD")
    if password:
        server.auth.set_password("root", password)
        print("xapi-server: user root created with the password from XAPI_ROOT_PASSWORD",
              file=sys.stderr, flush=True)
        return
    password = secrets.token_urlsafe(18)
    path = os.path.join(data_dir, "root-password")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    server.auth.set_password("root", password)
    print(f"xapi-server: user root created; its password is in {path}",
          file=sys.stderr, flush=True)
