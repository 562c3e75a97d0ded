"""Every HTTP route the server answers, in one table: its method, its paths, how it
authenticates, the permission it needs and its handler.

A new handler is a declaration here plus its body in a module of this package. A route
without `auth` is an `async (app, scope, receive, send)` function. With `auth=SESSION`
the app resolves the request's session before the body runs (cookie, query or HTTP
Basic: http/auth.py) and checks the route's `http/<action>` permission; a refusal never
reaches the body, which is an `async (req)` function given a dataplane.Request. With
`task=True` the body also drives a task, xapi's protocol for its data handlers (the
client's `task_id`, or one made for the request): see http/dataplane.py. The permission is xapi's
name (`http/` + the action of xapi's datamodel `http_actions`) and its weakest role is
declared in the RBAC table, rbac.HTTP_PERMISSIONS, so `role.get_permissions_name_label`
lists it; a route naming a permission that table lacks fails at import.

Paths are prefixes, as in xapi's server: among the routes of the request's method the
longest path that starts the request's path wins (`/export/` and `/exportfoo` reach
`/export`; every other POST is XML-RPC and every other GET the web console's files). A method no route
has gets 501; a known method no path matches, 403. The routes without `auth` are
xapi's public ones, which check the session inside (the RPC calls).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..rbac import HTTP_PERMISSIONS
from . import (audit_log, blob, console, pool_internal, prometheus, rpc, rrd, vdi_export,
               vdi_import, vm_transfer, vncsnapshot, webui)
from .pool_redirect import archive_of, console_object, disk_object
from .responses import plain_fault

SESSION = "session"       # auth: a session from the cookie, the query or HTTP Basic


@dataclass(frozen=True)
class Route:
    method: str
    paths: tuple          # path prefixes
    handler: Callable     # auth=None: async (app, scope, receive, send); SESSION: async (req)
    permission: str | None = None   # "http/<action>": RBAC for the session (auth=SESSION)
    auth: str | None = None         # SESSION, or None: the handler authenticates, if at all
    task: bool = False              # the body drives a task (auth=SESSION only)
    audited: bool = True            # auth=SESSION: each request goes to the audit log
    fault: Callable = plain_fault   # (scope, description) -> (content type, body)
    # (store, scope) -> (class, ref) the request is about: in a pool, a request about a
    # member's object is redirected there (http/pool_redirect.py)
    owner: Callable | None = None

    def __post_init__(self):
        if self.auth not in (None, SESSION):
            raise ValueError(f"route {self.method} {self.paths}: unknown auth {self.auth!r}")
        if self.permission is not None and self.permission not in HTTP_PERMISSIONS:
            raise ValueError(f"route {self.method} {self.paths}: permission "
                             f"{self.permission} is not in rbac.HTTP_PERMISSIONS")
        if (self.permission is not None or self.task) and self.auth is None:
            raise ValueError(f"route {self.method} {self.paths}: a permission or a task "
                             "needs a session")
        if not self.paths or not all(p.startswith("/") for p in self.paths):
            raise ValueError(f"route {self.method} {self.paths}: paths must start with /")

    @property
    def action(self) -> str:
        """xapi's action name (`get_export`), for task labels and the audit log."""
        if self.permission:
            return self.permission.split("/")[1]
        return f"{self.method.lower()}{self.paths[0].replace('/', '_')}"


