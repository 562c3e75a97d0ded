"""The RPC routes: XML-RPC, JSON-RPC, xe's thin-CLI protocol and their CORS pre-flight.
None of them authenticates at the HTTP level (xapi's
public_http_actions_with_no_rbac_check): the session is a parameter of each call and the
dispatcher checks it.

A body that is not a request at all gets HTTP 500 with a one-line reason, as xapi;
every API-level failure is HTTP 200 with a XenAPI error. Each route's `fault` writes
INTERNAL_ERROR in its own protocol for whatever escapes it (http/app.py)."""
from __future__ import annotations

import asyncio

from xe_cli import proto

from ..cli import handler
from ..errors import ApiError
from ..wire import MalformedRequest, UnsupportedEncoding, deflate, jsonrpc, xmlrpc
from .responses import (CORS, GZIP_ENCODED, VARY_ENCODING, accepts_gzip, error_page, peer,
                        read_body, respond, user_agent)

# Bodies above this size are decoded on a worker thread, one at a time: a 16 MiB
# XML-RPC body takes seconds to parse (expat building a tree), which on the event loop
# would stall every other client; on the thread the loop keeps its turns (a
# 16 MiB body delays others by about a tenth of a second), and queueing the big ones
# keeps many of them from crowding the loop out of the interpreter lock
# (`app.big_decode`, a semaphore of one).
BIG_BODY = 256 * 1024

_JSON_CALL = "xapi_server.jsonrpc_call"   # scope key: the decoded call, for its id

# A reply is encoded in slices (the codecs' success_chunks) and the event loop is given
# back whenever one has taken longer than this: a client reading 10,000 VM records
# must not hold up the small calls of everyone else.
SLICE_SECONDS = 0.002
# A reply is written in pieces of about this size (each one a TLS encryption and a
# copy on the event loop), the loop given back whenever writing has taken longer than
# SLICE_SECONDS; the pieces sent are let go.
WRITE_CHUNK = 256 * 1024


async def _decode_big(app, decode, body: bytes):
    async with app.big_decode:
        return await asyncio.to_thread(decode, body)


async def _read_call(app, scope, receive, send, decode):
    """The body's call, or None when it was no request at all (answered with xapi's 500
    page here)."""
    body = await read_body(scope, receive, app.server.settings.max_body_bytes)
    try:
        if len(body) <= BIG_BODY:     # on the loop, no coroutine of its own
            return decode(body)
        return await _decode_big(app, decode, body)
    except MalformedRequest as exc:
        await respond(send, 500, error_page(str(exc)), b"text/html")
        return None


async def _call(app, scope, call):
    return await app.server.dispatcher.call(call.method, call.params, peer(scope),
                                            call.invalid, user_agent(scope))


async def _encode_sliced(chunks) -> list[bytes]:
    """The pieces of `chunks`: bytes, or lists of bytes (a codec's runs, taken whole)."""
    loop = asyncio.get_running_loop()
    pieces, slice_end = [], loop.time() + SLICE_SECONDS
    for piece in chunks:
        if type(piece) is list:
            pieces += piece
        else:
            pieces.append(piece)
        if loop.time() > slice_end:
            await asyncio.sleep(0)
            slice_end = loop.time() + SLICE_SECONDS
    return pieces


