"""The data-source messages of VM, host and SR (services/metrics keeps the values):
get_data_sources, record_data_source, query_data_source, forget_data_source_archives."""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError

# class -> the kind of archive its objects own (services/metrics)
_KIND = {"VM": "vm", "host": "host", "SR": "sr"}


def _owner(ctx, cname: str, ref: str) -> tuple[str, str]:
    return _KIND[cname], ctx.store.get(cname, ref, "uuid")   # HANDLE_INVALID if missing


def _known(ctx, kind: str, uuid: str, name: str):
    if not ctx.server.metrics.known(kind, uuid, name):
        # xcp-rrdd's failure for a name the owner has no source of, as xapi reports it
        raise ApiError("INTERNAL_ERROR", f"Invalid data source: {name}")


def _register(cname: str):
    @implements(f"{cname}.get_data_sources")
    async def get_data_sources(ctx, owner):
        return await ctx.server.metrics.data_sources(*_owner(ctx, cname, owner))

    @implements(f"{cname}.record_data_source")
    async def record_data_source(ctx, owner, data_source):
        kind, uuid = _owner(ctx, cname, owner)
        _known(ctx, kind, uuid, data_source)
        await ctx.server.metrics.record(kind, uuid, data_source)

    @implements(f"{cname}.query_data_source")
    async def query_data_source(ctx, owner, data_source):
        kind, uuid = _owner(ctx, cname, owner)
        value = await ctx.server.metrics.query(kind, uuid, data_source)
        if value is None:
            raise ApiError("INTERNAL_ERROR", f"Invalid data source: {data_source}")
        return value

    @implements(f"{cname}.forget_data_source_archives")
    async def forget_data_source_archives(ctx, owner, data_source):
        kind, uuid = _owner(ctx, cname, owner)
        _known(ctx, kind, uuid, data_source)
        await ctx.server.metrics.forget(kind, uuid, data_source)


for _cname in _KIND:
    _register(_cname)


@implements("VM_metrics.get_VCPUs_utilisation")
async def get_vcpus_utilisation(ctx, self):
    """xapi's older view of the cpu<N> data sources: vCPU number -> its latest use
    (sources the archive does not have yet are left out)."""
    ctx.store.record("VM_metrics", self)
    owners = ctx.store.find("VM", metrics=self)
    if not owners:
        return {}
    vm = ctx.store.record("VM", owners[0])
    count = ctx.store.get("VM_metrics", self, "VCPUs_number") or vm["VCPUs_at_startup"]
    found = {}
    for n in range(count):
        value = await ctx.server.metrics.query("vm", vm["uuid"], f"cpu{n}")
        if value is not None:
            found[n] = value
    return found
