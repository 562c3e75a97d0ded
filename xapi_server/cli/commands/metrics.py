"""<vm|host|sr>-data-source-list|record|query|forget: the data sources of a VM, a host or
an SR (VM.get_data_sources and friends), as xe prints them."""
from __future__ import annotations

import sys

from ..generic import VIEWS
from ..select import each, select
from ..table import command

# (xe family, class, what xe's help calls it)
_FAMILIES = (("vm", "VM", "a VM"), ("host", "host", "a host"), ("sr", "SR", "a SR"))
_USED = ("data-source",)


def _fmt(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        # xapi says infinity for "no bound"; the wire carries the largest double instead
        return "inf" if value >= sys.float_info.max else "%.3f" % value
    return str(value)


def _pairs(ds: dict) -> list[tuple[str, str]]:
    return [(key, _fmt(ds[key])) for key in
            ("name_label", "name_description", "enabled", "standard", "min", "max", "units")]


def _register(family: str, cname: str, what: str):
    view = VIEWS[family]

    @command(f"{family}-data-source-list", selectors=family,
             help=f"List the data sources that can be recorded for {what}.")
    async def data_source_list(ctx):
        refs = await select(ctx, view)

        async def one(ref):
            sources = await ctx.call(f"{cname}.get_data_sources", ref)
            await ctx.table([_pairs(ds) for ds in sources])
        await each(ctx, cname, refs, one)

    @command(f"{family}-data-source-record", reqd=_USED, selectors=family,
             help=f"Record the specified data source for {what}.")
    async def data_source_record(ctx):
        refs = await select(ctx, view, used=_USED)
        await each(ctx, cname, refs, lambda ref: ctx.call(
            f"{cname}.record_data_source", ref, ctx.param("data-source")))

    @command(f"{family}-data-source-query", reqd=_USED, selectors=family,
             help=f"Query the last value read from {what} data source.")
    async def data_source_query(ctx):
        refs = await select(ctx, view, used=_USED)

        async def one(ref):
            value = await ctx.call(f"{cname}.query_data_source", ref, ctx.param("data-source"))
            await ctx.items(["%f" % value])
        await each(ctx, cname, refs, one)

    @command(f"{family}-data-source-forget", reqd=_USED, selectors=family,
             help=f"Stop recording the specified data source for {what}, and forget all "
                  "of the recorded data.")
    async def data_source_forget(ctx):
        refs = await select(ctx, view, used=_USED)
        await each(ctx, cname, refs, lambda ref: ctx.call(
            f"{cname}.forget_data_source_archives", ref, ctx.param("data-source")))


for _family in _FAMILIES:
    _register(*_family)