async def _send_success(send, chunks, content_type: bytes, caches=(), app=None, scope=None):
    """Encode (in slices) and send a reply; its length is known before the first byte
    goes, so the reply carries a Content-Length as xapi's do. A reply above the gzip
    threshold is sent as one gzip member, the pieces `caches` keep compressed once.
    `chunks` may also be a list of pieces already made (a small reply, made whole)."""
    pieces = chunks if type(chunks) is list else await _encode_sliced(chunks)
    size = sum(map(len, pieces))
    extra = []
    # gzip-compressed above the setting rpc_gzip_min_bytes (0: never), if the client
    # accepts gzip (its header read only for a reply that big)
    threshold = app.server.settings.rpc_gzip_min_bytes if app is not None else 0
    if threshold > 0:
        extra.append(VARY_ENCODING)
        if size > threshold and accepts_gzip(scope):
            pieces = await _encode_sliced(deflate.gzip_chunks(pieces, caches))
            size = sum(map(len, pieces))
            extra.append(GZIP_ENCODED)
    if size <= WRITE_CHUNK:
        return await respond(send, 200, b"".join(pieces), content_type, extra)
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", content_type), (b"content-length", str(size).encode()), *CORS,
        *extra]})
    # Writes of WRITE_CHUNK bytes on average: a count of pieces, sliced and joined in C
    # (a loop in Python over each of 20,000 pieces cost more than the join's copy).
    per_write = max(1, len(pieces) * WRITE_CHUNK // size)
    loop = asyncio.get_running_loop()
    slice_end = loop.time() + SLICE_SECONDS
    for start in range(0, len(pieces), per_write):
        end = start + per_write
        await send({"type": "http.response.body", "body": b"".join(pieces[start:end]),
                    "more_body": end < len(pieces)})
        # A send waits only once the socket is full, and over loopback it swallows
        # megabytes: without this the whole reply (30 MB, 100-300 ms of TLS and
        # copies) went out in one turn of the loop while every small call waited.
        if loop.time() > slice_end:
            await asyncio.sleep(0)
            slice_end = loop.time() + SLICE_SECONDS


async def xmlrpc_route(app, scope, receive, send):
    try:
        call = await _read_call(app, scope, receive, send, xmlrpc.decode_call)
    except UnsupportedEncoding as exc:
        # xmlm reads UTF-8, UTF-16, ISO-8859-1 and US-ASCII only; we say so as a fault.
        reply = xmlrpc.encode_failure(["XMLRPC_UNMARSHAL_FAILURE",
                                       "UTF-8, UTF-16, ISO-8859-1 or US-ASCII", exc.name])
        return await respond(send, 200, reply, b"text/xml")
    if call is None:
        return
    if call.method == "system.listMethods":
        reply = xmlrpc.encode_bare(app.server.dispatcher.method_names)
    else:
        try:
            value = await _call(app, scope, call)
        except ApiError as exc:
            reply = xmlrpc.encode_failure(exc.description)
        else:
            return await _send_success(send, xmlrpc.success_runs(value), b"text/xml",
                                       xmlrpc.CACHES, app, scope)
    await respond(send, 200, reply, b"text/xml")


async def jsonrpc_route(app, scope, receive, send):
    call = await _read_call(app, scope, receive, send, jsonrpc.decode_call)
    if call is None:
        return
    scope[_JSON_CALL] = call
    try:
        if call.method == "system.listMethods":
            value = app.server.dispatcher.method_names
        else:   # _call written out: one coroutine fewer per call
            value = await app.server.dispatcher.call(call.method, call.params, peer(scope),
                                                     call.invalid, user_agent(scope))
    except ApiError as exc:
        reply = jsonrpc.encode_failure(call, exc.description)
        return await respond(send, 200, reply, b"application/json")
    reply = jsonrpc.encode_small(call, value)
    if reply is not None and len(reply) <= WRITE_CHUNK and \
            app.server.settings.rpc_gzip_min_bytes <= 0:   # what _send_success would do
        return await respond(send, 200, reply, b"application/json")
    await _send_success(send, jsonrpc.success_chunks(call, value) if reply is None else [reply],
                        b"application/json", jsonrpc.CACHES, app, scope)


async def cli_route(app, scope, receive, send):
    # Looked up at each request: tests replace handler.cli_route to make it fail.
    return await handler.cli_route(app, scope, receive, send)


async def options_route(app, scope, receive, send):
    await respond(send, 200, b"", b"text/plain",
                  [(b"access-control-allow-methods", b"POST, OPTIONS")])


# -- INTERNAL_ERROR in each protocol: (content type, body) for an escaped exception --

def xmlrpc_fault(scope, description: list):
    return b"text/xml", xmlrpc.encode_failure(description)


def jsonrpc_fault(scope, description: list):
    call = scope.get(_JSON_CALL) or jsonrpc.JsonCall("", [], None, True)   # id unknown: null
    return b"application/json", jsonrpc.encode_failure(call, description)


def cli_fault(scope, description: list):
    """The thin-CLI protocol's error and exit, as the CLI sends them when it cannot take
    the raw connection (nothing has been sent on it yet)."""
    return b"application/octet-stream", (proto.greeting()
                                         + proto.command(proto.ERROR, description[0],
                                                         description[1:])
                                         + proto.command(proto.EXIT, 1))
