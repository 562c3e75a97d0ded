"""Tasks: `Async.<Class>.<message>` runs the same implementation in the background
and records its progress and outcome in a task object, as xapi does.

A task's `result` is the XML-RPC `<value>` fragment of the result (xapi's encoding);
`error_info` is the error list. Cancelling interrupts the implementation at its next
await; implementations clean up what they made (try/finally) before re-raising.

Each task belongs to the user whose session made it (xapi compares the sessions'
auth_user_sid, TaskHelper.assert_op_valid): only that user, or a role holding xapi's
"task.destroy/any" permission (pool-operator and above), may cancel, destroy or change
it. The owner is kept here, not in the record: xapi's `session` field is internal, and
a session ref handed to every reader would let them act as its user. A user may have
at most `max_pending_tasks_per_user` tasks pending at once.
"""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from .datamodel import role_allows
from .errors import ApiError
from .rbac import TASK_ANY_PERMISSION, TASK_ANY_ROLE, permission_denied
from .wire.xmlrpc import encode_value


def now():
    return datetime.now(timezone.utc)


# As xapi: finished tasks are forgotten an hour after they finish; a client's own
# task that nobody finished is forgotten after a day.
FINISHED_TASK_LIFETIME = 3600.0
PENDING_TASK_LIFETIME = 86400.0
GC_INTERVAL = 60.0


class Tasks:
    def __init__(self, server):
        self.server = server
        self.running: dict[str, asyncio.Task] = {}
        self.owners: dict[str, str] = {}   # task ref -> user key (see _user)
        self._gc: asyncio.Task | None = None

    def start_gc(self):
        self._gc = asyncio.get_running_loop().create_task(self._gc_loop())

    def stop_gc(self):
        if self._gc:
            self._gc.cancel()

    async def _gc_loop(self):
        while True:
            await asyncio.sleep(GC_INTERVAL)
            self.collect_garbage()
            await self.store.flush()

    def collect_garbage(self, at: datetime | None = None):
        at = at or now()
        for ref, rec in list(self.store.tables["task"].items()):
            if rec["status"] in ("pending", "cancelling"):   # not finished yet
                age, limit = (at - rec["created"]).total_seconds(), PENDING_TASK_LIFETIME
                if ref in self.running:
                    continue
            else:
                age, limit = (at - rec["finished"]).total_seconds(), FINISHED_TASK_LIFETIME
            if age > limit:
                self.store.delete("task", ref)
        self.owners = {ref: who for ref, who in self.owners.items()
                       if self.store.exists("task", ref)}

    @property
    def store(self):
        return self.server.store

    def create(self, label: str, description: str = "", session: str | None = None) -> str:
        """A pending task; owned by the session's user, who must be under the cap."""
        owner = self._user(session) if session else None
        if owner is not None and self._pending_of(owner) >= self._cap():
            raise ApiError("TOO_MANY_PENDING_TASKS")
        ref = self.store.create("task", {
            "name_label": label, "name_description": description, "status": "pending",
            "created": now(), "resident_on": self.server.host_ref, "progress": 0.0,
            "allowed_operations": ["cancel"],
        })
        if owner is not None:
            self.owners[ref] = owner
        return ref

    def check_may_change(self, session: str, ref: str):
        """xapi's rule: a user may change their own tasks; anyone else's needs
        "task.destroy/any". HANDLE_INVALID first, as for any missing object."""
        self.store.record("task", ref)
        auth = self.server.auth
        if auth.is_superuser(session) or self.owners.get(ref) == self._user(session):
            return
        role = auth.role_of(session)
        if role is None or not role_allows(role, TASK_ANY_ROLE):
            raise permission_denied(TASK_ANY_PERMISSION, TASK_ANY_ROLE)

    def forget(self, ref: str):
        self.owners.pop(ref, None)

    def _user(self, session: str) -> str:
        # Root has no subject identifier; every other user has one.
        record = self.store.record("session", session)
        return record["auth_user_sid"] or f"user:{record['auth_user_name']}"

    def _pending_of(self, owner: str) -> int:
        tasks = self.store.tables["task"]
        return sum(1 for ref, who in self.owners.items() if who == owner
                   and ref in tasks and tasks[ref]["status"] in ("pending", "cancelling"))

    def _cap(self) -> int:
        return self.server.settings.max_pending_tasks_per_user

    async def run_async(self, ctx, args) -> str:
        ref = self.create(f"Async.{ctx.message.wire_name}", session=ctx.session)
        ctx.task = ref
        job = asyncio.get_running_loop().create_task(self._run(ctx, args, ref))
        self.running[ref] = job
        await self.store.flush()
        return ref

    async def _run(self, ctx, args, ref):
        try:
            result = await self.server.dispatcher.run(ctx, args)
        except asyncio.CancelledError:
            self._finish(ref, "cancelled", error=["TASK_CANCELLED", ref])
        except ApiError as exc:
            status = "cancelled" if exc.code == "TASK_CANCELLED" else "failure"
            self._finish(ref, status, error=exc.description)
        else:
            self._finish(ref, "success", result=encode_value(result))
        finally:
            self.running.pop(ref, None)
        await self.store.flush()

    def _finish(self, ref, status, result="", error=()):
        if not self.store.exists("task", ref):
            return  # destroyed while running
        self.store.update("task", ref, status=status, result=result, error_info=list(error),
                          progress=1.0, finished=now(), allowed_operations=[])

    def status(self, ref: str) -> str | None:
        return self.store.record("task", ref)["status"] if self.store.exists("task", ref) \
            else None

    def succeed(self, ref: str, result: str = ""):
        """Completes a task driven outside run_async (an HTTP handler's); `result` is the
        XML-RPC <value> fragment."""
        self._finish(ref, "success", result=result)

    def fail(self, ref: str, error: list, status: str = "failure"):
        if self.status(ref) in ("pending", "cancelling"):
            self._finish(ref, status, error=error)

    def set_progress(self, ref: str | None, fraction: float):
        """Long operations report how far they are (0..1)."""
        if ref and self.store.exists("task", ref):
            self.store.update("task", ref, progress=max(0.0, min(1.0, fraction)))

    def cancel(self, ref: str):
        record = self.store.record("task", ref)
        job = self.running.get(ref)
        if record["status"] != "pending" or job is None:
            raise ApiError("OPERATION_NOT_ALLOWED", "task is not cancellable")
        self.store.update("task", ref, status="cancelling", allowed_operations=[])
        job.cancel()
