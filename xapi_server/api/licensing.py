"""Licensing, as xapi with the open-source licensing daemon: the one edition is "free"
(xapi's v6d stub: Edition.of_string knows "free" and the old "XE Express"), which never
expires and restricts nothing. Another edition is INVALID_EDITION; a licence file
cannot be read by that daemon (LICENSE_PROCESSING_ERROR, also for contents that are
no base64, as xapi's host.license_add checks first); license_remove goes back to free.
Editions cannot change while HA is on (HA_IS_ENABLED), as xapi's host.apply_edition.
"""
from __future__ import annotations

import base64
import binascii

from ..dispatch.registry import implements
from ..errors import ApiError

FREE = "free"
_FREE_NAMES = (FREE, "XE Express")
# What host.license_params carries for free: the daemon's parameters (no expiry).
_FREE_PARAMS = {"expiry": "never", "sku_type": FREE, "sku_marketing_name": "xapi-py"}


def _apply(ctx, host: str, edition: str):
    if ctx.store.get("pool", ctx.server.pool_ref, "ha_enabled"):
        raise ApiError("HA_IS_ENABLED")
    if edition not in _FREE_NAMES:
        raise ApiError("INVALID_EDITION", edition)
    ctx.store.update("host", host, edition=FREE, editions=[FREE],
                     license_params={**ctx.store.get("host", host, "license_params"),
                                     **_FREE_PARAMS})


@implements("host.apply_edition")
def host_apply_edition(ctx, host, edition, force):
    ctx.store.record("host", host)
    _apply(ctx, host, edition)


@implements("pool.apply_edition")
def pool_apply_edition(ctx, self, edition):
    ctx.store.record("pool", self)
    for host in ctx.store.refs("host"):
        _apply(ctx, host, edition)


def _license_file(ctx, host, contents):
    ctx.store.record("host", host)
    try:
        base64.b64decode(contents, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("LICENSE_PROCESSING_ERROR") from None
    # The free daemon reads no licence file: whatever it holds cannot be applied.
    raise ApiError("LICENSE_PROCESSING_ERROR")


@implements("host.license_add")
def license_add(ctx, host, contents):
    _license_file(ctx, host, contents)


@implements("host.license_apply")
def license_apply(ctx, host, contents):
    _license_file(ctx, host, contents)


@implements("host.license_remove")
def license_remove(ctx, host):
    ctx.store.record("host", host)
    _apply(ctx, host, FREE)


@implements("pool.get_license_state")
def get_license_state(ctx, self):
    """xapi: the lowest edition of the hosts and the earliest expiry ("never" here)."""
    ctx.store.record("pool", self)
    editions = {ctx.store.get("host", h, "edition") or FREE for h in ctx.store.refs("host")}
    expiries = sorted(ctx.store.get("host", h, "license_params").get("expiry", "never")
                      for h in ctx.store.refs("host"))
    expiry = next((e for e in expiries if e != "never"), "never")
    return {"edition": min(editions), "expiry": expiry}
