"""What a route with a session gets: the Request, and for xapi's data handlers the task
protocol around it (xapi_http.ml `with_context`, server_helpers.ml
`exec_with_forwarded_task`).

    async def export_raw_vdi(req: Request):
        vdi = ...req.param("vdi")...                  # cookie first, then query
        if bad: raise Refusal(404, ApiError(...))     # status + header block, task failed
        conn = await req.start_stream([...header lines...])   # the connection is ours
        ... await conn.write(block); req.progress(done / total) ...
        return vdi                                    # the task's result

Task protocol (a route declared with task=True):
- a `task_id` from the cookie or the query names the task the handler drives (it must
  exist and be the user's, or a role that may change anyone's); without one the
  handler makes its own. Progress starts at 0.0 ("the handler took it": xe pre-sets
  -1), moves with req.progress, and the task ends `success` with the handler's return
  value as an XML-RPC <value> fragment, or `failure` with the error's code and
  parameters (INTERNAL_ERROR for anything that is no XenAPI error).
- `task.cancel` cancels the handler (asyncio.CancelledError at its next await; it
  cleans up in try/finally): the task ends `cancelled`, the connection is closed.
- a Refusal before the stream starts answers its status with xapi's header block;
  any error after it is written into the started body as xapi's 500 page (clients
  learn the outcome from the task: xapi does the same, XO checks for `HTTP/`).
- auth refused with a task_id given: app.py fails that task (SESSION_AUTHENTICATION_
  FAILED or RBAC_PERMISSION_DENIED) before answering 401/403.
Every request to such a route is written to the audit log, as an RPC call is.
"""
from __future__ import annotations

import asyncio
import html
import logging
import time
from urllib.parse import parse_qs

from ..api import pool_sessions, pool_tasks
from ..errors import ApiError
from ..wire import clean_text
from ..wire.xmlrpc import encode_value
from . import auth
from .raw import ClientGone, RawStream, take_over
from .responses import header, peer, respond

log = logging.getLogger(__name__)

PROGRESS_INTERVAL = 1.0   # seconds between progress writes while streaming

_STATUS_TEXT = {400: "Bad Request", 401: "Unauthorised", 403: "Forbidden",
                404: "Not Found", 500: "Internal Error", 501: "Not Implemented",
                503: "Service Unavailable"}


class Refusal(Exception):
    """Refuse the request before anything was sent: answer `status` with xapi's header
    block (`HTTP/<version> <status> <text>`, Connection: close) and fail the task with
    `error`."""

    def __init__(self, status: int, error: ApiError, version: str = "1.1"):
        super().__init__(status, error)
        self.status, self.error, self.version = status, error, version


def header_block(lines: list[str]) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode("latin-1") + b"\r\n"


def refusal_lines(status: int, version: str = "1.1") -> list[str]:
    return [f"HTTP/{version} {status} {_STATUS_TEXT.get(status, 'Error')}",
            "Connection: close", "Cache-Control: no-cache, no-store"]


def internal_error_page(reason: str) -> bytes:
    """xapi's 500 page, also what it writes into a body already under way."""
    body = (f"<html><body><h1>HTTP 500 internal server error</h1>An unexpected error "
            f"occurred; please wait a while and try again. If the problem persists, "
            f"please contact your support representative.<h1>Additional "
            f"information</h1>{html.escape(reason)}</body></html>").encode()
    return header_block(["HTTP/1.1 500 Internal Error", "content-type: text/html",
                         "connection: close", "cache-control: no-cache, no-store",
                         f"content-length: {len(body)}"]) + body


