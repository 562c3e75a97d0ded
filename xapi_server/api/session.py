"""session: login, logout, password change."""
from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from .._logging import log
from ..dispatch.registry import implements
from ..errors import ApiError
from ..messages import PRIORITY_WARNING, raise_message
from .. import system_accounts


# Failed logins per client address: (count, time of the last one). A success clears it.
_failures: dict[str, tuple[int, float]] = {}
FAILURE_MEMORY = 900.0  # seconds after which an address's failures are forgotten


async def _reject(ctx, uname, started=None, error="SESSION_AUTHENTICATION_FAILED",
                  message="Authentication failure"):
    """Wait before answering a failed login: longer for an address that keeps failing.
    The wait is counted from `started` (the start of the attempt) so that every way to
    fail (unknown name, wrong local or PAM password, no subject) answers after the same
    time, however long the checks behind it took."""
    settings, peer = ctx.server.settings, ctx.peer or "?"
    started = time.monotonic() if started is None else started
    count, last = _failures.get(peer, (0, 0.0))
    if time.monotonic() - last > FAILURE_MEMORY:
        count = 0
    count += 1
    _failures[peer] = (count, time.monotonic())
    log.warning("failed login for %r from %s (%d in a row)", uname, peer, count)
    if count % settings.login_failures_alert == 0:
        raise_message(ctx.store, "LOGIN_FAILURES", PRIORITY_WARNING, "Pool",
                      ctx.store.get("pool", ctx.server.pool_ref, "uuid"),
                      f"{count} failed logins from {peer}; the last one as {uname!r}")
        await ctx.store.flush()
    delay = settings.auth_failure_delay * min(2 ** (count - 1), 8)
    await asyncio.sleep(max(0.0, started + delay - time.monotonic()))
    first = "session.login_with_password" if error == "RBAC_PERMISSION_DENIED" else uname
    raise ApiError(error, first, message)


def _enforce_caps(ctx, uname, originator):
    """Drop the oldest sessions of this user (and of this originator) over the caps."""
    settings, store = ctx.server.settings, ctx.store
    for key, value, cap in (("auth_user_name", uname, settings.max_sessions_per_user),
                            ("originator", originator, settings.max_sessions_per_originator)):
        if key == "originator" and not value:
            continue
        mine = sorted(store.find("session", **{key: value}),
                      key=lambda ref: store.get("session", ref, "validation_time"))
        for ref in mine[:max(0, len(mine) - cap + 1)]:
            store.delete("session", ref)


async def _login(ctx, uname, pwd, originator="", allow_system=True):
    server, started = ctx.server, time.monotonic()
    who = {}  # the subject and its identifier; none for root
    if await server.auth.check_password(uname, pwd):
        if uname != "root":
            subject = server.auth.local_subject(uname)
            if subject is None:  # a password without a subject grants nothing
                raise ApiError("SESSION_AUTHORIZATION_FAILED", uname,
                               "the user has no subject and so no role")
            who = {"subject": subject, "auth_user_sid": ctx.store.get(
                "subject", subject, "subject_identifier")}
    elif (allow_system and server.settings.pam_service
          and not server.auth.has_user(uname)):
        who = await _system_login(ctx, uname, pwd, started)
    else:
        await _reject(ctx, uname, started)
    _failures.pop(ctx.peer or "?", None)
    _enforce_caps(ctx, uname, originator)
    now = datetime.now(timezone.utc)
    return ctx.store.create("session", {
        "this_host": server.host_ref, "last_active": now, "validation_time": now,
        "is_local_superuser": uname == "root", "auth_user_name": uname,
        "originator": originator, **who})


async def _system_login(ctx, uname, pwd, started) -> dict:
    """A system account through PAM, as xapi's external authentication: it may log in only
    if a subject names it or one of its groups; its role comes from that subject.
    Unlike xapi, the subject is looked for before PAM is asked: a name no subject lets in
    never reaches PAM (whose modules may count failures and lock the account), and its
    refusal cannot tell whether the password was right."""
    service = ctx.server.settings.pam_service
    identifiers = await system_accounts.identifiers(uname)
    subject, role = ctx.server.auth.strongest_subject(identifiers)
    if subject is None or not await system_accounts.check_password(service, uname, pwd):
        await _reject(ctx, uname, started)
    if role is None:  # xapi: authenticated, but no role in this pool
        await _reject(ctx, uname, started, "RBAC_PERMISSION_DENIED",
                      f"Subject {uname} (identifier {identifiers[0]}) has no roles in this pool")
    return {"subject": subject, "auth_user_sid": identifiers[0]}


@implements("session.login_with_password")
async def login_with_password(ctx, uname, pwd, version, originator):
    # xapi ignores `version`: there is no negotiation.
    return await _login(ctx, uname, pwd, originator)


@implements("session.slave_local_login_with_password")
async def slave_local_login_with_password(ctx, uname, pwd):
    # Emergency mode: local accounts only, as xapi never asks external auth here.
    return await _login(ctx, uname, pwd, allow_system=False)


@implements("session.logout", "session.local_logout")
def logout(ctx):
    ctx.server.registrations.forget(ctx.session)
    ctx.store.delete("session", ctx.session)


@implements("session.change_password")
async def change_password(ctx, old_pwd, new_pwd):
    user, sid = (ctx.store.get("session", ctx.session, f)
                 for f in ("auth_user_name", "auth_user_sid"))
    if system_accounts.is_system_identifier(sid):
        raise ApiError("USER_IS_NOT_LOCAL_SUPERUSER",
                       f"{user} is a system account: its password is changed on the host")
    if not await ctx.server.auth.check_password(user, old_pwd):
        await _reject(ctx, user)
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
