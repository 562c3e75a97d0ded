"""The HTTP layer: a plain ASGI app with a declarative route table.

    POST /jsonrpc, /json   JSON-RPC 1.0 / 2.0
    POST /cli              xe's thin-CLI protocol (xapi_server/cli)
    POST anything else     XML-RPC (as xapi: /, /RPC2, ...)
    OPTIONS                CORS pre-flight
    GET /                  a short page saying what this is

It reads the body (capped), hands the call to the dispatcher and encodes the answer.
A body that is not a request at all gets HTTP 500 with a one-line reason, as xapi;
every API-level failure is HTTP 200 with a XenAPI error. Whatever else escapes a route
(a bug, a result no encoder can write) is logged once with its traceback and answered
with INTERNAL_ERROR in the caller's own protocol, never a bare 500 or a traceback.
"""
from __future__ import annotations

import asyncio

import html
from dataclasses import dataclass
from typing import Callable

from .._logging import log
from ..errors import ApiError
from ..wire import MalformedRequest, UnsupportedEncoding, clean_text, jsonrpc, xmlrpc


class BodyTooLarge(Exception):
    pass


_CORS = [(b"access-control-allow-origin", b"*"),
         (b"access-control-allow-headers", b"X-Requested-With")]


async def _internal_error(route, scope, send, exc):
    """The outermost handler: one log line with the traceback, INTERNAL_ERROR to the
    caller in its protocol, nothing of the traceback in the reply."""
    log.exception("internal error answering %s %s", scope["method"], scope["path"])
    text = clean_text(f"{type(exc).__name__}: {exc}")[:1000]
    content_type, body = route.fault(scope, ["INTERNAL_ERROR", text])
    try:
        await _respond(send, 200 if route.fault is not _plain_fault else 500, body,
                       content_type)
    except RuntimeError:   # the reply had already begun: the server closes the connection
        pass