class Request:
    """One request to a route with a session (see the module docstring)."""

    def __init__(self, app, route, scope, receive, send, session: str):
        self.app, self.route = app, route
        self.server = app.server
        self.scope, self.receive, self.send = scope, receive, send
        self.session = session
        self.task: str | None = None
        # a pool member: the coordinator's task the client named, told how ours ended
        self.coordinator_task: str | None = None
        self.conn: RawStream | None = None
        self.responded = False
        self._progress_at = 0.0

    # -- what the request says --------------------------------------------------------
    def param(self, name: str) -> str | None:
        return auth.param(self.scope, name)

    def query_all(self, name: str) -> list[str]:
        parsed = parse_qs(self.scope.get("query_string", b"").decode("latin-1"),
                          keep_blank_values=True)
        return parsed.get(name, [])

    def header(self, name: str) -> str | None:
        return header(self.scope, name.lower().encode("latin-1"))

    @property
    def http10(self) -> bool:
        return self.scope.get("http_version") == "1.0"

    @property
    def peer(self) -> str:
        return peer(self.scope)

    # -- answering --------------------------------------------------------------------
    def progress(self, fraction: float, force: bool = False):
        """The task's progress, written at most every PROGRESS_INTERVAL seconds."""
        now = time.monotonic()
        if self.task and (force or now - self._progress_at >= PROGRESS_INTERVAL):
            self._progress_at = now
            self.server.tasks.set_progress(self.task, fraction)

    async def respond(self, status: int, body: bytes, content_type: bytes, headers=()):
        """A whole ordinary reply (keep-alive allowed)."""
        self.responded = True
        await respond(self.send, status, body, content_type, list(headers))

    async def start_stream(self, lines: list[str]) -> RawStream:
        """Take the connection over and write exactly these header lines; the body,
        both ways, is the handler's (http/raw.py). Once only."""
        if self.conn is not None:
            raise RuntimeError("the stream has already started")
        conn = take_over(self.send, self.server.settings.transfer_idle_timeout)
        if conn is None:
            raise RuntimeError("this server cannot hand a connection to a handler")
        self.conn, self.responded = conn, True
        # A client that asked to be told to go on (curl does, for an upload) gets the
        # interim 100 before the 200: told nothing, curl sends the whole body in its
        # slower mode of waiting for a reply it already has (1 GiB: 4.4 s instead of 2.8).
        go_on = (self.header("expect") or "").lower() == "100-continue" and not self.http10
        await conn.write((b"HTTP/1.1 100 Continue\r\n\r\n" if go_on else b"") +
                         header_block(lines))
        return conn

    @property
    def content_length(self) -> int | None:
        value = self.header("content-length")
        try:
            return int(value) if value is not None else None
        except ValueError:
            return None

    async def body(self, chunk: int = 1 << 20):
        """The request body after start_stream: Content-Length bytes when the request
        gave one (ClientGone if it ends early), else everything until EOF."""
        remaining = self.content_length
        while remaining is None or remaining > 0:
            data = await self.conn.read_some(chunk if remaining is None
                                             else min(chunk, remaining))
            if not data:
                if remaining is not None:
                    raise ClientGone(f"the body ended {remaining} bytes short")
                return
            if remaining is not None:
                remaining -= len(data)
            yield data


# -- running a route ------------------------------------------------------------------

def fail_supplied_task(server, scope, error: ApiError):
    """Auth was refused: the client's task (if it named one that exists) fails."""
    ref = auth.param(scope, "task_id")
    if ref and server.store.exists("task", ref) and \
            server.store.record("task", ref)["status"] == "pending":
        server.tasks.fail(ref, error.description)


def _task_for(req: Request) -> str:
    tasks, ref = req.server.tasks, req.param("task_id")
    if ref is None:
        return tasks.create(f"HTTP {req.route.action}", session=req.session)
    if not req.server.store.exists("task", ref):
        if req.server.role.is_member:   # redirected here: the coordinator checked it
            req.coordinator_task = ref   # and a task.cancel there reaches this one
            return pool_tasks.member_task(req.server, f"HTTP {req.route.action}", ref,
                                          session=req.session)
        raise Refusal(404, ApiError("HANDLE_INVALID", "task", ref))
    try:
        tasks.check_may_change(req.session, ref)
    except ApiError as exc:
        raise Refusal(403, exc) from None
    if req.server.store.record("task", ref)["status"] != "pending":
        raise Refusal(400, ApiError("OPERATION_NOT_ALLOWED", "the task has already ended"))
    return ref


