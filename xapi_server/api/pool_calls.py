"""The calls hosts make to each other on `/pool_internal` (http/pool_internal.py), by
who may make them: a joining host (with a pool administrator's credentials), the
members (heartbeats, a session checked, with the pool secret) and the coordinator (with the pool
secret: eject, the calls it forwards, a ping)."""
from __future__ import annotations

import asyncio
import hmac

from ..errors import ApiError
from ..services.pool import role as pool_role
from .pool_coordinator import follow_coordinator, propose_coordinator, take_over
from .pool_emergency import keep_database_copy, new_pool_secret
from .pool_forward import run_for_coordinator
from .pool_membership import accept_joiner, heartbeat, leave_pool
from .pool_sessions import check_for_member, task_ended, task_progress
from .pool_tasks import cancel_here
from .sr_shared import SHARED_SR_OPS
from .vm_migrate_host import MIGRATION_OPS
from .vm_migrate_remote import CROSS_POOL_OPS, MEMBER_OPS as CROSS_POOL_MEMBER_OPS, \
    cross_pool_call

COORDINATOR_OPS = {"heartbeat": heartbeat, "session": check_for_member,
                   "task": task_ended, "task_progress": task_progress}
MEMBER_OPS = {"eject": leave_pool, "call": run_for_coordinator, "cancel_task": cancel_here,
              "ping": lambda server, args: server.store.get("host", server.host_ref, "uuid"),
              # a change of coordinator (api/pool_coordinator.py, api/pool_emergency.py)
              "propose_coordinator": propose_coordinator, "take_over": take_over,
              "follow_coordinator": follow_coordinator, "pool_secret": new_pool_secret,
              "database_copy": keep_database_copy,
              # either end of a live migration, a shared SR's PBD plugged here
              **MIGRATION_OPS, **SHARED_SR_OPS, **CROSS_POOL_MEMBER_OPS}


async def internal_call(server, op, args, secret: str | None, peer_address: str,
                        session: str | None = None):
    """Run one `/pool_internal` call; ApiError for any refusal."""
    if not isinstance(op, str) or not isinstance(args, dict):
        raise ApiError("INVALID_VALUE", "op", repr(op)[:80])
    if op in CROSS_POOL_OPS:   # another pool's coordinator, with a session of ours
        return await cross_pool_call(server, op, args, session)
    member = server.role.is_member
    if op == "join":   # as a login on a member: the joiner is sent to the coordinator
        if member:
            raise ApiError("HOST_IS_SLAVE", server.role.master_address)
        return await accept_joiner(server, args, peer_address)
    ops = MEMBER_OPS if member else COORDINATOR_OPS
    if op not in ops:
        raise ApiError("MESSAGE_METHOD_UNKNOWN", f"pool_internal.{op}")
    expected = server.role.secret if member else \
        pool_role.coordinator_secret(server.settings.data_dir)
    if not secret or not hmac.compare_digest(secret.encode(), expected.encode()):
        raise ApiError("SESSION_AUTHENTICATION_FAILED", "pool secret",
                       "the pool secret does not match")
    result = ops[op](server, args)
    return await result if asyncio.iscoroutine(result) else result
