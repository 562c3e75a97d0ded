"""message: alerts raised by clients or by the server itself (kept to caps: messages.py)."""
from ..datamodel import CLASSES
from ..datamodel.types import TypeMismatch, parse_datetime
from ..dispatch.registry import implements
from ..errors import ApiError
from ..messages import raise_message

# The message's `cls` enum spells classes as xapi does ("Host", "Pool"); the store's names.
_STORED = {name.lower(): name for name, c in CLASSES.items() if c.stored}


@implements("message.create")
def create(ctx, name, priority, cls, obj_uuid, body):
    # As xapi (Xapi_message.check_uuid): only about an object that exists, so messages
    # cannot pile up about made-up objects, each under its own per-object cap.
    stored = _STORED.get(cls.lower())
    try:
        if stored is None:
            raise ApiError("UUID_INVALID")
        ctx.store.by_uuid(stored, obj_uuid)
    except ApiError:
        raise ApiError("UUID_INVALID", cls, obj_uuid) from None
    return raise_message(ctx.server, name, priority, cls, obj_uuid, body)


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


def _filter(key: str, text: str):
    try:
        return int(text) if key == "priority" else parse_datetime(text)
    except (ValueError, TypeMismatch):
        raise ApiError("INVALID_VALUE", key, text) from None


@implements("message.destroy_all")
def destroy_all(ctx, filters):
    """All conditions given must hold (before/after: timestamps, zone-less = UTC;
    priority); an unknown filter is refused rather than ignored, so that a typo does
    not dismiss every message."""
    unknown = sorted(set(filters) - {"before", "after", "priority"})
    if unknown:
        raise ApiError("INVALID_VALUE", unknown[0], filters[unknown[0]])
    wanted = {key: _filter(key, text) for key, text in filters.items()}

    def matches(rec) -> bool:
        return (("before" not in wanted or rec["timestamp"] < wanted["before"]) and
                ("after" not in wanted or rec["timestamp"] > wanted["after"]) and
                ("priority" not in wanted or rec["priority"] == wanted["priority"]))
    for ref in [r for r, rec in ctx.store.tables["message"].items() if matches(rec)]:
        ctx.store.delete("message", ref)