ROUTES = (
    Route("POST", ("/cli",), rpc.cli_route, fault=rpc.cli_fault),
    Route("POST", ("/jsonrpc", "/json"), rpc.jsonrpc_route, fault=rpc.jsonrpc_fault),
    # between the hosts of a pool: the pool secret, checked per call (api/pool_membership)
    Route("POST", ("/pool_internal",), pool_internal.pool_internal),
    Route("POST", ("/",), rpc.xmlrpc_route, fault=rpc.xmlrpc_fault),   # as xapi: any path
    Route("OPTIONS", ("/",), rpc.options_route),
    Route("GET", ("/audit_log",), audit_log.get_audit_log,
          permission="http/get_audit_log", auth=SESSION, audited=False),
    # the web console (ui/ built into ui/dist) and any other file of it: http/webui.py
    Route("GET", ("/",), webui.get_root),
    # consoles, xapi's console.ml (http/console.py): raw RFB or a serial console after a
    # CONNECT, the same in WebSocket frames after a GET upgrade; a picture of the screen
    Route("CONNECT", ("/console",), console.connect_console,
          permission="http/connect_console", auth=SESSION, owner=console_object),
    Route("GET", ("/console",), console.connect_console_ws,
          permission="http/connect_console_ws", auth=SESSION, owner=console_object),
    Route("GET", ("/vncsnapshot",), vncsnapshot.get_vncsnapshot,
          permission="http/get_vncsnapshot", auth=SESSION, task=True, owner=console_object),
    # a disk's bytes in and out, xapi's import_raw_vdi.ml / export_raw_vdi.ml
    Route("PUT", ("/import_raw_vdi",), vdi_import.import_raw_vdi,
          permission="http/put_import_raw_vdi", auth=SESSION, task=True, owner=disk_object),
    Route("GET", ("/export_raw_vdi",), vdi_export.export_raw_vdi,
          permission="http/get_export_raw_vdi", auth=SESSION, task=True, owner=disk_object),
    # VM export/import (XVA), xapi's export.ml / import.ml: http/vm_transfer.py
    Route("GET", ("/export",), vm_transfer.get_export, permission="http/get_export",
          auth=SESSION, task=True),
    Route("PUT", ("/import",), vm_transfer.put_import, permission="http/put_import",
          auth=SESSION, task=True),
    Route("GET", ("/export_metadata",), vm_transfer.get_export_metadata,
          permission="http/get_export_metadata", auth=SESSION, task=True),
    Route("PUT", ("/import_metadata",), vm_transfer.put_import_metadata,
          permission="http/put_import_metadata", auth=SESSION, task=True),
    # metrics, xcp-rrdd's handlers (http/rrd.py); /metrics is ours (http/prometheus.py).
    # Reads, polled every few seconds: not audited, as RPC reads are not.
    Route("GET", ("/rrd_updates",), rrd.get_rrd_updates, permission="http/get_rrd_updates",
          auth=SESSION, task=True, audited=False),
    Route("GET", ("/host_rrd",), rrd.get_host_rrd, permission="http/get_host_rrd",
          auth=SESSION, task=True, audited=False),
    Route("GET", ("/host_rrds",), rrd.get_host_rrd, permission="http/get_host_rrds",
          auth=SESSION, task=True, audited=False),
    Route("GET", ("/vm_rrd",), rrd.get_vm_rrd, permission="http/get_vm_rrd",
          auth=SESSION, task=True, audited=False, owner=archive_of("VM")),
    Route("GET", ("/vm_rrds",), rrd.get_vm_rrd, permission="http/get_vm_rrds",
          auth=SESSION, task=True, audited=False, owner=archive_of("VM")),
    Route("GET", ("/sr_rrd",), rrd.get_sr_rrd, permission="http/get_sr_rrd",
          auth=SESSION, task=True, audited=False, owner=archive_of("SR")),
    Route("GET", ("/metrics",), prometheus.get_metrics),
    # blobs, xapi's blob handler (http/blob.py): public ones readable without a session
    Route("GET", ("/blob",), blob.get_blob),
    Route("PUT", ("/blob",), blob.put_blob),
)


class NoRoute(Exception):
    """No route answers: `status` is xapi's (501 for an unknown method, else 403)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


def find(routes, method: str, path: str) -> Route:
    """The route of the longest path of `method` that starts `path` (the first such
    route in `routes` when two have it)."""
    table = _ROUTES_BY_METHOD if routes is ROUTES else _by_method(routes)
    for prefix, route in table.get(method, ()):
        if path.startswith(prefix):
            return route
    raise NoRoute(403 if any(r.method == method for r in routes) else 501)


def _by_method(routes) -> dict[str, list[tuple[str, Route]]]:
    """method -> (path, route), longest path first, routes in their order for a tie.
    Made once for ROUTES: asking each route in turn for its longest path that starts
    the request's was a fifth of a small call's time in the app (32 clients calling
    host.get_record)."""
    table: dict[str, list] = {}
    for route in routes:
        table.setdefault(route.method, []).extend((p, route) for p in route.paths)
    for pairs in table.values():
        pairs.sort(key=lambda pair: -len(pair[0]))      # stable: ties keep the order
    return table


_ROUTES_BY_METHOD = _by_method(ROUTES)
