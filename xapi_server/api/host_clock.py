"""A host's clock (xapi_host.ml): time zones, NTP state, setting the time, and Xen's
scheduling granularity, which has a fixed answer on this hypervisor.

NTP state is the kernel's (adjtimex: the clock is synchronised unless the kernel says
STA_UNSYNC) and chrony's (`chronyc -c sources`), as xapi asks chrony. Setting the time
is refused while NTP keeps it (ntp_mode other than Disabled), as xapi does; else the
setting set_time_command runs with {time}.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
from datetime import timezone

from ..dispatch.registry import implements
from ..errors import ApiError
from .host_admin import run_setting
from .host_maintenance import run_command

ZONEINFO = "/usr/share/zoneinfo"
_STA_UNSYNC = 0x0040
_TIME_ERROR = 5
# chrony's source states (`chronyc -c sources`, 2nd column) as xapi names them.
_CHRONY_STATES = {"*": "synchronised", "+": "combined", "-": "uncombined",
                  "?": "unreachable", "x": "error", "~": "variable"}


@implements("host.list_timezones")
def list_timezones(ctx, self):
    ctx.store.record("host", self)
    zones = []
    for folder, dirs, files in os.walk(ZONEINFO):
        dirs[:] = [d for d in dirs if d not in ("posix", "right")]   # copies of the rest
        for name in files:
            path = os.path.join(folder, name)
            if name[0].isupper() and "." not in name and _is_tzif(path):
                zones.append(os.path.relpath(path, ZONEINFO))
    return sorted(zones)


def _is_tzif(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"TZif"
    except OSError:
        return False


class _Timex(ctypes.Structure):
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long),
                ("freq", ctypes.c_long), ("maxerror", ctypes.c_long),
                ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("rest", ctypes.c_long * 40)]


def kernel_clock_synchronised() -> bool:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    tx = _Timex()
    state = libc.adjtimex(ctypes.byref(tx))     # modes 0: only reads
    if state < 0:
        raise ApiError("INTERNAL_ERROR", f"adjtimex: {os.strerror(ctypes.get_errno())}")
    return state != _TIME_ERROR and not tx.status & _STA_UNSYNC


@implements("host.get_ntp_synchronized")
def get_ntp_synchronized(ctx, self):
    ctx.store.record("host", self)
    return kernel_clock_synchronised()


@implements("host.get_ntp_servers_status")
async def get_ntp_servers_status(ctx, self):
    ctx.store.record("host", self)
    try:
        out = await run_command(["chronyc", "-c", "sources"])
    except FileNotFoundError:
        raise ApiError("INTERNAL_ERROR", "chronyc is not installed") from None
    status = {}
    for line in out.splitlines():
        fields = line.split(",")
        if len(fields) > 2:
            status[fields[2]] = _CHRONY_STATES.get(fields[1], "unreachable")
    return status


@implements("host.set_servertime")
async def set_servertime(ctx, self, value):
    store = ctx.store
    store.record("host", self)
    if store.get("host", self, "ntp_mode") != "Disabled":
        raise ApiError("NOT_ALLOWED_WHEN_NTP_IS_ENABLED", self)
    when = value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    argv = [part.replace("{time}", when)
            for part in shlex.split(ctx.server.settings.set_time_command)]
    if not argv:
        raise ApiError("NOT_IMPLEMENTED", "host.set_servertime")
    await run_setting(argv)


@implements("host.get_sched_gran")
def get_sched_gran(ctx, self):
    """Guest vCPUs are threads the Linux scheduler places one CPU at a time."""
    ctx.store.record("host", self)
    return "cpu"


@implements("host.set_sched_gran")
def set_sched_gran(ctx, self, value):
    ctx.store.record("host", self)
    if value != "cpu":
        raise ApiError("OPERATION_NOT_ALLOWED",
                       f"this hypervisor schedules vCPUs per CPU; sched-gran={value} is Xen's")
