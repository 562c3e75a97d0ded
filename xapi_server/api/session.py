"""session: login, logout, password change.

Every login takes the turn of its (client address, user name) pair and a failure waits
out the pair's delay (login_throttle.py). The user name and the originator are bounded
here, where they enter, before anything logs or stores them (bounds.py)."""
from __future__ import annotations

import logging
import os
from datetime import datetime, timezone

from ..auth import SUPERUSER
from ..bounds import USER_NAME_MAX, bounded, readable
from ..dispatch.registry import implements
from ..errors import ApiError
from ..messages import PRIORITY_WARNING, raise_message
from .. import system_accounts

log = logging.getLogger(__name__)


async def _reject(ctx, attempt, uname, error="SESSION_AUTHENTICATION_FAILED",
                  message="Authentication failure"):
    """Count the failure against the attempt's pair, alert every `login_failures_alert`
    in a row, and answer once the pair's delay (counted from the start of the attempt)
    is out, so every way to fail takes the same time."""
    settings, peer = ctx.server.settings, ctx.peer or "?"
    count = attempt.failed()
    name = readable(uname, USER_NAME_MAX)
    log.warning("failed login for %s from %s (%d in a row)", name, peer, count)
    if count % settings.login_failures_alert == 0:
        raise_message(ctx.server, "LOGIN_FAILURES", PRIORITY_WARNING, "Pool",
                      ctx.store.get("pool", ctx.server.pool_ref, "uuid"),
                      f"{count} failed logins in a row from {peer} as {name}")
        await ctx.store.flush()
    await attempt.wait_out()
    first = ("session.login_with_password" if error == "RBAC_PERMISSION_DENIED"
             else bounded(uname, USER_NAME_MAX))
    raise ApiError(error, first, message)


def _enforce_caps(ctx, uname, originator):
    """Drop this user's oldest sessions over the caps: first among its sessions with this
    originator, then among all of its sessions. As xapi's session GC groups sessions by
    user, one user's logins never end another user's sessions."""
    settings, store = ctx.server.settings, ctx.store

    def oldest_first(refs):
        return sorted(refs, key=lambda ref: store.get("session", ref, "validation_time"))

    def drop_over(refs, cap):
        for ref in refs[:max(0, len(refs) - cap + 1)]:
            store.delete("session", ref)

    if originator:
        drop_over(oldest_first(ref for ref in store.find("session", auth_user_name=uname)
                               if store.get("session", ref, "originator") == originator),
                  settings.max_sessions_per_originator)
    drop_over(oldest_first(store.find("session", auth_user_name=uname)),
              settings.max_sessions_per_user)


async def _login(ctx, uname, pwd, originator="", allow_system=True):
    server = ctx.server
    async with server.auth.logins.turn(ctx.peer or "?", bounded(uname, USER_NAME_MAX)) \
            as attempt:
        who = await _authenticate(ctx, attempt, uname, pwd, allow_system)
        attempt.succeeded()
    originator = bounded(originator)
    _enforce_caps(ctx, uname, originator)
    now = datetime.now(timezone.utc)
    return ctx.store.create("session", {
        "this_host": server.host_ref, "last_active": now, "validation_time": now,
        "is_local_superuser": uname == SUPERUSER, "auth_user_name": uname,
        "originator": originator, **who})


async def _authenticate(ctx, attempt, uname, pwd, allow_system) -> dict:
    """The subject and its identifier the session gets (none for root)."""
    auth, settings = ctx.server.auth, ctx.server.settings
    if len(uname) > USER_NAME_MAX:  # no account has such a name: nothing to check
        await _reject(ctx, attempt, uname)
    if await auth.check_password(uname, pwd):
        if uname == SUPERUSER:
            return {}
        subject = auth.local_subject(uname)
        if subject is None:  # a password without a subject grants nothing
            raise ApiError("SESSION_AUTHORIZATION_FAILED", uname,
                           "the user has no subject and so no role")
        return {"subject": subject,
                "auth_user_sid": ctx.store.get("subject", subject, "subject_identifier")}
    if allow_system and settings.pam_service and not auth.has_user(uname):
        return await _system_login(ctx, attempt, uname, pwd)
    await _reject(ctx, attempt, uname)


async def _system_login(ctx, attempt, uname, pwd) -> dict:
    """A system account through PAM, as xapi's external authentication: it may log in only
    if a subject names it or one of its groups; its role comes from that subject.
    Unlike xapi, the subject is looked for before PAM is asked: a name no subject lets in
    never reaches PAM (whose modules may count failures and lock the account), and its
    refusal cannot tell whether the password was right."""
    service = ctx.server.settings.pam_service
    identifiers = await system_accounts.identifiers(uname)
    subject, role = ctx.server.auth.strongest_subject(identifiers)
    if subject is None or not await system_accounts.check_password(service, uname, pwd):
        await _reject(ctx, attempt, uname)
    if role is None:  # xapi: authenticated, but no role in this pool
        await _reject(ctx, attempt, uname, "RBAC_PERMISSION_DENIED",
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
    async with ctx.server.auth.logins.turn(ctx.peer or "?", user) as attempt:
        if not await ctx.server.auth.check_password(user, old_pwd):
            await _reject(ctx, attempt, user)
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


@implements("session.create_from_db_file")
def create_from_db_file(ctx, filename):
    """xapi opens a database dump (its XML state file) read-only behind a new session.
    This server's database is SQLite and it has no second, read-only store to put
    behind a session: a missing file is said as such, any other is not supported."""
    if not os.path.isfile(filename):
        raise ApiError("INTERNAL_ERROR", f"{filename}: no such file")
    raise ApiError("NOT_IMPLEMENTED", "session.create_from_db_file")
