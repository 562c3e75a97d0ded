"""How an HTTP route that needs a session gets one, and whether it may act, as xapi's
handlers (xapi_http.ml `assert_credentials_ok`):

1. `session_id` from the Cookie, else from the query: it must be a live session, checked
   as every RPC's session (`Dispatcher.check_session`: idle sessions expire);
2. else `Authorization: Basic`: a session logged in for this one request, through
   `session.login_with_password` (throttling, audit, caps as any login), and logged out
   after it, whatever happens;
3. else, or when any of these fails: 401 with `WWW-Authenticate: Basic`.

Then RBAC: unless the session is root's, its role must hold the route's `http/<action>`
permission, whose weakest role is in the RBAC table (rbac.HTTP_PERMISSIONS); else 403.
(xapi's local Unix socket, `pool_secret` and TLS client certificates have no equivalent
here: there is one host and no socket.)
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, unquote

from ..api import pool_sessions
from ..datamodel import role_allows
from ..errors import ApiError
from ..rbac import HTTP_PERMISSIONS, permission_denied
from .responses import header, peer, user_agent

log = logging.getLogger(__name__)

REALM = "xapi"
SESSION_KEY = "xapi_server.session"   # scope key: the session a route's body runs for


class Refused(Exception):
    """The request may not run: answered with `status` and a one-line reason; `error`
    is what a task the client named fails with."""

    def __init__(self, status: int, reason: str, error: ApiError | None = None):
        super().__init__(reason)
        self.status, self.reason = status, reason
        self.error = error or (ApiError("SESSION_AUTHENTICATION_FAILED", "", reason)
                               if status == 401 else None)

    @property
    def headers(self) -> list:
        if self.status == 401:
            return [(b"www-authenticate", f'Basic realm="{REALM}"'.encode())]
        return []


def cookies(scope) -> dict[str, str]:
    """The Cookie header as xapi reads it: `a=b; c=d`, or the old `a=b&c=d` when there is
    no `;`; names and values percent-decoded; the first of a name wins."""
    text = header(scope, b"cookie") or ""
    found = {}
    for pair in text.split(";" if ";" in text else "&"):
        name, sep, value = pair.strip().partition("=")
        if sep:
            found.setdefault(unquote(name), unquote(value))
    return found


def query(scope) -> dict[str, str]:
    """The query string's parameters, URL-decoded, the first of a name wins; a value
    holding commas stays whole."""
    parsed = parse_qs(scope.get("query_string", b"").decode("latin-1"),
                      keep_blank_values=True)
    return {name: values[0] for name, values in parsed.items()}


def param(scope, name: str) -> str | None:
    """A parameter from the Cookie first, then the query: xapi's handlers read
    `session_id`, `task_id` and most of their own parameters from both."""
    value = cookies(scope).get(name)
    return value if value is not None else query(scope).get(name)


def basic_credentials(scope) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header, None without the header."""
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.strip().partition(" ")
    if scheme.lower() != "basic":
        raise Refused(401, "only HTTP Basic authorisation is understood")
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True) \
            .decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise Refused(401, "malformed HTTP Basic credentials")
    return user, password


def check_permission(server, session: str, permission: str | None):
    """403 unless the session may use a route needing `permission` (None: any session)."""
    auth = server.auth
    if permission is None or auth.is_superuser(session):
        return
    needed = HTTP_PERMISSIONS[permission]
    role = auth.role_of(session)
    if role is None or not role_allows(role, needed):
        denied = permission_denied(permission, needed)
        raise Refused(403, " ".join(denied.description), denied)


async def _login(server, scope, user: str, password: str) -> str:
    agent = user_agent(scope)
    try:
        return await server.dispatcher.call(
            "session.login_with_password",
            [user, password, "1.0", f"{agent or 'HTTP client'} using Basic auth"],
            peer(scope), None, agent)
    except ApiError as exc:
        raise Refused(401, exc.code) from None


async def _logout(server, scope, session: str):
    try:
        await server.dispatcher.call("session.logout", [session], peer(scope), None,
                                     user_agent(scope))
    except ApiError as exc:   # already gone (expired, logged out by its user): fine
        log.debug("temporary session already gone: %s", exc.code)


@asynccontextmanager
async def session_for(server, scope, permission: str | None):
    """The request's session, allowed `permission`; a Basic login's session is logged
    out when the block ends (also when the handler fails or is cancelled)."""
    ref = param(scope, "session_id")
    credentials = None if ref is not None else basic_credentials(scope)
    vouched = False   # a pool member: the coordinator's session, checked there
    if ref is not None:
        try:
            session = server.dispatcher.check_session(ref)
        except ApiError:
            if not server.role.is_member:
                raise Refused(401, "invalid session") from None
            session = await _vouched(server, ref, permission, param(scope, "task_id"))
            vouched = True
    elif credentials is not None:
        session = await _login(server, scope, *credentials)
    else:
        raise Refused(401, "no session_id and no HTTP Basic credentials")
    try:
        if not vouched:
            check_permission(server, session, permission)
        yield session
    finally:
        if credentials is not None:
            # shielded: a cancelled request still ends its temporary session
            await asyncio.shield(_logout(server, scope, session))
        if vouched:
            server.store.delete("session", session)


async def _vouched(server, ref: str, permission: str | None, task: str | None) -> str:
    """A request a coordinator redirected here (api/pool_sessions.py)."""
    try:
        return await pool_sessions.vouched_session(server, ref, permission, task)
    except ApiError as exc:
        if exc.code == "RBAC_PERMISSION_DENIED":
            raise Refused(403, " ".join(exc.description), exc) from None
        raise Refused(401, "invalid session") from None
