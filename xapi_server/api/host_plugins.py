"""host.call_plugin, call_extension, has_extension (and pool.has_extension), as xapi's
xapi_plugins.ml: a plugin is an executable of the setting plugins_dir (xapi's
/etc/xapi.d/plugins) run with one argument, the XML-RPC methodCall
`fn(session_id, {args})`; it prints an XML-RPC methodResponse holding XenAPIPlugin's
struct: {Status: Success, Value: string} or {Status: Failure, ErrorDescription: [code,
params...]} (that error is raised as is). No such plugin: XENAPI_MISSING_PLUGIN; a
non-zero exit, a signal, a timeout (plugin_timeout), output past plugin_max_output or
an unreadable answer: XENAPI_PLUGIN_FAILURE [status, stdout, stderr]. An extension is
the same kind of executable in extensions_dir, given the caller's whole methodCall; its
methodResponse is the result.
"""
from __future__ import annotations

import asyncio
import os
import xmlrpc.client
from xml.parsers.expat import ExpatError

from ..dispatch.registry import implements
from ..errors import ApiError

MAX_ARGUMENT = 128 * 1024 - 1     # Linux's limit on one argv string (MAX_ARG_STRLEN)


def _executable(folder: str, name: str) -> str | None:
    """The program called `name` in `folder`; None unless it is there and executable
    (a name with a slash, or a hidden one, never leaves the folder)."""
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        return None
    path = os.path.join(folder, name)
    return path if os.path.isfile(path) and os.access(path, os.X_OK) else None


async def _read_capped(stream, cap: int) -> bytes:
    data = await stream.read(cap + 1)
    if len(data) > cap:
        raise OverflowError
    return data


async def run(settings, path: str, argument: str) -> str:
    """The program's stdout; XENAPI_PLUGIN_FAILURE when it fails."""
    if len(argument.encode()) > MAX_ARGUMENT:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "arguments too long", "",
                       f"{len(argument.encode())} bytes, at most {MAX_ARGUMENT}")
    proc = await asyncio.create_subprocess_exec(
        path, argument, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True)
    cap = settings.plugin_max_output
    try:
        out, err = await asyncio.wait_for(asyncio.gather(
            _read_capped(proc.stdout, cap), _read_capped(proc.stderr, cap)),
            settings.plugin_timeout)
        status = await proc.wait()
    except asyncio.TimeoutError:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "timeout", "",
                       f"no answer within {settings.plugin_timeout:g} s") from None
    except OverflowError:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "output too long", "",
                       f"more than {cap} bytes") from None
    finally:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, 9)
            except ProcessLookupError:
                pass
            await proc.wait()
    stdout, stderr = (b.decode("utf-8", "replace") for b in (out, err))
    if status < 0:
        raise ApiError("XENAPI_PLUGIN_FAILURE", f"signal {-status}", stdout, stderr)
    if status > 0:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "non-zero exit", stdout, stderr)
    return stdout


def _plugin_result(stdout: str) -> str:
    try:
        (answer,), _ = xmlrpc.client.loads(stdout)
    except (ExpatError, ValueError, xmlrpc.client.Fault, TypeError) as exc:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", stdout,
                       str(exc)) from None
    if isinstance(answer, dict) and answer.get("Status") == "Success" \
            and isinstance(answer.get("Value"), str):
        return answer["Value"]
    if isinstance(answer, dict) and answer.get("Status") == "Failure" \
            and answer.get("ErrorDescription"):
        code, *params = [str(p) for p in answer["ErrorDescription"]]
        raise ApiError(code, *params)
    raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to parse plugin output", stdout,
                   "no Status struct")


@implements("host.call_plugin")
async def call_plugin(ctx, host, plugin, fn, args):
    ctx.store.record("host", host)
    path = _executable(ctx.server.settings.plugins_dir, plugin)
    if path is None:
        raise ApiError("XENAPI_MISSING_PLUGIN", plugin)
    call = xmlrpc.client.dumps((ctx.session, dict(args)), fn, allow_none=False)
    return _plugin_result(await run(ctx.server.settings, path, call))


@implements("host.call_extension")
async def call_extension(ctx, host, call):
    ctx.store.record("host", host)
    try:
        _, name = xmlrpc.client.loads(call)
    except (ExpatError, ValueError, TypeError) as exc:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to parse the call", "",
                       str(exc)) from None
    path = _executable(ctx.server.settings.extensions_dir, name or "")
    if path is None:
        raise ApiError("XENAPI_MISSING_PLUGIN", name or "")
    stdout = await run(ctx.server.settings, path, call)
    try:
        xmlrpc.client.loads(stdout)
    except xmlrpc.client.Fault:
        pass    # a fault is a well-formed answer too: the caller reads it
    except (ExpatError, ValueError, TypeError) as exc:
        raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to parse extension output",
                       stdout, str(exc)) from None
    return stdout


@implements("host.has_extension")
def host_has_extension(ctx, host, name):
    ctx.store.record("host", host)
    return _executable(ctx.server.settings.extensions_dir, name) is not None


@implements("pool.has_extension")
def pool_has_extension(ctx, self, name):
    """Every host has it: here, with one host's folder, this host's answer."""
    ctx.store.record("pool", self)
    return _executable(ctx.server.settings.extensions_dir, name) is not None
