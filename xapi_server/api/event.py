"""event: from, the legacy register/next/unregister, inject, get_current_id."""
from ..dispatch.registry import implements
from ..events import event_from, make_token


@implements("event.from")
async def from_(ctx, classes, token, timeout):
    return await event_from(ctx.store, classes, token, timeout)


@implements("event.register")
def register(ctx, classes):
    ctx.server.registrations.register(ctx.session, classes)


@implements("event.unregister")
def unregister(ctx, classes):
    ctx.server.registrations.unregister(ctx.session, classes)


@implements("event.next")
async def next_(ctx):
    return await ctx.server.registrations.next(ctx.session)


@implements("event.get_current_id")
def get_current_id(ctx):
    return ctx.store.generation


@implements("event.inject")
def inject(ctx, cls, ref):
    from ..events import Subscription
    cname = next(iter(Subscription([cls]).classes))
    ctx.store.touch(cname, ref)  # HANDLE_INVALID when the object is not there
    return make_token(ctx.store.generation)
