"""What every HTTP handler shares: reading a capped body, writing a reply, and the
request's client address and User-Agent."""
from __future__ import annotations

import html


class BodyTooLarge(Exception):
    """The body is over the route's cap: the app answers 413."""


# xapi's RPC replies carry these (api_server.ml); the data handlers of the next issues
# may leave them out, as xapi's do.
CORS = [(b"access-control-allow-origin", b"*"),
        (b"access-control-allow-headers", b"X-Requested-With")]


# The content types of this server's own replies: a header of one of them is known good.
_OWN_TYPES = frozenset((b"application/json", b"text/xml", b"text/html", b"text/plain"))
# Constant headers a reply of ours may carry besides its type, length and CORS.
VARY_ENCODING = (b"vary", b"Accept-Encoding")   # the reply may differ with Accept-Encoding
GZIP_ENCODED = (b"content-encoding", b"gzip")


def _own_extra(extra) -> bool:
    # compared, not hashed: a caller's header may be any pair, a list too
    return all(h == VARY_ENCODING or h == GZIP_ENCODED for h in extra)


class OwnHeaders(list):
    """A reply's headers made here from constants and the body's `length`, nothing
    else (no Connection, no Transfer-Encoding): http/guard.py writes them without
    uvicorn's checks of each name and value."""
    __slots__ = ("length",)


async def respond(send, status: int, body: bytes, content_type: bytes, extra=()):
    if content_type in _OWN_TYPES and (not extra or _own_extra(extra)):
        headers = OwnHeaders(((b"content-type", content_type),
                              (b"content-length", str(len(body)).encode()), *CORS, *extra))
        headers.length = len(body)
        # uvicorn's send, when it is our cycle's (http/guard.py): the reply in one go
        whole = getattr(getattr(send, "__self__", None), "send_whole", None)
        if whole is not None and whole(status, headers, body):
            return
    else:
        headers = [(b"content-type", content_type),
                   (b"content-length", str(len(body)).encode()), *CORS, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def read_body(scope, receive, limit: int) -> bytes:
    for name, value in scope["headers"]:   # refused before a 100 Continue invites it
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise BodyTooLarge()
            except ValueError:
                pass
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionAbortedError()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)   # one chunk (most requests): that chunk, no copy


def header(scope, wanted: bytes) -> str | None:
    """The first header of that (lower-case) name, or None."""
    for name, value in scope["headers"]:
        if name == wanted:
            return value.decode("latin-1")
    return None


def accepts_gzip(scope) -> bool:
    """Whether the request's Accept-Encoding allows gzip: named (or x-gzip) with a
    q-value above 0, or `*` above 0 with gzip not named. No header: no (identity)."""
    field = header(scope, b"accept-encoding")
    if not field:
        return False
    named, star = None, None
    for item in field.split(","):
        coding, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0         # an unreadable weight is taken as a refusal
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            named = q > 0 if named is None else named or q > 0
        elif coding == "*":
            star = q > 0
    return named if named is not None else bool(star)


def peer(scope) -> str:
    client = scope.get("client")
    return client[0] if client else ""


def user_agent(scope) -> str:
    return header(scope, b"user-agent") or ""


def error_page(reason: str) -> bytes:
    """xapi's HTTP 500 page for a body that is no request at all."""
    return (f"<html><body><h1>HTTP 500 internal server error</h1>The request could not be "
            f"read.<h1>Additional information</h1>{html.escape(reason)}</body></html>").encode()


def plain_fault(scope, description: list):
    """INTERNAL_ERROR for a route with no RPC protocol of its own: a bare 500."""
    return b"text/plain", b"internal error\n"
