"""The event class: not stored; its messages deliver changes to the store's objects."""
from .._dsl import RO, cls, field, msg

_READ = dict(asynchronous=False, mutates=False)

EVENT = cls(
    "event", "A change to an object, as delivered by event.from and event.next.",
    stored=False, get_all=False, persist=False,
    fields=[
        field("id", "int", RO),
        field("timestamp", "datetime", RO),
        field("class", "string", RO),
        field("operation", "enum event_operation", RO),
        field("ref", "string", RO),
        field("obj_uuid", "string", RO),
    ],
    messages=[
        msg("from", "string set classes, string token, float timeout",
            "(string -> string) map",
            "Changes since `token` to objects of `classes` ('*', a class, or class/ref), "
            "waiting up to `timeout` s; returns {events, valid_ref_counts, token}.",
            errors=["EVENT_FROM_TOKEN_PARSE_FAILURE", "EVENT_SUBSCRIPTION_PARSE_FAILURE"],
            **_READ),
        msg("register", "string set classes", doc="Subscribe this session (legacy).",
            errors=["EVENT_SUBSCRIPTION_PARSE_FAILURE"], **_READ),
        msg("unregister", "string set classes", doc="Unsubscribe this session (legacy).",
            **_READ),
        msg("next", "", "event record set", "Wait for events for this session (legacy).",
            errors=["SESSION_NOT_REGISTERED", "EVENTS_LOST"], **_READ),
        msg("get_current_id", "", "int", "The current event generation.", **_READ),
        msg("inject", "string class, string ref", "string",
            "Mark an object changed so that watchers see a mod event; returns a token.",
            asynchronous=False),
    ],
)
