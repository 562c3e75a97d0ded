"""Local users and their passwords; who a session is and what it may do.

Passwords are kept only as scrypt hashes in the store's meta table
(`user:<name>` -> `scrypt$n$r$p$salt$hash`), compared in constant time.
`root` is the local superuser, as in xapi: never a subject, and its password changes
only through its own session (session.change_password).
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os

from .datamodel import ROLES
from .errors import ApiError
from .login_throttle import LoginThrottle
from .rbac import strongest

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            dklen=32)
    b64 = base64.b64encode
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


# A fixed hash to check against when the user does not exist, so that a login for
# an unknown name takes as long as one with a wrong password: hash_password("not a
# password") made once and written here, as computing it cost every start an scrypt.
_DUMMY_HASH = (f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}$Pd4l87EAikWcd4CRBqCOeA==$"
               "AUivn4OFxUrERB0hwtDPEH8NJhj3JxYykK2fNVSK6bs=")


LOCAL_PREFIX = "local:"  # subject_identifier of a local account: "local:<user name>"
SUPERUSER = "root"


def local_account(identifier: str) -> str | None:
    """The account a local subject identifier names ("local:<name>"), None if it names
    none. The superuser is refused as xapi refuses what only the superuser may do: a
    subject for it would let a pool-admin set root's password and log in as root."""
    if not identifier.startswith(LOCAL_PREFIX) or len(identifier) == len(LOCAL_PREFIX):
        return None
    name = identifier[len(LOCAL_PREFIX):]
    if name == SUPERUSER:
        raise ApiError("USER_IS_NOT_LOCAL_SUPERUSER",
                       f"{SUPERUSER} is the local superuser, not a subject; its password "
                       "is changed by root itself with session.change_password")
    return name


class Auth:
    def __init__(self, store, settings):
        self.store = store
        self.logins = LoginThrottle(settings.auth_failure_delay, settings.auth_cheap_failures,
                                    settings.auth_failure_max_delay)
        # As xapi's throttle_auth_internal: a bounded number of password checks at once
        # (each scrypt check takes 16 MiB and tens of ms of a core).
        self._checks = asyncio.Semaphore(max(1, settings.local_auth_max_threads))

    def has_user(self, name: str) -> bool:
        return f"user:{name}" in self.store.meta

    def set_password(self, name: str, password: str):
        self.store.set_meta(f"user:{name}", hash_password(password))

    async def check_password(self, name: str, password: str) -> bool:
        stored = self.store.meta.get(f"user:{name}")
        async with self._checks:
            ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY_HASH)
        return ok and stored is not None

    def forget_local_account(self, identifier: str):
        """Drop the password of the local account a destroyed subject named; root's is
        never dropped (a subject naming it may survive from an older version)."""
        try:
            name = local_account(identifier)
        except ApiError:
            return
        if name is not None:
            self.store.set_meta(f"user:{name}", None)

    def local_subject(self, name: str) -> str | None:
        found = self.store.find("subject", subject_identifier=LOCAL_PREFIX + name)
        return found[0] if found else None

    def strongest_subject(self, identifiers: list[str]) -> tuple[str | None, str | None]:
        """Of the subjects named by these identifiers (a system account's own first, then
        its groups'), the one holding the strongest role, and that role. xapi grants the
        union of their roles; roles nest, so the union is the strongest one."""
        found = [ref for ident in identifiers
                 for ref in self.store.find("subject", subject_identifier=ident)]
        if not found:
            return None, None
        ranked = [(ROLES.index(role) if role else len(ROLES), i, ref, role)
                  for i, ref in enumerate(found) for role in [self.subject_role(ref)]]
        _, _, ref, role = min(ranked)
        return ref, role

    def subject_role(self, subject: str) -> str | None:
        record = self.store.tables["subject"].get(subject)
        if record is None:
            return None
        roles = self.store.tables["role"]
        return strongest(roles[r]["name_label"] for r in record["roles"] if r in roles)

    def is_superuser(self, session: str) -> bool:
        return self.store.record("session", session)["is_local_superuser"]

    def role_of(self, session: str) -> str | None:
        """The strongest role the session's subject holds now (roles may change)."""
        return self.subject_role(self.store.record("session", session)["subject"])
