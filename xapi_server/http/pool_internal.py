"""POST /pool_internal: the calls the hosts of a pool make to each other (join,
heartbeat, eject; services/pool/peer.py is the client). The body is JSON
{"op", "args"}; the answer is {"value"} or {"error": XenAPI error description}. Who
may call is decided per operation in api/pool_calls.py: the pool secret, or for
a join the credentials of a pool administrator of the coordinator."""
from __future__ import annotations

import json

from ..api import pool_calls
from ..errors import ApiError
from ..services.pool.peer import SECRET_HEADER, SESSION_HEADER
from .responses import BodyTooLarge, header, peer, read_body, respond

MAX_BODY = 64 << 20   # a joining host's records


async def pool_internal(app, scope, receive, send):
    server = app.server
    try:
        request = json.loads(await read_body(scope, receive, MAX_BODY))
        if not isinstance(request, dict):
            raise ValueError("not an object")
        value = await pool_calls.internal_call(
            server, request.get("op"), request.get("args"),
            header(scope, SECRET_HEADER.encode()), peer(scope),
            header(scope, SESSION_HEADER.encode()))
        await server.store.flush()
        reply = {"value": value}
    except ValueError as exc:
        reply = {"error": ["INVALID_VALUE", "body", str(exc)[:200]]}
    except BodyTooLarge:
        reply = {"error": ["INVALID_VALUE", "body", "too large"]}
    except ApiError as exc:
        await server.store.flush()
        reply = {"error": exc.description}
    await respond(send, 200, json.dumps(reply).encode(), b"application/json")
