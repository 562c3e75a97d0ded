"""A coordinator's session used on a member's data handlers.

The coordinator sends a request about a member's object (a console, a disk's bytes,
an archive) to that member with an HTTP redirect (http/pool_redirect.py); the client
comes back to the member with the session it has, which only the coordinator knows.
The member asks the coordinator (`/pool_internal` op "session", with the pool
secret) whether the session is valid and may use the route; if so it serves the one
request under a session of its own made for it, removed when the request ends.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

from ..datamodel import role_allows
from ..errors import ApiError
from ..rbac import HTTP_PERMISSIONS
from ..services.pool import peer

log = logging.getLogger(__name__)


def check_for_member(server, args: dict):
    """On the coordinator: {"user", "superuser"} of a live session allowed the
    route's permission; SESSION_INVALID or RBAC_PERMISSION_DENIED otherwise."""
    ref, permission = args.get("session"), args.get("permission")
    session = server.dispatcher.check_session(ref)
    superuser = server.auth.is_superuser(session)
    if permission is not None and not superuser:
        needed = HTTP_PERMISSIONS.get(permission) if isinstance(permission, str) else None
        role = server.auth.role_of(session)
        if needed is None or role is None or not role_allows(role, needed):
            raise ApiError("RBAC_PERMISSION_DENIED", str(permission),
                           "No permission in user session.")
    return {"user": server.store.get("session", session, "auth_user_name"),
            "superuser": superuser}


async def vouched_session(server, ref: str, permission: str | None) -> str:
    """On a member: a session of its own for one request made with the coordinator's
    session `ref` (the coordinator has checked the route's permission); ApiError if
    the coordinator refuses it or does not answer."""
    role = server.role
    host, port = peer.split_address(role.master_address, server.settings.port)
    try:
        answer = await asyncio.to_thread(
            peer.call, host, port, "session", {"session": ref, "permission": permission},
            pinned=role.master_fingerprint, secret=role.secret, timeout=10)
    except peer.Refused as exc:
        raise ApiError(*exc.description) from None
    except peer.Unreachable as exc:
        log.warning("cannot check a session with the coordinator: %s", exc)
        raise ApiError("SESSION_INVALID", ref) from None
    now = datetime.now(timezone.utc)
    return server.store.create("session", {
        "this_host": server.host_ref, "last_active": now, "validation_time": now,
        "is_local_superuser": bool(answer.get("superuser")),
        "auth_user_name": str(answer.get("user", "")), "originator": "pool coordinator"})
