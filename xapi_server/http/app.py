"""The HTTP layer: a plain ASGI app over the route table (http/routes.py).

    POST /jsonrpc, /json   JSON-RPC 1.0 / 2.0
    POST /cli              xe's thin-CLI protocol (xapi_server/cli)
    POST anything else     XML-RPC (as xapi: /, /RPC2, ...)
    OPTIONS                CORS pre-flight
    GET /audit_log         the audit log (a session with http/get_audit_log)
    GET /                  the web console (http/webui.py; any other GET: its files or 404)
    ... and xapi's data handlers: see routes.py

Paths are prefixes (the longest wins); a method no route has gets 501, a path no route
of its method starts, 403 (routes.py).

For each request the app finds the route, authenticates it when the route says so
(http/auth.py: 401 without a valid session, 403 without the permission) and runs the
handler. A body over its cap gets 413. Whatever else escapes a route (a bug, a result no
encoder can write) is logged once with its traceback and answered with INTERNAL_ERROR in
the caller's own protocol (the route's `fault`), never a bare 500 or a traceback.
"""
from __future__ import annotations

import asyncio
import logging

from ..errors import ApiError
from ..wire import clean_text
from . import auth, dataplane, pool_redirect
from .responses import BodyTooLarge, plain_fault, read_body, respond
from .routes import ROUTES, SESSION, NoRoute, Route, find

log = logging.getLogger(__name__)

__all__ = ["XapiApp", "Route", "BodyTooLarge", "read_body"]


async def _internal_error(route, scope, send, exc):
    """The outermost handler: one log line with the traceback, INTERNAL_ERROR to the
    caller in its protocol, nothing of the traceback in the reply."""
    log.exception("internal error answering %s %s", scope["method"], scope["path"])
    text = clean_text(f"{type(exc).__name__}: {exc}")[:1000]
    content_type, body = route.fault(scope, ["INTERNAL_ERROR", text])
    try:
        await respond(send, 500 if route.fault is plain_fault else 200, body, content_type)
    except RuntimeError:   # the reply had already begun: the server closes the connection
        pass


class XapiApp:
    def __init__(self, server, routes=ROUTES):
        self.server = server
        self.routes = routes
        self.big_decode = asyncio.Semaphore(1)   # one big body decoded at a time (rpc.py)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        try:
            route = find(self.routes, scope["method"], scope["path"])
        except NoRoute as none:
            return await respond(send, none.status, b"", b"text/plain",
                                 [(b"connection", b"close")])
        try:
            if route.auth == SESSION:
                return await self._authenticated(route, scope, receive, send)
            return await route.handler(self, scope, receive, send)
        except BodyTooLarge:
            return await respond(send, 413, b"request body too large\n", b"text/plain")
        except ConnectionAbortedError:
            return
        except Exception as exc:
            return await _internal_error(route, scope, send, exc)

    async def _authenticated(self, route, scope, receive, send):
        try:
            async with auth.session_for(self.server, scope, route.permission) as session:
                scope[auth.SESSION_KEY] = session
                try:
                    elsewhere = pool_redirect.location(self.server, route, scope)
                except ApiError as exc:   # its member is not live: HOST_OFFLINE
                    dataplane.fail_supplied_task(self.server, scope, exc)
                    await self.server.store.flush()
                    return await respond(send, 500, " ".join(exc.description).encode()
                                         + b"\n", b"text/plain")
                if elsewhere is not None:   # a pool member's object: sent there, as xapi
                    return await respond(send, 302, b"", b"text/plain",
                                         [(b"location", elsewhere.encode())])
                return await dataplane.run(self, route, scope, receive, send, session)
        except auth.Refused as refusal:
            if refusal.error is not None:
                dataplane.fail_supplied_task(self.server, scope, refusal.error)
                await self.server.store.flush()
            return await respond(send, refusal.status, refusal.reason.encode() + b"\n",
                                 b"text/plain", refusal.headers)

    async def _lifespan(self, receive, send):
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.server.startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.server.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return
