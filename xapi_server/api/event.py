"""event: from, the legacy register/next/unregister, inject, get_current_id."""
from ..dispatch.registry import implements
from ..errors import ApiError
from ..events import event_class, event_from, make_token


@implements("event.from")
async def from_(ctx, classes, token, timeout):
    return await event_from(ctx.store, classes, token, timeout, ctx.server.registrations.memo)


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
    # One class name, not a subscription ("*", "vm/ref"): an object that is in no
    # class we know is, as any missing object, HANDLE_INVALID [class, ref].
    cname = event_class(cls)
    if cname is None:
        raise ApiError("HANDLE_INVALID", cls, ref)
    ctx.store.touch(cname, ref)  # HANDLE_INVALID when the object is not there
    return make_token(ctx.store.generation)
