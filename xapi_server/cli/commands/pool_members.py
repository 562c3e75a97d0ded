"""xe pool-join, pool-eject, host-forget (api/pool_membership.py), the changes of
coordinator (api/pool_coordinator.py, api/pool_emergency.py), host-declare-dead,
pool-secret-rotate and pool-sync-database."""
from __future__ import annotations

from .. import args
from ..table import command


@command("pool-join", reqd=("master-address", "master-username", "master-password"),
         optional=("force",),
         help="Make this host a member of the pool coordinated at master-address; it "
              "restarts as a member. force=true skips the check that the software is the "
              "same.")
async def pool_join(ctx):
    force = args.boolean(ctx.param("force", "false"), "force")
    await ctx.call("pool.join_force" if force else "pool.join", ctx.reqd("master-address"),
                   ctx.reqd("master-username"), ctx.reqd("master-password"))


async def _confirmed_call(ctx, param: str, warning: str, method: str):
    """Ask first (unless --force), as xapi's xe does before losing a host's records."""
    host = await ctx.by_uuid("host", ctx.reqd(param))
    if not ctx.flag("force"):
        await ctx.message(warning)
        await ctx.message("Type 'yes' to continue")
        answer = (await ctx.io.prompt()).strip()
        if answer.lower() != "yes":
            return await ctx.message(f"Aborted (you typed: '{answer}')")
    await ctx.call(method, host)


def _asking(param: str, warning: str, method: str):
    async def run(ctx):
        await _confirmed_call(ctx, param, warning, method)
    return run


for _name, _param, _method, _warning, _help in (
        ("pool-eject", "host-uuid", "pool.eject",
         "WARNING: Ejecting a host from the pool will reinitialise that host's local SRs.",
         "Remove the host from the pool: it forgets the pool and its own records and comes "
         "back as a standalone host (asks first, unless --force)."),
        ("host-forget", "uuid", "host.destroy",
         "WARNING: A host should only be forgotten if it is physically unrecoverable.",
         "Forget a pool member that is gone for good (not live; asks first, unless "
         "--force).")):
    command(_name, reqd=(_param,), help=_help)(_asking(_param, _warning, _method))


@command("pool-designate-new-master", reqd=("host-uuid",),
         help="Make the host the pool's coordinator (a planned change): every other host "
              "becomes its member.")
async def pool_designate_new_master(ctx):
    await ctx.call("pool.designate_new_master", await ctx.by_uuid("host",
                                                                   ctx.reqd("host-uuid")))


@command("host-declare-dead", reqd=("uuid",),
         help="A member that is gone for good: the VMs it ran are reset to Halted and it "
              "is disabled.")
async def host_declare_dead(ctx):
    await ctx.call("host.declare_dead", await ctx.by_uuid("host", ctx.reqd("uuid")))


def _calling(method: str):
    async def run(ctx):
        await ctx.call(method)
    return run


for _name, _method, _help in (
        ("pool-recover-slaves", "pool.recover_slaves",
         "Have every other host follow this coordinator (after "
         "pool-emergency-transition-to-master)."),
        ("pool-secret-rotate", "pool.rotate_secret",
         "A new pool secret on every host; the old one stops working."),
        ("pool-sync-database", "pool.sync_database",
         "Commit every write and give every member a fresh copy of the records.")):
    command(_name, help=_help)(_calling(_method))


@command("pool-emergency-transition-to-master", optional=("force",), local=True,
         help="On a member whose coordinator is gone: become the pool's coordinator.")
async def pool_emergency_transition_to_master(ctx):
    await ctx.call("pool.emergency_transition_to_master")


@command("pool-emergency-reset-master", reqd=("master-address",), local=True,
         help="On a member: follow the coordinator at master-address from now on.")
async def pool_emergency_reset_master(ctx):
    await ctx.call("pool.emergency_reset_master", ctx.reqd("master-address"))
