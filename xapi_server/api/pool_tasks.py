"""Cancelling a task whose work runs on a pool member, and its progress.

Two kinds of work run on a member for a task the client holds on the coordinator: a
call the coordinator forwards there (api/pool_forward.py: a VM's shutdown, a disk's
move, ...) and a data handler's request it redirects there (http/pool_redirect.py: a
disk's bytes, ...). In both the member runs the work under a task of its own, marked
with the coordinator's task (other_config), and `task.cancel` on the coordinator
reaches it (op "cancel_task"), as xapi forwards a task's cancel to the host the task
was forwarded to. The member's work stops and cleans up, and the coordinator's task
ends `cancelled` with TASK_CANCELLED. While a forwarded call runs, the member copies
its task's progress to the coordinator's (op "task_progress"), where the client reads
it, as xapi's forwarded task is one record every host updates.
"""
from __future__ import annotations

import asyncio
import logging
import time

from ..errors import ApiError
from ..wire.xmlrpc import encode_value
from . import pool_sessions
from .pool_membership import call_member

log = logging.getLogger(__name__)

# The member's task names the coordinator's task it works for under this key.
FORWARDED_FROM = "forwarded_from"
CANCEL_TIMEOUT = 10.0
START_GRACE = 10.0   # how long a member may take to start work it was sent
PROGRESS_EVERY = 1.0


def member_task(server, label: str, coordinator_task: str, session: str | None = None) -> str:
    """On a member: a task of its own for work done for the coordinator's task."""
    ref = server.tasks.create(label, session=session)
    server.store.update("task", ref, other_config={FORWARDED_FROM: coordinator_task})
    return ref


async def run_for(server, coordinator_task: str, label: str, work):
    """On a member: await `work(task)` as the job of a member task made for the
    coordinator's task, so that a cancel from the coordinator stops it; a cancelled
    job raises TASK_CANCELLED naming the coordinator's task."""
    tasks = server.tasks
    ref = member_task(server, label, coordinator_task)
    loop = asyncio.get_running_loop()
    job = loop.create_task(work(ref))
    tasks.running[ref] = job
    reporter = follow_progress(server, ref, coordinator_task)
    try:
        result = await job
    except asyncio.CancelledError:
        asked = tasks.status(ref) == "cancelling"   # else this request itself is going
        tasks.fail(ref, ["TASK_CANCELLED", ref], status="cancelled")
        if not asked:
            raise
        raise ApiError("TASK_CANCELLED", coordinator_task) from None
    except ApiError as exc:
        tasks.fail(ref, exc.description)
        raise
    except Exception as exc:
        tasks.fail(ref, ["INTERNAL_ERROR", str(exc)])
        raise
    finally:
        tasks.running.pop(ref, None)
        reporter.cancel()
    tasks.succeed(ref, "" if result is None else encode_value(result))
    return result


def follow_progress(server, ref: str, coordinator_task: str) -> asyncio.Task:
    """On a member: copy the progress of its task `ref` to the coordinator's task
    until the returned job is cancelled."""
    return asyncio.get_running_loop().create_task(
        _report_progress(server, ref, coordinator_task))


async def _report_progress(server, ref: str, coordinator_task: str):
    """The member task's progress, copied to the coordinator's task as it moves (the
    client watches that one), at most every PROGRESS_EVERY seconds."""
    told = 0.0
    while True:
        await asyncio.sleep(PROGRESS_EVERY)
        if not server.store.exists("task", ref):
            return
        progress = server.store.get("task", ref, "progress")
        if progress != told:
            await pool_sessions.report_progress(server, coordinator_task, progress)
            told = progress


def cancel_here(server, args: dict) -> bool:
    """On a member: op "cancel_task", cancel the work done here for the coordinator's
    task; False when none is running."""
    task = args.get("task")
    found = [ref for ref, rec in server.store.tables["task"].items()
             if rec["other_config"].get(FORWARDED_FROM) == task
             and rec["status"] == "pending" and ref in server.tasks.running]
    for ref in found:
        log.warning("cancelling task %s (%s), run here for the coordinator's task %s",
                    ref, server.store.get("task", ref, "name_label"), task)
        server.tasks.cancel(ref)
    return bool(found)


async def relay_cancel(server, host: str, task: str) -> bool:
    """On the coordinator: ask the member to cancel what it runs for `task`; False if
    it runs nothing for it or cannot be reached (logged)."""
    try:
        return bool(await call_member(server, host, "cancel_task", {"task": task},
                                      timeout=CANCEL_TIMEOUT))
    except ApiError as exc:
        log.warning("cannot cancel task %s on host %s: %s", task, host, exc.description)
        return False


async def cancel_on_member(server, task: str) -> bool:
    """On the coordinator, task.cancel of a task with no job here: True when the work
    runs on a member (the task's resident_on), which was told to stop."""
    store = server.store
    if server.role.is_member or not store.exists("task", task):
        return False
    rec = store.record("task", task)
    host = rec["resident_on"]
    if rec["status"] != "pending" or host == server.host_ref or not store.exists("host", host):
        return False
    store.update("task", task, status="cancelling", allowed_operations=[])
    # The member may not have started the work yet (it checks the client's session
    # with us first): asked again for a while, unless the task ends meanwhile.
    deadline = time.monotonic() + START_GRACE
    while True:
        if await relay_cancel(server, host, task):
            return True
        if server.tasks.status(task) != "cancelling":
            return True   # it ended meanwhile (the member reported it)
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    store.update("task", task, status="pending", allowed_operations=["cancel"])
    return False
