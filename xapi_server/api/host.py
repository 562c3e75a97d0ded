"""host: clocks and memory figures (the records are kept by server bootstrap and
refreshed by the VM runtime poller)."""
from datetime import datetime, timezone

from ..dispatch.registry import implements
from ..hostinfo import meminfo


@implements("host.get_servertime")
def get_servertime(ctx, host):
    ctx.store.record("host", host)
    return datetime.now(timezone.utc)


@implements("host.get_server_localtime")
def get_server_localtime(ctx, host):
    ctx.store.record("host", host)
    return datetime.now().astimezone()


@implements("host.compute_free_memory")
def compute_free_memory(ctx, host):
    """What the kernel could give a new guest now (MemAvailable), in bytes."""
    ctx.store.record("host", host)
    mem = meminfo()
    return mem.get("MemAvailable", mem.get("MemFree", 0))


@implements("host.compute_memory_overhead")
def compute_memory_overhead(ctx, host):
    return ctx.store.record("host", host)["memory_overhead"]
