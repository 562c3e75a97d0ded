"""Classes: Caller, Rate_limit (xapi's per-client rate limiting, design rate_limit.md).

A Caller is a pattern over (user_agent, client_ip): "" matches anything, a trailing "*"
makes a prefix, anything else must be equal. Every call is counted against every
matching Caller; the most specific match with a Rate_limit attached pays for it from
that limiter's token bucket, and waits when the bucket is empty.

Field facts (names, types, qualifiers, defaults) follow xapi's datamodel."""
from .._dsl import RC, RO, cls, field, identity, msg, names

_ADMIN = dict(role="pool-admin", asynchronous=False)
_QUERY = dict(role="pool-admin", asynchronous=False, mutates=False)

CALLER = cls(
    'Caller', 'A client of the API, identified by user agent and address patterns.',
    ctor=True, write_role='pool-admin',
    fields=[
        identity(),
        *names(),
        field('user_agent', 'string', RC, default=""),
        field('client_ip', 'string', RC, default=""),
        field('last_access', 'datetime', RO, default='19700101T00:00:00Z'),
        field('groups', 'string set', RO, default=[]),
        field('rate_limit', 'Rate_limit ref', RO, default='OpaqueRef:NULL'),
        field('auto_registered', 'bool', RO, default=False),
    ],
    messages=[
        msg("add_group", "Caller ref self, string group", doc="Put the caller in a group.",
            **_ADMIN),
        msg("remove_group", "Caller ref self, string group",
            doc="Take the caller out of a group.", **_ADMIN),
        msg("query_call_count", "Caller ref self", "int",
            "Calls made by the caller since the server started.", **_QUERY),
        msg("query_token_usage", "Caller ref self", "float",
            "Tokens used by the caller since the server started.", **_QUERY),
        msg("query_group_call_count", "string group", "int",
            "Calls made by the callers in the group since the server started.", **_QUERY),
        msg("query_group_token_usage", "string group", "float",
            "Tokens used by the callers in the group since the server started.", **_QUERY),
        msg("query_all_usage", "", "string set set",
            "Rows of [uuid; name_label; tokens; calls], highest tokens first.", **_QUERY),
    ],
)

RATE_LIMIT = cls(
    'Rate_limit', 'A token bucket shared by the callers attached to it.',
    ctor=True, write_role='pool-admin',
    fields=[
        identity(),
        *names(),
        field('callers', 'Caller ref set', RO),
        field('burst_size', 'float', RC, default=0.0),
        field('fill_rate', 'float', RC, default=0.0),
    ],
    messages=[
        msg("set_fill_rate", "Rate_limit ref self, float value",
            doc="Tokens added to the bucket per second (> 0).", **_ADMIN),
        msg("set_burst_size", "Rate_limit ref self, float value",
            doc="Tokens the bucket holds when full (> 0).", **_ADMIN),
        msg("add_caller", "Rate_limit ref self, Caller ref caller",
            doc="Attach the caller (replacing its previous limiter).", **_ADMIN),
        msg("remove_caller", "Rate_limit ref self, Caller ref caller",
            doc="Detach the caller from this limiter.", **_ADMIN),
    ],
)
