"""task: clients' own tasks, cancel and destroy; every change checked against the owner."""
import math

from ..datamodel import METHODS
from ..dispatch.generic import GENERIC
from ..dispatch.registry import IMPLEMENTATIONS, implements
from ..errors import ApiError
from . import pool_tasks


@implements("task.create")
def create(ctx, label, description):
    return ctx.server.tasks.create(label, description, session=ctx.session)


@implements("task.destroy")
def destroy(ctx, self):
    tasks = ctx.server.tasks
    tasks.check_may_change(ctx.session, self)
    job = tasks.running.get(self)
    ctx.store.delete("task", self)
    tasks.forget(self)
    if job is not None:
        job.cancel()


@implements("task.cancel")
async def cancel(ctx, task):
    tasks = ctx.server.tasks
    tasks.check_may_change(ctx.session, task)
    # A task whose work a pool member runs (a redirected data handler's) is cancelled
    # there; a forwarded call's job here relays the cancel itself (api/pool_forward.py).
    if task not in tasks.running and await pool_tasks.cancel_on_member(ctx.server, task):
        return
    tasks.cancel(task)


@implements("task.set_progress")
def set_progress(ctx, self, value):
    ctx.server.tasks.check_may_change(ctx.session, self)
    if math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ApiError("INVALID_VALUE", "progress", repr(value))
    ctx.store.update("task", self, progress=value)


def _owner_checked(ctx, self, *args):
    """A generated task setter (set_status, add_to_other_config, ...): the owner's
    or a task.destroy/any holder's, then the generic behaviour."""
    ctx.server.tasks.check_may_change(ctx.session, self)
    return GENERIC[ctx.message.kind](ctx, ctx.message, self, *args)


# Every other generated message that changes a task gets the same check, so a setter
# the datamodel adds later is never left open to other users.
implements(*sorted(name for name, m in METHODS.items()
                   if m.cls == "task" and m.mutates and m.kind in GENERIC
                   and name not in IMPLEMENTATIONS))(_owner_checked)
