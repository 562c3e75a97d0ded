"""Update repositories (xapi's repository.ml): the pool syncs updates from enabled
Repository records. There are no Repository records here (xapi's yum/RPM updates do
not apply to this server), so a repository ref is HANDLE_INVALID and syncing or
applying finds NO_REPOSITORY_ENABLED, as xapi before any repository is enabled. The
settings around them are kept as xapi keeps them: the proxy (its password apart from
the record, as xapi's secret), the sync schedule, the telemetry identifier.
"""
from __future__ import annotations

import urllib.parse
import uuid as uuidlib

from ..dispatch.registry import implements
from ..errors import ApiError

PROXY_PASSWORD = "pool.repository_proxy_password"   # store meta, never in a record
TELEMETRY_UUID = "pool.telemetry_uuid"


def _no_repository(value: str):
    raise ApiError("HANDLE_INVALID", "Repository", value)


@implements("pool.add_repository")
def add_repository(ctx, self, value):
    ctx.store.record("pool", self)
    _no_repository(value)


@implements("pool.remove_repository")
def remove_repository(ctx, self, value):
    ctx.store.record("pool", self)
    if value not in ctx.store.get("pool", self, "repositories"):
        _no_repository(value)


def _assert_repository_enabled(ctx, pool):
    ctx.store.record("pool", pool)
    if not ctx.store.get("pool", pool, "repositories"):
        raise ApiError("NO_REPOSITORY_ENABLED")


@implements("pool.sync_updates")
def sync_updates(ctx, self, force, token, token_id, username, password):
    _assert_repository_enabled(ctx, self)
    raise ApiError("NOT_IMPLEMENTED", "pool.sync_updates")


@implements("pool.check_update_readiness")
def check_update_readiness(ctx, self, requires_reboot):
    _assert_repository_enabled(ctx, self)
    raise ApiError("NOT_IMPLEMENTED", "pool.check_update_readiness")


@implements("pool.configure_repository_proxy")
def configure_repository_proxy(ctx, self, url, username, password):
    ctx.store.record("pool", self)
    split = urllib.parse.urlsplit(url)
    if split.scheme not in ("http", "https") or not split.hostname:
        raise ApiError("INVALID_REPOSITORY_PROXY_URL", url)
    if bool(username) != bool(password):
        raise ApiError("INVALID_REPOSITORY_PROXY_CREDENTIAL")
    ctx.store.set_meta(PROXY_PASSWORD, password or None)
    ctx.store.update("pool", self, repository_proxy_url=url,
                     repository_proxy_username=username)


@implements("pool.disable_repository_proxy")
def disable_repository_proxy(ctx, self):
    ctx.store.record("pool", self)
    ctx.store.set_meta(PROXY_PASSWORD, None)
    ctx.store.update("pool", self, repository_proxy_url="", repository_proxy_username="")


@implements("pool.configure_update_sync")
def configure_update_sync(ctx, self, update_sync_frequency, update_sync_day):
    """xapi: a weekly sync needs a day 0-6 (Sunday first); a daily one ignores it."""
    ctx.store.record("pool", self)
    if update_sync_frequency == "weekly" and not 0 <= update_sync_day <= 6:
        raise ApiError("INVALID_UPDATE_SYNC_DAY", update_sync_day)
    ctx.store.update("pool", self, update_sync_frequency=update_sync_frequency,
                     update_sync_day=update_sync_day if update_sync_frequency == "weekly"
                     else 0)


@implements("pool.reset_telemetry_uuid")
def reset_telemetry_uuid(ctx, self):
    ctx.store.record("pool", self)
    ctx.store.set_meta(TELEMETRY_UUID, str(uuidlib.uuid4()))
