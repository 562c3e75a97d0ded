"""Every HTTP route the server answers, in one table: its method, its paths, how it
authenticates, the permission it needs and its handler.

A new handler is a declaration here plus its body (an `async (app, scope, receive,
send)` function in a module of this package): with `auth=SESSION` the app resolves the
request's session before the body runs (cookie, query or HTTP Basic: http/auth.py),
checks the route's `http/<action>` permission, and hands the session to the body in
`scope[auth.SESSION_KEY]`; a refusal never reaches the body. The permission is xapi's
name (`http/` + the action of xapi's datamodel `http_actions`) and its weakest role is
declared in the RBAC table, rbac.HTTP_PERMISSIONS, so `role.get_permissions_name_label`
lists it; a route naming a permission that table lacks fails at import.

Paths match exactly (an empty tuple: any path), first declared first; the routes
without `auth` are xapi's public ones, which check the session inside (the RPC calls).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..rbac import HTTP_PERMISSIONS
from . import audit_log, rpc
from .responses import plain_fault

SESSION = "session"       # auth: a session from the cookie, the query or HTTP Basic


@dataclass(frozen=True)
class Route:
    method: str
    paths: tuple          # exact paths; empty: any path
    handler: Callable     # async (app, scope, receive, send)
    permission: str | None = None   # "http/<action>": RBAC for the session (auth=SESSION)
    auth: str | None = None         # SESSION, or None: the handler authenticates, if at all
    fault: Callable = plain_fault   # (scope, description) -> (content type, body)

    def __post_init__(self):
        if self.auth not in (None, SESSION):
            raise ValueError(f"route {self.method} {self.paths}: unknown auth {self.auth!r}")
        if self.permission is not None and self.permission not in HTTP_PERMISSIONS:
            raise ValueError(f"route {self.method} {self.paths}: permission "
                             f"{self.permission} is not in rbac.HTTP_PERMISSIONS")
        if self.permission is not None and self.auth is None:
            raise ValueError(f"route {self.method} {self.paths}: a permission needs a session")

    def matches(self, method: str, path: str) -> bool:
        return self.method == method and (not self.paths or path in self.paths)


ROUTES = (
    Route("POST", ("/cli",), rpc.cli_route, fault=rpc.cli_fault),
    Route("POST", ("/jsonrpc", "/json"), rpc.jsonrpc_route, fault=rpc.jsonrpc_fault),
    Route("POST", (), rpc.xmlrpc_route, fault=rpc.xmlrpc_fault),   # as xapi: any path
    Route("OPTIONS", (), rpc.options_route),
    Route("GET", ("/audit_log",), audit_log.get_audit_log,
          permission="http/get_audit_log", auth=SESSION),
    Route("GET", ("/",), rpc.index_route),
)


def find(routes, method: str, path: str) -> Route | None:
    return next((route for route in routes if route.matches(method, path)), None)
