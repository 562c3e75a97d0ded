"""Running one CLI request: parse, find the command, log in, run, report.

As xapi: `help` needs no login; unknown commands and missing required parameters are
reported before logging in; the session comes from session.login_with_password
(originator "cli"), so every API call the command makes is checked by the dispatcher
like any other client's.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os

from ..errors import ApiError
from . import args as argparse_
from .commands.help import help_cmd
from .context import CLI_USER_AGENT, CliContext, Output
from .errors import (USAGE_HINT, AuthFailure, CliExit, CliFailure, MissingParam,
                     SyntaxFailure, UnknownCommand, UsageFailure, describe,
                     referenced_classes)
from .table import COMMANDS

log = logging.getLogger(__name__)


class Logins:
    """Reuse of CLI sessions (one per Server: `server.cli_logins`). A login costs an
    scrypt hash (tens of ms) and xe runs one command per process, so a session opened
    for a user is kept and handed out again when the same password comes back (checked
    with a keyed hash, in constant time), as long as the stored password and the
    session itself are unchanged."""

    def __init__(self):
        self._key = os.urandom(32)
        self._cache: dict[str, tuple[bytes, str, str]] = {}

    async def session(self, server, user: str, password: str, peer: str) -> str:
        stored = server.store.meta.get(f"user:{user}")
        digest = hmac.new(self._key, f"{user}\0{password}".encode(), hashlib.sha256).digest()
        hit = self._cache.get(user)
        if (hit and stored is not None and hit[1] == stored and hmac.compare_digest(hit[0], digest)
                and server.store.exists("session", hit[2])):
            return hit[2]
        ref = await server.dispatcher.call("session.login_with_password",
                                           [user, password, "1.0", "cli"], peer,
                                           user_agent=CLI_USER_AGENT)
        if stored is not None:
            self._cache[user] = (digest, stored, ref)
        return ref


def split_body(body: bytes) -> list[str]:
    text = body.decode("utf-8", "replace")
    return [line[:-1] if line.endswith("\r") else line for line in text.split("\n")] if text else []


async def execute(server, tokens: list[str], io: Output, peer: str = "") -> int:
    """Run the command in `tokens` (the request body's lines); return the exit status."""
    session = None
    if tokens and tokens[0].startswith("session_id="):
        session = tokens.pop(0).partition("=")[2]
    ctx = None
    try:
        cmd_name, params = argparse_.parse(tokens)
        user, password = params.pop("username", ""), params.pop("password", "")
        if cmd_name == "help":
            ctx = CliContext(server, params, io, None, peer)
            await help_cmd(ctx)
            await ctx.finish()
            return 0
        cmd = COMMANDS.get(cmd_name)
        if cmd is None:
            raise UnknownCommand(cmd_name)
        for name in cmd.reqd:
            if name not in params:
                raise MissingParam(name)
        if session is None:
            if not user:
                raise AuthFailure("Username/password must be specified")
            session = await (server.dispatcher.call(
                "session.slave_local_login_with_password", [user, password], peer,
                user_agent=CLI_USER_AGENT) if cmd.local
                else server.cli_logins.session(server, user, password, peer))
        ctx = CliContext(server, params, io, session, peer)
        await cmd.run(ctx)
        await ctx.finish()
        return 0
    except CliExit as exc:
        return exc.code
    except SyntaxFailure:
        return await _usage(io, "Syntax error: ")
    except UsageFailure as exc:
        return await _usage(io, str(exc))
    except CliFailure as exc:
        await io.stderr(f"Error: {exc}\n")
        return 1
    except ApiError as exc:
        if exc.code == "SESSION_AUTHENTICATION_FAILED":
            return await _usage(io, "Authentication failed")
        return await report_api_error(ctx, io, exc)
    except Exception as exc:  # a bug: say so as xapi does, details to the log
        log.exception("CLI command failed: %s", tokens[:1])
        return await report_api_error(ctx, io, ApiError("INTERNAL_ERROR", f"{exc}"))


async def _usage(io: Output, text: str) -> int:
    await io.stderr(f"{text}\n{USAGE_HINT}\n")
    return 1


async def report_api_error(ctx, io: Output, exc: ApiError) -> int:
    def name_of(cls, ref):
        rec = ctx.record(cls, ref) if ctx is not None else None
        if rec is None:
            return None
        label = rec.get("name_label")
        return f"{rec['uuid']} ({label})" if label is not None else rec["uuid"]

    classes = referenced_classes(exc.code, exc.params)
    if ctx is not None and classes:
        try:
            await ctx.prefetch(classes)
        except ApiError:
            pass
    lines = describe(exc.code, exc.params, name_of)
    if lines is None:
        await io.error(exc.code, exc.params)
    else:
        await io.stderr("\n".join(lines) + "\n")
    return 1
