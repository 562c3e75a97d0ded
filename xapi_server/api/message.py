"""message: alerts raised by clients or by the server itself."""
from ..dispatch.registry import implements
from ..messages import raise_message


@implements("message.create")
def create(ctx, name, priority, cls, obj_uuid, body):
    return raise_message(ctx.store, name, priority, cls, obj_uuid, body)


@implements("message.destroy")
def destroy(ctx, self):
    ctx.store.delete("message", self)


@implements("message.destroy_many")
def destroy_many(ctx, messages):
    for ref in messages:
        ctx.store.record("message", ref)  # all or nothing: check every ref first
    for ref in messages:
        ctx.store.delete("message", ref)


@implements("message.get")
def get(ctx, cls, obj_uuid, since):
    return {ref: rec for ref, rec in ctx.store.tables["message"].items()
            if rec["cls"] == cls and rec["obj_uuid"] == obj_uuid and rec["timestamp"] > since}


@implements("message.get_since")
def get_since(ctx, since):
    return {ref: rec for ref, rec in ctx.store.tables["message"].items()
            if rec["timestamp"] > since}
