"""host-* commands beyond the generated host-list / host-param-*."""
from __future__ import annotations

from ..table import command


@command("host-cpu-info", optional=("uuid",),
         help="Lists information about the host's physical CPUs (the host of this session "
              "when no uuid is given).")
async def host_cpu_info(ctx):
    uuid = ctx.param("uuid")
    if uuid:
        host = await ctx.by_uuid("host", uuid)
    else:
        host = (await ctx.call("session.get_record", ctx.session))["this_host"]
    info = await ctx.call("host.get_cpu_info", host)
    await ctx.table([list(info.items())])
