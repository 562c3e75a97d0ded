"""host administration beyond maintenance mode (xapi_host.ml): ssh, the display, the
agent itself, power-on, update guidances, and the calls xapi keeps for what this host
has not got (Xen debug keys, CPU feature masks: xapi removed those).

What changes this machine (ssh, restarting the agent) runs a command from the settings
(ssh_enable_command, ssh_disable_command, agent_restart_command), so tests run
something harmless; the agent restarts a few seconds after the call answered.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import signal

from ..dispatch.registry import implements
from ..errors import ApiError
from ..http.tls import make_self_signed
from . import certificate
from .host_maintenance import POWER_DELAY, run_command

log = logging.getLogger(__name__)


def _command(text: str, what: str) -> list[str]:
    argv = shlex.split(text)
    if not argv:
        raise ApiError("NOT_IMPLEMENTED", what)
    return argv


async def run_setting(argv: list[str]) -> str:
    """A command from the settings; a missing program is INTERNAL_ERROR too."""
    try:
        return await run_command(argv)
    except OSError as exc:
        raise ApiError("INTERNAL_ERROR", f"{argv[0]}: {exc.strerror}") from None


def later(ctx, host: str, what: str, action):
    """Run `action()` (a coroutine function) POWER_DELAY seconds after the call answers."""
    async def run():
        await asyncio.sleep(POWER_DELAY)
        try:
            await action()
        except Exception as exc:   # the call has answered: the log is all that is left
            log.error("host %s: %s failed: %s", host, what, exc)
    jobs = ctx.server.runtime(host).jobs
    job = asyncio.get_running_loop().create_task(run())
    jobs.add(job)
    job.add_done_callback(jobs.discard)


# -- ssh ------------------------------------------------------------------------------

async def set_ssh(ctx, host: str, enabled: bool):
    settings = ctx.server.settings
    text = settings.ssh_enable_command if enabled else settings.ssh_disable_command
    await run_setting(_command(text, "host.enable_ssh" if enabled else "host.disable_ssh"))
    ctx.store.update("host", host, ssh_enabled=enabled)


@implements("host.enable_ssh")
async def enable_ssh(ctx, self):
    ctx.store.record("host", self)
    await set_ssh(ctx, self, True)


@implements("host.disable_ssh")
async def disable_ssh(ctx, self):
    ctx.store.record("host", self)
    await set_ssh(ctx, self, False)


# -- the display (xapi: takes effect at the next boot) ----------------------------------

_ENABLE = {"enabled": "enabled", "disable_on_reboot": "enabled",
           "disabled": "enable_on_reboot", "enable_on_reboot": "enable_on_reboot"}
_DISABLE = {"enabled": "disable_on_reboot", "disable_on_reboot": "disable_on_reboot",
            "disabled": "disabled", "enable_on_reboot": "disabled"}


def _display(ctx, host, table) -> str:
    ctx.store.record("host", host)
    value = table[ctx.store.get("host", host, "display")]
    ctx.store.update("host", host, display=value)
    return value


@implements("host.enable_display")
def enable_display(ctx, host):
    return _display(ctx, host, _ENABLE)


@implements("host.disable_display")
def disable_display(ctx, host):
    return _display(ctx, host, _DISABLE)


# -- the agent --------------------------------------------------------------------------

@implements("host.restart_agent")
def restart_agent(ctx, host):
    ctx.store.record("host", host)
    argv = _command(ctx.server.settings.agent_restart_command, "host.restart_agent")
    log.warning("host %s: agent restart in %g s", host, POWER_DELAY)
    later(ctx, host, "restart_agent", lambda: run_setting(argv))


@implements("host.shutdown_agent")
def shutdown_agent(ctx):
    """Stops this server as SIGTERM does (a clean stop), after the answer is sent."""
    log.warning("agent shutdown requested; stopping in %g s", POWER_DELAY)

    async def stop():
        os.kill(os.getpid(), signal.SIGTERM)
    later(ctx, ctx.server.host_ref, "shutdown_agent", stop)


# -- power, keys, CPU masks ---------------------------------------------------------------

@implements("host.power_on")
def power_on(ctx, host):
    """xapi: a host that answers is live; else its power_on_mode must name a way
    (wake-on-lan, iLO, DRAC), and none is set up on a standalone host."""
    store = ctx.store
    store.record("host", host)
    metrics = store.get("host", host, "metrics")
    if store.exists("host_metrics", metrics) and store.get("host_metrics", metrics, "live"):
        raise ApiError("HOST_IS_LIVE", host)
    if not store.get("host", host, "power_on_mode"):
        raise ApiError("HOST_POWER_ON_MODE_DISABLED")
    raise ApiError("NOT_IMPLEMENTED", f"power_on_mode {store.get('host', host, 'power_on_mode')}")


@implements("host.send_debug_keys")
def send_debug_keys(ctx, host, keys):
    ctx.store.record("host", host)
    raise ApiError("NOT_IMPLEMENTED", "host.send_debug_keys: no Xen hypervisor here")


@implements("host.set_cpu_features")
def set_cpu_features(ctx, host, features):
    ctx.store.record("host", host)
    raise ApiError("MESSAGE_REMOVED")


@implements("host.reset_cpu_features")
def reset_cpu_features(ctx, host):
    ctx.store.record("host", host)
    raise ApiError("MESSAGE_REMOVED")


# -- certificates and TLS ---------------------------------------------------------------

@implements("host.refresh_server_certificate")
async def refresh_server_certificate(ctx, host):
    """A new self-signed certificate in place of a self-signed one; one an admin
    installed (signed by someone else) is theirs to replace."""
    ctx.store.record("host", host)
    leaf = ctx.server.tls.leaf()
    if leaf.issuer != leaf.subject:
        raise ApiError("OPERATION_NOT_ALLOWED",
                       "the server certificate was installed, not generated")
    await ctx.server.tls.replace(*await asyncio.to_thread(make_self_signed))
    certificate.sync_record(ctx.server)


def _tls_verification(ctx, enabled: bool):
    ctx.store.update("host", ctx.server.host_ref, tls_verification_enabled=enabled)


@implements("host.emergency_disable_tls_verification")
def emergency_disable_tls_verification(ctx):
    _tls_verification(ctx, False)


@implements("host.emergency_reenable_tls_verification")
def emergency_reenable_tls_verification(ctx):
    _tls_verification(ctx, True)


# -- updates and their guidances ----------------------------------------------------------

@implements("host.apply_recommended_guidances")
def apply_recommended_guidances(ctx, self):
    """Nothing is pending without updates (no repository can be enabled here)."""
    ctx.store.record("host", self)
    pending = ctx.store.get("host", self, "pending_guidances_recommended")
    if pending:
        raise ApiError("NOT_IMPLEMENTED", f"guidances {', '.join(pending)}")


@implements("host.emergency_clear_mandatory_guidance")
def emergency_clear_mandatory_guidance(ctx):
    ctx.store.update("host", ctx.server.host_ref, pending_guidances=[])


@implements("host.apply_updates")
def apply_updates(ctx, self, hash):
    ctx.store.record("host", self)
    if not ctx.store.get("pool", ctx.server.pool_ref, "repositories"):
        raise ApiError("NO_REPOSITORY_ENABLED")
    raise ApiError("NOT_IMPLEMENTED", "host.apply_updates")
