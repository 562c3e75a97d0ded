"""task: clients' own tasks, cancel and destroy."""
from ..dispatch.registry import implements


@implements("task.create")
def create(ctx, label, description):
    return ctx.server.tasks.create(label, description, session=ctx.session)


@implements("task.destroy")
def destroy(ctx, self):
    job = ctx.server.tasks.running.get(self)
    ctx.store.delete("task", self)
    if job is not None:
        job.cancel()


@implements("task.cancel")
def cancel(ctx, task):
    ctx.server.tasks.cancel(task)
