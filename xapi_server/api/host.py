"""host: clocks (the records themselves are kept by server bootstrap)."""
from datetime import datetime, timezone

from ..dispatch.registry import implements


@implements("host.get_servertime")
def get_servertime(ctx, host):
    ctx.store.record("host", host)
    return datetime.now(timezone.utc)


@implements("host.get_server_localtime")
def get_server_localtime(ctx, host):
    ctx.store.record("host", host)
    return datetime.now().astimezone()
