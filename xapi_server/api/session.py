"""session: login, logout, password change."""
from __future__ import annotations

import asyncio
from datetime import datetime, timezone

from .._logging import log
from ..dispatch.registry import implements
from ..errors import ApiError


async def _login(ctx, uname, pwd, originator=""):
    server = ctx.server
    if not await server.auth.check_password(uname, pwd):
        log.warning("failed login for %r from %s", uname, ctx.peer or "?")
        await asyncio.sleep(server.settings.auth_failure_delay)
        raise ApiError("SESSION_AUTHENTICATION_FAILED", uname, "Authentication failure")
    now = datetime.now(timezone.utc)
    return ctx.store.create("session", {
        "this_host": server.host_ref, "last_active": now, "validation_time": now,
        "is_local_superuser": uname == "root", "auth_user_name": uname,
        "originator": originator,
    })


@implements("session.login_with_password")
async def login_with_password(ctx, uname, pwd, version, originator):
    # xapi ignores `version`: there is no negotiation.
    return await _login(ctx, uname, pwd, originator)


@implements("session.slave_local_login_with_password")
async def slave_local_login_with_password(ctx, uname, pwd):
    return await _login(ctx, uname, pwd)


@implements("session.logout", "session.local_logout")
def logout(ctx):
    ctx.server.registrations.forget(ctx.session)
    ctx.store.delete("session", ctx.session)


@implements("session.change_password")
async def change_password(ctx, old_pwd, new_pwd):
    user = ctx.store.get("session", ctx.session, "auth_user_name")
    if not await ctx.server.auth.check_password(user, old_pwd):
        await asyncio.sleep(ctx.server.settings.auth_failure_delay)
        raise ApiError("SESSION_AUTHENTICATION_FAILED", user, "Authentication failure")
    if not new_pwd:
        raise ApiError("INVALID_VALUE", "new_pwd", "the password must not be empty")
    ctx.server.auth.set_password(user, new_pwd)


@implements("session.get_all_subject_identifiers")
def get_all_subject_identifiers(ctx):
    sids = {rec["auth_user_sid"] for rec in ctx.store.tables["session"].values()}
    return sorted(s for s in sids if s)


@implements("session.logout_subject_identifier")
def logout_subject_identifier(ctx, subject_identifier):
    for ref in ctx.store.find("session", auth_user_sid=subject_identifier):
        if ref != ctx.session:
            ctx.store.delete("session", ref)
