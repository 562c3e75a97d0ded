"""What a host's name and system log are, applied to the machine (xapi_host.ml):

- host.set_hostname_live: xapi's name rules (HOST_NAME_INVALID with its reasons), then
  the setting `hostname_command` with the name appended (hostnamectl by default; tests
  run something harmless), then host.hostname.
- host.syslog_reconfigure: host.logging[syslog_destination] ("host" or "host:port")
  becomes an rsyslog drop-in that forwards every message there over UDP, as xapi's
  xe-syslog-reconfigure does (setting `syslog_forward_file`; no destination: the file
  goes), then `syslog_restart_command` makes rsyslog read it.
"""
from __future__ import annotations

import os
import re
import shlex

from ..dispatch.registry import implements
from ..errors import ApiError
from .host_maintenance import run_command

_HOSTNAME = re.compile(r"[A-Za-z0-9.-]+")
# a host name or an IPv4/IPv6 address, optionally with a port: never anything rsyslog
# would read as more configuration (spaces, newlines, quotes, '#')
_DESTINATION = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+|[0-9A-Fa-f:]+)(:[0-9]{1,5})?")


async def _run(command: str, *args: str):
    """The setting's command (shlex-split) with `args`; INTERNAL_ERROR when it fails."""
    argv = shlex.split(command) + list(args)
    if not argv:
        raise ApiError("INTERNAL_ERROR", "no command configured")
    try:
        await run_command(argv)
    except OSError as exc:
        raise ApiError("INTERNAL_ERROR", f"{argv[0]}: {exc.strerror}") from None


def _this_host(ctx, host):
    ctx.store.record("host", host)
    if host != ctx.server.host_ref:
        raise ApiError("HOST_OFFLINE", host)


def check_hostname(name: str):
    if not name:
        raise ApiError("HOST_NAME_INVALID", "hostname empty")
    if len(name) > 255:
        raise ApiError("HOST_NAME_INVALID", "hostname is too long")
    if not _HOSTNAME.fullmatch(name) or name[0] == "-" or name[-1] == "-":
        raise ApiError("HOST_NAME_INVALID", "hostname contains invalid characters")


@implements("host.set_hostname_live")
async def set_hostname_live(ctx, host, hostname):
    _this_host(ctx, host)
    check_hostname(hostname)
    await _run(ctx.server.settings.hostname_command, hostname)
    ctx.store.update("host", host, hostname=hostname)


def forward_rule(destination: str) -> str:
    return ("# Written by xapi-py (host.syslog_reconfigure): every message also goes to\n"
            "# host.logging[syslog_destination] over UDP. Change it there, not here.\n"
            f"*.* @{destination}\n")


@implements("host.syslog_reconfigure")
async def syslog_reconfigure(ctx, host):
    _this_host(ctx, host)
    destination = ctx.store.get("host", host, "logging").get("syslog_destination", "")
    if destination and (len(destination) > 255 or not _DESTINATION.fullmatch(destination)):
        raise ApiError("INVALID_VALUE", "syslog_destination", destination)
    settings = ctx.server.settings
    path = settings.syslog_forward_file
    try:
        if destination:
            tmp = f"{path}.tmp"
            with open(tmp, "w") as f:
                f.write(forward_rule(destination))
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        elif os.path.exists(path):
            os.unlink(path)
    except OSError as exc:
        raise ApiError("INTERNAL_ERROR", f"syslog forwarding file {path}: {exc.strerror}") \
            from None
    await _run(settings.syslog_restart_command)
