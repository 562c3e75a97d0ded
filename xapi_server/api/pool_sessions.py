"""A coordinator's session used on a member's data handlers.

The coordinator sends a request about a member's object (a console, a disk's bytes,
an archive) to that member with an HTTP redirect (http/pool_redirect.py); the client
comes back to the member with the session it has, which only the coordinator knows.
The member asks the coordinator (`/pool_internal` op "session", with the pool
secret) whether the session is valid and may use the route; if so it serves the one
request under a session of its own made for it, removed when the request ends. A
`task_id` the client names is the coordinator's task: the member runs the request
under a task of its own and reports how it ended (op "task"), so the client's task
ends as it would have on the coordinator.
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
    task = args.get("task")
    if task is not None:   # the client's task: theirs to change, and still running
        server.tasks.check_may_change(session, task)
        if server.tasks.status(task) != "pending":
            raise ApiError("OPERATION_NOT_ALLOWED", "the task has already ended")
        # the member runs it now: a task.cancel here goes there (api/pool_tasks.py)
        member = server.store.find("host", uuid=args.get("host"))
        if member:
            server.store.update("task", task, resident_on=member[0])
    superuser = server.auth.is_superuser(session)
    if permission is not None and not superuser:
        needed = HTTP_PERMISSIONS.get(permission) if isinstance(permission, str) else None
        role = server.auth.role_of(session)
        if needed is None or role is None or not role_allows(role, needed):
            raise ApiError("RBAC_PERMISSION_DENIED", str(permission),
                           "No permission in user session.")
    return {"user": server.store.get("session", session, "auth_user_name"),
            "superuser": superuser}


def task_ended(server, args: dict):
    """On the coordinator: a redirected request's task ended on the member."""
    task, status = args.get("task"), args.get("status")
    if not isinstance(task, str) or server.tasks.status(task) not in ("pending", "cancelling"):
        return False
    if status == "success":
        server.tasks.succeed(task, str(args.get("result", "")))
    elif status == "cancelled":   # the error names the client's task, not the member's
        server.tasks.fail(task, ["TASK_CANCELLED", task], status="cancelled")
    else:
        error = args.get("error")
        server.tasks.fail(task, [str(e) for e in error] if isinstance(error, list) and error
                          else ["INTERNAL_ERROR", "the member's task ended without an error"],
                          status="cancelled" if status == "cancelled" else "failure")
    return True


def task_progress(server, args: dict):
    """On the coordinator: how far a member's work for a task of ours has come."""
    task, progress = args.get("task"), args.get("progress")
    if not isinstance(task, str) or not isinstance(progress, (int, float)) \
            or server.tasks.status(task) != "pending":
        return False
    server.tasks.set_progress(task, float(progress))
    return True


async def _to_coordinator(server, op: str, args: dict):
    role = server.role
    host, port = peer.split_address(role.master_address, server.settings.port)
    return await asyncio.to_thread(peer.call, host, port, op, args,
                                   pinned=role.master_fingerprint, secret=role.secret,
                                   timeout=10)


async def vouched_session(server, ref: str, permission: str | None,
                          task: str | None = None) -> str:
    """On a member: a session of its own for one request made with the coordinator's
    session `ref` (the coordinator has checked the route's permission, and that the
    session may change `task`); ApiError if the coordinator refuses it or does not
    answer."""
    try:
        answer = await _to_coordinator(server, "session", {
            "session": ref, "permission": permission, "task": task,
            "host": server.role.host_uuid})
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


async def report_progress(server, task: str, progress: float):
    """On a member: tell the coordinator how far the work for its task has come."""
    try:
        await _to_coordinator(server, "task_progress", {"task": task, "progress": progress})
    except (peer.Refused, peer.Unreachable) as exc:
        log.warning("cannot report the progress of task %s to the coordinator: %s",
                    task, exc)


async def report_task(server, task: str, record: dict):
    """On a member: tell the coordinator how a redirected request's task ended."""
    try:
        await _to_coordinator(server, "task", {
            "task": task, "status": record["status"], "result": record["result"],
            "error": list(record["error_info"])})
    except (peer.Refused, peer.Unreachable) as exc:
        log.warning("cannot report task %s to the coordinator: %s", task, exc)
