"""System accounts: passwords checked through PAM, names and groups looked up through NSS.

Subjects name them as xapi's PAM/NSS external-auth plugin did: `pam:<user>` for an
account and `pam-group:<group>` for a Unix group, whose members may then all log in.
Everything here blocks (PAM modules, NSS lookups that may go to a directory), so it runs
on one thread of its own, never on the event loop.
"""
from __future__ import annotations

import asyncio
import grp
import os
import pwd
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pam

USER_PREFIX = "pam:"
GROUP_PREFIX = "pam-group:"

# One PAM conversation at a time, as xapi does (its serialize_auth mutex): PAM modules are
# not all reentrant. A pool of its own also keeps a slow PAM stack from taking the default
# pool's threads, which the rest of the server needs (scrypt, libvirt).
_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pam")


def _run(fn, *args):
    return asyncio.get_running_loop().run_in_executor(_THREAD, fn, *args)


def _account(name: str):
    try:
        return pwd.getpwnam(name)
    except (KeyError, ValueError):  # unknown, or a name no account can have ("a\0b")
        return None


def _group(name: str):
    try:
        return grp.getgrnam(name)
    except (KeyError, ValueError):
        return None


def _groups_of(name: str) -> list[str] | None:
    """The names of every group the account is in (its primary group too); None if
    there is no such account."""
    account = _account(name)
    if account is None:
        return None
    names = []
    for gid in sorted(set(_gids(name, account.pw_gid))):
        try:
            names.append(grp.getgrgid(gid).gr_name)
        except KeyError:  # a gid without a group entry names no subject
            pass
    return names


def _gids(name: str, primary: int) -> list[int]:
    try:
        return os.getgrouplist(name, primary)
    except OSError:
        return [primary]


def _check_password(service: str, name: str, password: str) -> bool:
    try:
        # No credentials are established (resetcreds=False): the server only needs to know
        # who this is, and pam_setcred of modules such as pam_group would change the
        # server process's own groups.
        return pam.PamAuthenticator().authenticate(name, password, service=service,
                                                   resetcreds=False)
    except Exception:  # NUL bytes, text that is not UTF-8, no libpam: not a valid login.
        return False   # The exception is not logged: its text could quote the password.


def _shadow_flags(name: str) -> dict[str, str]:
    """xapi's suspension flags, from the shadow entry (readable by root only)."""
    try:
        out = subprocess.run(["getent", "--", "shadow", name], capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    fields = out.strip().split(":")
    if len(fields) < 9:
        return {}
    password, last_change, max_age, expires = fields[1], fields[2], fields[4], fields[7]
    today = int(time.time() // 86400)
    password_expired = last_change == "0" or (
        last_change.isdigit() and max_age.isdigit()
        and int(last_change) + int(max_age) < today)
    flags = {
        "subject-account-disabled": password[:1] in ("", "*"),
        "subject-account-locked": password.startswith("!"),
        "subject-account-expired": expires.isdigit() and int(expires) <= today,
        "subject-password-expired": password_expired,
    }
    return {key: "true" if value else "false" for key, value in flags.items()}


def _describe(identifier: str) -> dict[str, str] | None:
    """The other_config of a subject, as xapi's external-auth plugins fill it; None if
    the identifier names no account or group."""
    if identifier.startswith(USER_PREFIX):
        account = _account(identifier[len(USER_PREFIX):])
        if account is None:
            return None
        gecos = account.pw_gecos.split(",")[0]
        return {"subject-name": account.pw_name, "subject-uid": f"u{account.pw_uid}",
                "subject-gid": f"g{account.pw_gid}", "subject-gecos": account.pw_gecos,
                "subject-displayname": gecos or account.pw_name, "subject-is-group": "false",
                **_shadow_flags(account.pw_name)}
    if identifier.startswith(GROUP_PREFIX):
        group = _group(identifier[len(GROUP_PREFIX):])
        if group is None:
            return None
        return {"subject-name": group.gr_name, "subject-uid": f"g{group.gr_gid}",
                "subject-gid": f"g{group.gr_gid}", "subject-is-group": "true"}
    return None


def is_system_identifier(identifier: str) -> bool:
    return identifier.startswith((USER_PREFIX, GROUP_PREFIX))


async def identifiers(name: str) -> list[str]:
    """The subject identifiers that could let this account in: its own, then one per
    group it belongs to. Empty if there is no such account."""
    groups = await _run(_groups_of, name)
    if groups is None:
        return []
    return [USER_PREFIX + name] + [GROUP_PREFIX + g for g in groups]


async def check_password(service: str, name: str, password: str) -> bool:
    """Whether PAM service `service` accepts this password for the account."""
    return bool(service) and await _run(_check_password, service, name, password)


async def describe(identifier: str) -> dict[str, str] | None:
    return await _run(_describe, identifier)
