"""xapi's `track_http_operation` (cli_util.ml): an xe command that moves a file through
one of the HTTP handlers. The command makes a task, orders the thin client to PUT or
GET the file at the handler's URL (with the CLI session and the task), waits for the
task, and reports the task's error as its own.

The URL is a path on this server: the thin client sends it to the host and port it is
already talking to (xe_cli/transfer.py), so a non-default port needs nothing more.
"""
from __future__ import annotations

import asyncio
from urllib.parse import urlencode

from ..errors import ApiError

POLL = 0.1     # seconds between looks at the task once the client is done


async def track_http_operation(ctx, label: str, put: bool, filename: str, path: str,
                               params: dict) -> str:
    """Run the transfer; return the task's result (an XML-RPC value fragment)."""
    task = await ctx.call("task.create", label, "")
    try:
        query = urlencode({"session_id": ctx.session, "task_id": task, **params})
        ok = await ctx.io.http(put, filename, f"{path}?{query}")
        tasks = ctx.server.tasks
        while True:
            rec = await ctx.call("task.get_record", task)
            if rec["status"] not in ("pending", "cancelling"):
                break
            if not ok and task not in tasks.running:
                # The client failed before the handler took the task (no connection,
                # no such file): nothing else will ever end it (xapi does the same).
                tasks.fail(task, ["INTERNAL_ERROR", f"{label}: the xe client could not "
                                  "transfer the file"])
                continue
            await asyncio.sleep(POLL)
        if rec["status"] == "success":
            return rec["result"]
        if rec["status"] == "cancelled":
            raise ApiError("TASK_CANCELLED", task)
        raise ApiError(*(rec["error_info"] or ["INTERNAL_ERROR", f"{label} failed"]))
    finally:
        try:
            await ctx.call("task.destroy", task)
        except ApiError:
            pass
