"""GET /metrics: the last sample of every data source in the Prometheus text format
(OpenMetrics when the scraper asks for it), beyond xapi. Each value is a gauge
`xapi_<host|vm|sr>_<data source>` labelled with the owner's uuid and name_label.

Allowed to a session holding http/get_metrics (read-only and up: cookie, query or HTTP
Basic, as xapi's handlers) or to `Authorization: Bearer <metrics_bearer_token>` when
that setting is not empty, compared in constant time.
"""
from __future__ import annotations

import hmac

from ..errors import ApiError
from ..services.metrics import formats
from . import auth
from .responses import header, respond

PERMISSION = "http/get_metrics"
_CLASS = {"host": "host", "vm": "VM", "sr": "SR"}


def _bearer_ok(scope, token: str) -> bool | None:
    """True/False for a Bearer header (right or wrong token), None without one."""
    value = header(scope, b"authorization")
    if value is None or not value.lower().startswith("bearer "):
        return None
    given = value[7:].strip().encode("utf-8", "replace")
    return bool(token) and hmac.compare_digest(given, token.encode())


async def get_metrics(app, scope, receive, send):
    server = app.server
    bearer = _bearer_ok(scope, server.settings.metrics_bearer_token)
    if bearer is False:
        return await respond(send, 401, b"invalid bearer token\n", b"text/plain",
                             [(b"www-authenticate", b'Bearer realm="xapi"')])
    if bearer is None:
        try:
            async with auth.session_for(server, scope, PERMISSION):
                return await _answer(server, scope, send)
        except auth.Refused as refusal:
            return await respond(send, refusal.status, refusal.reason.encode() + b"\n",
                                 b"text/plain", refusal.headers)
    await _answer(server, scope, send)


async def _answer(server, scope, send):
    store = server.store
    samples = dict(server.metrics.latest) if server.metrics is not None else {}
    names = {}
    for kind, uuid in samples:
        try:
            names[(kind, uuid)] = store.get(_CLASS[kind], store.by_uuid(_CLASS[kind], uuid),
                                            "name_label")
        except ApiError:   # gone since the sample: no name
            names[(kind, uuid)] = ""
    openmetrics = "application/openmetrics-text" in (header(scope, b"accept") or "")
    body = formats.prometheus(samples, names, openmetrics)
    await respond(send, 200, body, (formats.OPENMETRICS_TYPE if openmetrics
                                    else formats.PROMETHEUS_TYPE).encode(),
                  [(b"cache-control", b"no-cache, no-store")])
