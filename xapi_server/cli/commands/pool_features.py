"""xe commands for the pool/host features of issue 15, with xapi's names: plugins,
editions, HA, the display, status capabilities, trusted certificates, a test POST."""
from __future__ import annotations

from .. import args
from ..table import command
from .storage import prefixed


async def _host(ctx, param: str = "host-uuid") -> str:
    """The named host, else the session's own (as xe does on a pool master)."""
    uuid = ctx.param(param)
    if uuid:
        return await ctx.by_uuid("host", uuid)
    return (await ctx.call("session.get_record", ctx.session))["this_host"]


async def _pool(ctx) -> str:
    return (await ctx.call("pool.get_all"))[0]


@command("host-call-plugin", reqd=("host-uuid", "plugin", "fn"), optional=("args",),
         help="Call a function of a host plugin with args:<key>=<value> ...; prints what "
              "it answers.")
async def host_call_plugin(ctx):
    result = await ctx.call("host.call_plugin", await _host(ctx), ctx.reqd("plugin"),
                            ctx.reqd("fn"), prefixed(ctx, "args"))
    await ctx.message(result)


@command("host-apply-edition", reqd=("edition",), optional=("host-uuid",),
         help="Apply an edition to the host (here: free).")
async def host_apply_edition(ctx):
    await ctx.call("host.apply_edition", await _host(ctx), ctx.reqd("edition"), False)


@command("pool-apply-edition", reqd=("edition",), optional=("uuid",),
         help="Apply an edition to every host of the pool (here: free).")
async def pool_apply_edition(ctx):
    await ctx.call("pool.apply_edition", await _pool(ctx), ctx.reqd("edition"))


@command("host-license-remove", optional=("host-uuid",),
         help="Remove the host's licence (back to the free edition).")
async def host_license_remove(ctx):
    await ctx.call("host.license_remove", await _host(ctx))


@command("pool-ha-enable", optional=("heartbeat-sr-uuids", "ha-config"),
         help="Turn on high availability, with a statefile on one of the SRs "
              "(heartbeat-sr-uuids: a comma-separated list; ha-config:<k>=<v>).")
async def pool_ha_enable(ctx):
    uuids = [u for u in (ctx.param("heartbeat-sr-uuids") or "").split(",") if u]
    srs = [await ctx.by_uuid("SR", u) for u in uuids]
    await ctx.call("pool.enable_ha", srs, prefixed(ctx, "ha-config"))


@command("pool-ha-disable", help="Turn high availability off.")
async def pool_ha_disable(ctx):
    await ctx.call("pool.disable_ha")


@command("pool-ha-compute-max-host-failures-to-tolerate",
         help="How many hosts may fail while every protected VM can still restart.")
async def pool_ha_compute_max(ctx):
    await ctx.message(str(await ctx.call("pool.ha_compute_max_host_failures_to_tolerate")))


@command("host-emergency-ha-disable", optional=("force", "soft"),
         help="Turn HA off on this host alone (recovery).")
async def host_emergency_ha_disable(ctx):
    await ctx.call("host.emergency_ha_disable", args.boolean(ctx.param("soft", "false"),
                                                             "soft"))


@command("host-enable-display", reqd=("uuid",),
         help="Give the host's display back to its console at the next boot; prints the "
              "display's state.")
async def host_enable_display(ctx):
    await ctx.message(await ctx.call("host.enable_display",
                                     await ctx.by_uuid("host", ctx.reqd("uuid"))))


@command("host-disable-display", reqd=("uuid",),
         help="Take the host's display from its console at the next boot; prints the "
              "display's state.")
async def host_disable_display(ctx):
    await ctx.message(await ctx.call("host.disable_display",
                                     await ctx.by_uuid("host", ctx.reqd("uuid"))))


@command("host-get-system-status-capabilities", reqd=("uuid",),
         help="What a status report of the host can hold (XML).")
async def host_get_system_status_capabilities(ctx):
    await ctx.message(await ctx.call("host.get_system_status_capabilities",
                                     await ctx.by_uuid("host", ctx.reqd("uuid"))))


@command("pool-certificate-list", help="Names of the CA certificates the pool trusts.")
async def pool_certificate_list(ctx):
    await ctx.items(await ctx.call("pool.certificate_list"))


@command("pool-crl-list", help="Names of the pool's certificate revocation lists.")
async def pool_crl_list(ctx):
    await ctx.items(await ctx.call("pool.crl_list"))


@command("pool-send-test-post", reqd=("dest-host", "dest-port", "body"),
         help="POST a body to https://dest-host:dest-port/ and print the reply.")
async def pool_send_test_post(ctx):
    port = args.size(ctx.reqd("dest-port"), "dest-port")
    await ctx.message(await ctx.call("pool.send_test_post", ctx.reqd("dest-host"), port,
                                     ctx.reqd("body")))