async def _respond(send, status: int, body: bytes, content_type: bytes, extra=()):
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
               *_CORS, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(scope, receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge()
            except ValueError:
                pass
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _peer(scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


def _user_agent(scope) -> str:
    for name, value in scope["headers"]:
        if name == b"user-agent":
            return value.decode("latin-1")
    return ""


def _error_page(reason: str) -> bytes:
    return (f"<html><body><h1>HTTP 500 internal server error</h1>The request could not be "
            f"read.<h1>Additional information</h1>{html.escape(reason)}</body></html>").encode()


# -- INTERNAL_ERROR in each protocol: (content type, body) for an escaped exception --

_JSON_CALL = "xapi_server.jsonrpc_call"   # scope key: the decoded call, for its id


def _xmlrpc_fault(scope, description: list):
    return b"text/xml", xmlrpc.encode_failure(description)


def _jsonrpc_fault(scope, description: list):
    call = scope.get(_JSON_CALL) or jsonrpc.JsonCall("", [], None, True)   # id unknown: null
    return b"application/json", jsonrpc.encode_failure(call, description)


def _cli_fault(scope, description: list):
    """The thin-CLI protocol's error and exit, as the CLI sends them when it cannot take
    the raw connection (nothing has been sent on it yet)."""
    from xe_cli import proto
    return b"application/octet-stream", (proto.greeting()
                                         + proto.command(proto.ERROR, description[0],
                                                         description[1:])
                                         + proto.command(proto.EXIT, 1))


def _plain_fault(scope, description: list):
    return b"text/plain", b"internal error\n"


@dataclass(frozen=True)
class Route:
    method: str
    paths: tuple          # empty: any path
    handler: Callable     # async (app, scope, receive, send)
    fault: Callable = _plain_fault   # (scope, description) -> (content type, body)


# Bodies above this size are decoded on a worker thread, one at a time: a 16 MiB
# XML-RPC body takes seconds to parse (expat building a tree), which on the event loop
# would stall every other client; on the thread the loop keeps its turns (a
# 16 MiB body delays others by about a tenth of a second), and queueing the big ones
# keeps many of them from crowding the loop out of the interpreter lock.
BIG_BODY = 256 * 1024


class XapiApp:
    def __init__(self, server, extra_routes=()):
        self.server = server
        self._big_decode = asyncio.Semaphore(1)
        self.routes = (*extra_routes,
                       Route("POST", ("/cli",), XapiApp.cli, _cli_fault),
                       Route("POST", ("/jsonrpc", "/json"), XapiApp.jsonrpc, _jsonrpc_fault),
                       Route("POST", (), XapiApp.xmlrpc, _xmlrpc_fault),
                       Route("OPTIONS", (), XapiApp.options),
                       Route("GET", ("/audit_log",), XapiApp.audit_log),
                       Route("GET", ("/",), XapiApp.index))

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        if scope["type"] != "http":
            return
        for route in self.routes:
            if route.method == scope["method"] and (not route.paths or scope["path"] in route.paths):
                try:
                    return await route.handler(self, scope, receive, send)
                except BodyTooLarge:
                    return await _respond(send, 413, b"request body too large\n", b"text/plain")
                except ConnectionAbortedError:
                    return
                except Exception as exc:
                    return await _internal_error(route, scope, send, exc)
        await _respond(send, 405 if scope["path"] == "/" else 404, b"", b"text/plain")

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

    async def _decode(self, decode, body: bytes):
        if len(body) <= BIG_BODY:
            return decode(body)
        async with self._big_decode:
            return await asyncio.to_thread(decode, body)

    async def xmlrpc(self, scope, receive, send):
        body = await read_body(scope, receive, self.server.settings.max_body_bytes)
        try:
            call = await self._decode(xmlrpc.decode_call, body)
        except MalformedRequest as exc:
            return await _respond(send, 500, _error_page(str(exc)), b"text/html")
        except UnsupportedEncoding as exc:
            # xmlm reads UTF-8, UTF-16, ISO-8859-1 and US-ASCII only; we say so as a fault.
            reply = xmlrpc.encode_failure(["XMLRPC_UNMARSHAL_FAILURE",
                                           "UTF-8, UTF-16, ISO-8859-1 or US-ASCII", exc.name])
            return await _respond(send, 200, reply, b"text/xml")
        if call.method == "system.listMethods":
            reply = xmlrpc.encode_bare(self.server.dispatcher.method_names)
        else:
            try:
                value = await self.server.dispatcher.call(call.method, call.params,
                                                          _peer(scope), call.invalid,
                                                          _user_agent(scope))
                reply = xmlrpc.encode_success(value)
            except ApiError as exc:
                reply = xmlrpc.encode_failure(exc.description)
        await _respond(send, 200, reply, b"text/xml")

    async def jsonrpc(self, scope, receive, send):
        body = await read_body(scope, receive, self.server.settings.max_body_bytes)
        try:
            call = await self._decode(jsonrpc.decode_call, body)
        except MalformedRequest as exc:
            return await _respond(send, 500, _error_page(str(exc)), b"text/html")
        scope[_JSON_CALL] = call
        try:
            if call.method == "system.listMethods":
                value = self.server.dispatcher.method_names
            else:
                value = await self.server.dispatcher.call(call.method, call.params,
                                                          _peer(scope), call.invalid,
                                                          _user_agent(scope))
            reply = jsonrpc.encode_success(call, value)
        except ApiError as exc:
            reply = jsonrpc.encode_failure(call, exc.description)
        await _respond(send, 200, reply, b"application/json")

    async def cli(self, scope, receive, send):
        from ..cli.handler import cli_route  # the xe command line (see xapi_server/cli)
        return await cli_route(self, scope, receive, send)

    async def options(self, scope, receive, send):
        await _respond(send, 200, b"", b"text/plain",
                       [(b"access-control-allow-methods", b"POST, OPTIONS")])

    async def audit_log(self, scope, receive, send):
        """GET /audit_log?session_id=OpaqueRef:... (pool-admin): the current audit log."""
        from urllib.parse import parse_qs
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        session = (query.get("session_id") or [""])[0]
        server = self.server
        if not server.store.exists("session", session):
            return await _respond(send, 403, b"invalid session\n", b"text/plain")
        if not server.auth.is_superuser(session) and server.auth.role_of(session) != "pool-admin":
            return await _respond(send, 403, b"pool-admin only\n", b"text/plain")
        await _respond(send, 200, server.audit.read(), b"application/x-ndjson")

    async def index(self, scope, receive, send):
        body = (b"<html><body><p>xapi-py: a XenAPI server. Speak XML-RPC (POST /) or "
                b"JSON-RPC (POST /jsonrpc) to it, or use xe.</p></body></html>")
        await _respond(send, 200, body, b"text/html")
