"""The dispatcher: from a decoded call to a result or an ApiError.

Order of checks, as xapi: method known → parameter count → parameter types →
session valid → role allowed → rate limiter admits → run (at once, or in a task for
`Async.`) → writes made durable → result. Running a message the datamodel forwards
(`msg(forward=)`) first asks the pool whether another host owns its object; if so,
that host runs it (the Server gives the step: api/pool_forward.forward_call).
Anything unexpected becomes INTERNAL_ERROR;
the traceback goes to the log, never to the client.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from ..bounds import bounded
from ..datamodel import METHODS, ROLES, Message, lookup_method, role_allows
from ..rbac import required
from ..errors import ApiError
from ..wire import InvalidValue
from .generic import GENERIC
from .registry import IMPLEMENTATIONS
from .unmarshal import unmarshal

if TYPE_CHECKING:   # the Server imports the dispatcher: only type checkers see this one
    from ..server import Server

log = logging.getLogger(__name__)

SESSION_TOUCH_INTERVAL = 60.0  # seconds between last_active updates of one session


@dataclass
class Context:
    """What an implementation gets besides its arguments."""
    server: Server            # the Server: store, settings, host and pool refs, services
    message: Message
    session: str | None = None
    peer: str = ""            # the client's address
    user_agent: str = ""      # its HTTP User-Agent (the rate limiter tells clients apart)
    task: str | None = None   # set when running as Async.<Class>.<message>

    @property
    def store(self):
        return self.server.store


# What a pool member still takes from outside clients (datamodel: msg(on_member=True)):
# the local login and the calls that change its coordinator (api/pool_emergency.py).
MEMBER_CALLS = frozenset(m.wire_name for m in METHODS.values() if m.on_member)


class Dispatcher:
    def __init__(self, server, forward=None):
        self.server = server
        self.method_names = sorted(METHODS)
        # async forward(ctx, args) -> (result,) if another host ran the call, else None
        self.forward = forward

    async def call(self, name: str, params: list, peer: str = "",
                   invalid: InvalidValue | None = None, user_agent: str = ""):
        if self.server.role.is_member and name not in MEMBER_CALLS:
            # A pool member serves the coordinator only (/pool_internal); outside clients
            # are sent to the coordinator, as xapi's members do (README "Pools").
            raise ApiError("HOST_IS_SLAVE", self.server.role.master_address)
        m = METHODS.get(name)     # most calls: a plain name, no "Async." nor alias
        asynchronous = m is None and name.startswith("Async.")
        base = name[len("Async."):] if asynchronous else name
        if m is None:
            m = lookup_method(base)
        if m is None or (asynchronous and not m.asynchronous):
            raise ApiError("MESSAGE_METHOD_UNKNOWN", base)
        skip = 1 if m.session else 0
        given = len(params) - skip
        if not m.required_count <= given <= len(m.params):
            raise ApiError("MESSAGE_PARAMETER_COUNT_MISMATCH", base, m.required_count,
                           max(given, 0))
        if invalid is not None:   # found by the wire decoder: nothing invalid is stored
            raise ApiError("INVALID_VALUE", invalid.reason, invalid.value)
        args = [unmarshal(p.name, p.type, v) for p, v in zip(m.params, params[skip:])]
        if given < len(m.params):
            args += [p.default for p in m.params[given:]]
        # Bounded once here: the rate limiter's Caller records, the audit log and the
        # server log keep them (bounds.py).
        ctx = Context(self.server, m, self.check_session(params[0]) if m.session else None,
                      bounded(peer), bounded(user_agent))
        try:
            if m.session:
                self._check_role(ctx.session, m, args)
            if asynchronous:
                return await self.server.tasks.run_async(ctx, args)
            result = await self.run(ctx, args)
        except ApiError as exc:
            if m.mutates:
                self.server.audit.record(self.server.store, ctx, args, exc.code)
            raise
        if m.mutates:
            self.server.audit.record(self.server.store, ctx, args, "success")
        return result

    async def run(self, ctx: Context, args: list):
        """Pay the rate limiter, run the implementation and make its writes durable
        before returning. Under Async the task pays, so the reply is never delayed."""
        m = ctx.message
        wait = self.server.limiter.admit(ctx.user_agent, ctx.peer, m.cost)
        if wait is not None:
            await wait
        impl = IMPLEMENTATIONS.get(m.wire_name)
        try:
            forwarded = None
            if m.forward is not None and self.forward is not None:
                forwarded = await self.forward(ctx, args)
            if forwarded is not None:
                result, = forwarded
            elif impl is not None:
                result = impl(ctx, *args)
                if impl.is_coroutine:
                    result = await result
            else:
                generic = GENERIC.get(m.kind)
                if generic is None:
                    raise ApiError("NOT_IMPLEMENTED", m.wire_name)
                result = generic(ctx, m, *args)
                # e.g. a filter that yields the loop; inspect's test is one isinstance,
                # asyncio's asks the Coroutine ABC of every record returned
                if inspect.iscoroutine(result):
                    result = await result
        except ApiError:
            await self.server.store.flush()
            raise
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("internal error in %s", m.wire_name)
            await self.server.store.flush()
            raise ApiError("INTERNAL_ERROR", f"{type(exc).__name__}: {exc}") from None
        store = self.server.store
        if not store.settled():   # a read has nothing to wait for: no coroutine for it
            await store.flush()
        return result

    def check_session(self, ref) -> str:
        """The session, if it is live (SESSION_INVALID if not); a session idle longer
        than `session_idle_timeout` ends here. Every call and every HTTP route that
        needs a session (http/auth.py) comes through this one check."""
        store = self.server.store
        # tables[...].get: one lookup where exists() then record() made two
        record = store.tables["session"].get(ref) if isinstance(ref, str) else None
        if record is None:
            raise ApiError("SESSION_INVALID", ref if isinstance(ref, str) else str(ref))
        now = datetime.now(timezone.utc)
        idle = (now - record["last_active"]).total_seconds()
        limit = self.server.settings.session_idle_timeout
        if idle > min(SESSION_TOUCH_INTERVAL, limit / 2):
            if idle > limit:
                store.delete("session", ref)
                raise ApiError("SESSION_INVALID", ref)
            store.update("session", ref, last_active=now)
        return ref

    def _check_role(self, session: str, m: Message, args: list):
        auth = self.server.auth
        if auth.is_superuser(session):
            return
        role = auth.role_of(session)
        for permission, needed in required(m, args, self.server.store):
            if role is not None and role_allows(role, needed):
                continue
            allowed = [r for r in ROLES if role_allows(r, needed)]
            raise ApiError("RBAC_PERMISSION_DENIED", permission,
                           "No permission in user session. (Roles with this permission: "
                           + ", ".join(allowed) + ")")
