"""A data handler's request about an object a pool member owns goes to that member,
as xapi answers it: an HTTP redirect (302, Location: the same path and query on the
member's address). Which object a request is about is declared on its route
(`Route(owner=...)`, one of the finders below); whose it is, api/pool_scope.py says,
as for forwarded messages. The member accepts the coordinator's session for the
request (http/auth.py, api/pool_sessions.py).
"""
from __future__ import annotations

from ..api.pool_membership import is_live
from ..api.pool_scope import owner
from ..errors import ApiError
from .auth import param


def location(server, route, scope) -> str | None:
    """Where to send the request, None to serve it here; HOST_OFFLINE when the owner
    is not live."""
    if route.owner is None or server.role.is_member:
        return None
    store = server.store
    found = route.owner(store, scope)
    host = owner(store, *found) if found is not None else None
    if host in (None, server.host_ref) or not store.exists("host", host):
        return None
    if not is_live(store, host):
        raise ApiError("HOST_OFFLINE", host)
    address, port = store.get("host", host, "address"), server.settings.port
    if ":" in address:
        address = f"[{address}]"
    netloc = address if port == 443 else f"{address}:{port}"
    query = scope.get("query_string", b"").decode("latin-1")
    return f"https://{netloc}{scope['path']}" + (f"?{query}" if query else "")


def _named(store, cname: str, value: str | None) -> str | None:
    """A ref or uuid of class cname, None when it names none (the handler says so)."""
    if not value:
        return None
    if store.exists(cname, value):
        return value
    found = store.find(cname, uuid=value)
    return found[0] if found else None


def console_object(store, scope):
    """/console, /vncsnapshot: a VM or one of its consoles, by uuid or ref."""
    for key in ("uuid", "ref"):
        value = param(scope, key)
        vm = _named(store, "VM", value)
        console = _named(store, "console", value) if vm is None else None
        if console is not None:
            vm = store.get("console", console, "VM")
        if vm is not None:
            return "VM", vm
    return None


def disk_object(store, scope):
    """/import_raw_vdi, /export_raw_vdi: the VDI, else (an import making one) the SR."""
    vdi = _named(store, "VDI", param(scope, "vdi"))
    if vdi is not None:
        return "VDI", vdi
    sr = _named(store, "SR", param(scope, "sr_id") or param(scope, "sr_uuid"))
    return ("SR", sr) if sr is not None else None


def archive_of(cname: str):
    """/vm_rrd, /sr_rrd: the object named by uuid."""
    def finder(store, scope):
        ref = _named(store, cname, param(scope, "uuid"))
        return (cname, ref) if ref is not None else None
    return finder
