"""Caller and Rate_limit: the records behind per-client rate limiting.

The live matching and token buckets are in xapi_server/ratelimit; these messages keep
them in step with the records. Behaviour follows xapi (xapi_caller.ml,
xapi_rate_limit.ml): Caller.create is idempotent per pattern and refuses an
all-wildcard one; a caller has at most one limiter; an explicit admin action on an
auto-registered caller makes it the admin's (no longer evicted).
"""
from __future__ import annotations

from ..datamodel import NULL_REF
from ..dispatch.generic import constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError


def _limiter(ctx):
    return ctx.server.limiter


def _check_patterns(user_agent: str, client_ip: str):
    if user_agent == "" and client_ip == "":
        raise ApiError("INVALID_VALUE", "user_agent/client_ip",
                       "at least one of user_agent or client_ip must be set")
    if user_agent in ("", "*") and client_ip in ("", "*"):
        raise ApiError("INVALID_VALUE", "user_agent/client_ip",
                       "all-wildcard pattern not allowed")


@implements("Caller.create")
def caller_create(ctx, args):
    fields = constructor_fields(ctx, "Caller", args)
    user_agent, client_ip = fields.get("user_agent", ""), fields.get("client_ip", "")
    _check_patterns(user_agent, client_ip)
    names = {k: fields.get(k, "") for k in ("name_label", "name_description")}
    for ref, record in ctx.store.tables["Caller"].items():
        if record["user_agent"] == user_agent and record["client_ip"] == client_ip:
            ctx.store.update("Caller", ref, auto_registered=False, **names)
            return ref
    ref = ctx.store.create("Caller", {**fields, "auto_registered": False})
    _limiter(ctx).callers_changed()
    return ref


@implements("Caller.destroy")
def caller_destroy(ctx, self):
    ctx.store.record("Caller", self)
    ctx.store.delete("Caller", self)
    _limiter(ctx).forget_caller(self)


@implements("Caller.add_group")
def add_group(ctx, self, group):
    groups = ctx.store.get("Caller", self, "groups")
    if group not in groups:
        ctx.store.update("Caller", self, groups=[*groups, group])


@implements("Caller.remove_group")
def remove_group(ctx, self, group):
    groups = ctx.store.get("Caller", self, "groups")
    ctx.store.update("Caller", self, groups=[g for g in groups if g != group])


@implements("Caller.query_call_count")
def query_call_count(ctx, self):
    ctx.store.record("Caller", self)
    return _limiter(ctx).usage(self).calls


@implements("Caller.query_token_usage")
def query_token_usage(ctx, self):
    ctx.store.record("Caller", self)
    return _limiter(ctx).usage(self).tokens


def _group(ctx, group):
    if group == "":
        raise ApiError("INVALID_VALUE", "group", "empty group name")
    return [ref for ref, rec in ctx.store.tables["Caller"].items() if group in rec["groups"]]


@implements("Caller.query_group_call_count")
def query_group_call_count(ctx, group):
    return sum(_limiter(ctx).usage(ref).calls for ref in _group(ctx, group))


@implements("Caller.query_group_token_usage")
def query_group_token_usage(ctx, group):
    return sum(_limiter(ctx).usage(ref).tokens for ref in _group(ctx, group))


@implements("Caller.query_all_usage")
def query_all_usage(ctx):
    rows = []
    for ref, record in ctx.store.tables["Caller"].items():
        stats = _limiter(ctx).usage(ref)
        rows.append((stats.tokens, [record["uuid"], record["name_label"],
                                    f"{stats.tokens:.3f}", f"{stats.calls}"]))
    rows.sort(key=lambda row: -row[0])
    return [row for _, row in rows]


def _check_rate(name: str, value: float):
    if not value > 0:
        raise ApiError("INVALID_VALUE", name, repr(value))


@implements("Rate_limit.create")
def rate_limit_create(ctx, args):
    fields = constructor_fields(ctx, "Rate_limit", args)
    burst, fill = fields.get("burst_size", 0.0), fields.get("fill_rate", 0.0)
    _check_rate("fill_rate", fill)
    _check_rate("burst_size", burst)
    ref = ctx.store.create("Rate_limit", fields)
    _limiter(ctx).install_bucket(ref, burst, fill)
    return ref


@implements("Rate_limit.destroy")
def rate_limit_destroy(ctx, self):
    record = ctx.store.record("Rate_limit", self)
    for caller in record["callers"]:
        ctx.store.update("Caller", caller, rate_limit=NULL_REF)
    ctx.store.delete("Rate_limit", self)
    _limiter(ctx).remove_bucket(self)
    _limiter(ctx).callers_changed()


def _retune(ctx, self, field, value):
    ctx.store.record("Rate_limit", self)
    _check_rate(field, value)
    ctx.store.update("Rate_limit", self, **{field: value})
    record = ctx.store.record("Rate_limit", self)
    _limiter(ctx).install_bucket(self, record["burst_size"], record["fill_rate"])


@implements("Rate_limit.set_burst_size")
def set_burst_size(ctx, self, value):
    _retune(ctx, self, "burst_size", value)


@implements("Rate_limit.set_fill_rate")
def set_fill_rate(ctx, self, value):
    _retune(ctx, self, "fill_rate", value)


@implements("Rate_limit.add_caller")
def add_caller(ctx, self, caller):
    ctx.store.record("Rate_limit", self)
    ctx.store.record("Caller", caller)
    # Attaching a limiter is an admin's decision about this caller: it is no longer
    # an auto-registered one that may be evicted.
    ctx.store.update("Caller", caller, rate_limit=self, auto_registered=False)
    _limiter(ctx).callers_changed()


@implements("Rate_limit.remove_caller")
def remove_caller(ctx, self, caller):
    ctx.store.record("Rate_limit", self)
    if ctx.store.get("Caller", caller, "rate_limit") == self:
        ctx.store.update("Caller", caller, rate_limit=NULL_REF)
        _limiter(ctx).callers_changed()
