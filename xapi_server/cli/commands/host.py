"""host-* commands beyond the generated host-list / host-param-*."""
from __future__ import annotations

from .. import args
from ..errors import CliExit
from ..generic import VIEWS
from ..select import each, select
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


# -- the server certificate ------------------------------------------------------------

_CERT_FILES = (("certificate", "certificate"), ("private-key", "private key"),
               ("certificate-chain", "certificate chain"))


async def _client_file(ctx, param: str, what: str) -> str:
    """A file named on the xe command line, read on the client's machine (Load)."""
    data = await ctx.io.load(ctx.param(param))
    if data is None:
        await ctx.io.stderr(f"Failed to read {what}\n")
        raise CliExit(1)
    return data.decode("utf-8", "replace")


@command("host-server-certificate-install", reqd=("certificate", "private-key"),
         optional=("certificate-chain",), selectors="host",
         help="Install a TLS server certificate on the host: the certificate, its private "
              "key (PKCS#8) and optionally the chain, each a PEM file on this machine. New "
              "connections get it at once.")
async def host_server_certificate_install(ctx):
    used = [param for param, _ in _CERT_FILES]
    hosts = await select(ctx, VIEWS["host"], used=used)
    pem = {param: await _client_file(ctx, param, what) for param, what in _CERT_FILES
           if ctx.param(param) is not None}
    await each(ctx, "host", hosts, lambda host: ctx.call(
        "host.install_server_certificate", host, pem["certificate"], pem["private-key"],
        pem.get("certificate-chain", "")))


@command("host-reset-server-certificate", selectors="host",
         help="Replace the host's TLS server certificate with a new self-signed one.")
async def host_reset_server_certificate(ctx):
    hosts = await select(ctx, VIEWS["host"])
    await each(ctx, "host", hosts,
               lambda host: ctx.call("host.reset_server_certificate", host))


@command("host-emergency-reset-server-certificate",
         help="Replace this host's TLS server certificate with a new self-signed one "
              "(root only).")
async def host_emergency_reset_server_certificate(ctx):
    await ctx.call("host.emergency_reset_server_certificate")


@command("host-get-server-certificate", selectors="host",
         help="Print the TLS server certificate of the host (PEM).")
async def host_get_server_certificate(ctx):
    hosts = await select(ctx, VIEWS["host"])
    for host in hosts:
        await ctx.io.print((await ctx.call("host.get_server_certificate", host)).rstrip("\n"))


# -- maintenance mode (api/host_maintenance.py) -------------------------------------------

def _host_cmd(name: str, help: str, message: str, *extra):
    """A host-selector command that calls `host.<message>` on each selected host."""
    async def run(ctx):
        hosts = await select(ctx, VIEWS["host"])
        await each(ctx, "host", hosts, lambda host: ctx.call(message, host, *extra))
    command(name, selectors="host", help=help)(run)


@command("host-disable", optional=("auto-enable",), selectors="host",
         help="Disable the host: it takes no new VMs (maintenance mode); the VMs running "
              "there keep running. auto-enable=false keeps it disabled after a restart.")
async def host_disable(ctx):
    auto = args.boolean(ctx.param("auto-enable", "true"), "auto-enable")
    hosts = await select(ctx, VIEWS["host"], used=("auto-enable",))
    await each(ctx, "host", hosts, lambda host: ctx.call("host.disable", host, auto))


@command("host-evacuate", optional=("network-uuid", "batch-size"), selectors="host",
         help="Move every running VM off the host, to the pool's other hosts.")
async def host_evacuate(ctx):
    network = "OpaqueRef:NULL"
    if ctx.param("network-uuid"):
        network = await ctx.by_uuid("network", ctx.param("network-uuid"))
    batch = int(args.size(ctx.param("batch-size", "0"), "batch-size"))
    hosts = await select(ctx, VIEWS["host"], used=("network-uuid", "batch-size"))
    await each(ctx, "host", hosts,
               lambda host: ctx.call("host.evacuate", host, network, batch))


_host_cmd("host-enable", "Enable the host: it takes new VMs again.", "host.enable")
_host_cmd("host-reboot", "Reboot the host. It must be disabled and run no VMs.",
          "host.reboot")
_host_cmd("host-shutdown", "Shut the host down. It must be disabled and run no VMs.",
          "host.shutdown")


@command("host-dmesg", selectors="host", help="Print the host's kernel messages.")
async def host_dmesg(ctx):
    for host in await select(ctx, VIEWS["host"]):
        await ctx.message((await ctx.call("host.dmesg", host)).rstrip("\n"))
