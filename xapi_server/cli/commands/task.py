"""task-cancel (task-list and task-param-* are generated)."""
from __future__ import annotations

from ..table import command


@command("task-cancel", reqd=("uuid",), help="Set a task to cancel and return.")
async def task_cancel(ctx):
    await ctx.call("task.cancel", await ctx.by_uuid("task", ctx.reqd("uuid")))