async def run(app, route, scope, receive, send, session: str):
    req = Request(app, route, scope, receive, send, session)
    outcome = "success"
    reporter = None
    try:
        if route.task:
            req.task = _task_for(req)
            req.server.tasks.set_progress(req.task, 0.0)
            if req.coordinator_task is not None:   # the client watches that one
                reporter = pool_tasks.follow_progress(req.server, req.task,
                                                      req.coordinator_task)
            result = await _drive(req)
            req.server.tasks.succeed(req.task, "" if result is None else encode_value(result))
        else:
            await route.handler(req)
    except asyncio.CancelledError:
        if req.task is None or req.server.tasks.status(req.task) != "cancelling":
            raise                     # the request itself is cancelled (shutdown)
        outcome = "TASK_CANCELLED"
        req.server.tasks.fail(req.task, ["TASK_CANCELLED", req.task], status="cancelled")
        if req.conn is not None:
            req.conn.transport.abort()
        else:
            await _refuse(req, Refusal(500, ApiError("TASK_CANCELLED", req.task)))
    except Refusal as refusal:
        outcome = refusal.error.code
        if req.task:
            req.server.tasks.fail(req.task, refusal.error.description)
        await _refuse(req, refusal)
    except Exception as exc:
        error = _as_api_error(exc)
        outcome = error.code
        if req.task:
            req.server.tasks.fail(req.task, error.description)
        await _after_failure(req, error)
    finally:
        if reporter is not None:
            reporter.cancel()
        if req.conn is not None:
            req.conn.close()
        if route.audited:
            _audit(req, outcome)
        if req.coordinator_task is not None and req.server.store.exists("task", req.task):
            await pool_sessions.report_task(req.server, req.coordinator_task,
                                            req.server.store.record("task", req.task))
        await req.server.store.flush()


class _Job:
    """What tasks.running holds for a handler's task: cancelling it first cuts the
    connection, so nothing (a worker thread included) stays waiting on the client,
    then cancels the handler."""

    def __init__(self, req: Request, job: asyncio.Task):
        self.req, self.job = req, job

    def cancel(self):
        if self.req.conn is not None:
            self.req.conn.transport.abort()
        return self.job.cancel()


async def _drive(req: Request):
    """The handler as a job of its own, registered as the task's: task.cancel cancels
    the job, not the request; a cancelled request cancels the job."""
    job = asyncio.get_running_loop().create_task(req.route.handler(req))
    req.server.tasks.running[req.task] = _Job(req, job)
    try:
        return await asyncio.shield(job)
    except asyncio.CancelledError:
        if not job.done():
            job.cancel()
            await asyncio.gather(job, return_exceptions=True)
        raise
    finally:
        req.server.tasks.running.pop(req.task, None)


def _as_api_error(exc: Exception) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ClientGone):
        return ApiError("INTERNAL_ERROR", f"client closed the connection: {exc}")
    log.error("HTTP handler failed", exc_info=exc)
    return ApiError("INTERNAL_ERROR", clean_text(f"{type(exc).__name__}: {exc}")[:1000])


async def _refuse(req: Request, refusal: Refusal):
    if req.conn is not None:
        return await _after_failure(req, refusal.error)
    if req.responded:
        return
    conn = take_over(req.send, req.server.settings.transfer_idle_timeout)
    if conn is None:
        return await respond(req.send, refusal.status, b"", b"text/plain",
                             [(b"connection", b"close")])
    req.conn = conn
    try:
        await conn.write(header_block(refusal_lines(refusal.status, refusal.version)))
    except ClientGone:
        pass


async def _after_failure(req: Request, error: ApiError):
    """As xapi: a 500 page, inside the body when one was under way."""
    if req.conn is None and req.responded:
        return
    if req.conn is None:
        req.conn = take_over(req.send, req.server.settings.transfer_idle_timeout)
        if req.conn is None:
            return await respond(req.send, 500, b"internal error\n", b"text/plain")
    if not req.conn.lost:
        try:
            await req.conn.write(internal_error_page(" ".join(error.description)))
        except ClientGone:
            pass


def _audit(req: Request, outcome: str):
    req.server.audit.record_http(req.server.store, req.session, req.peer,
                                 f"http/{req.route.action}", req.task, outcome)
