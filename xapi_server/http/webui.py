"""GET /: the web console, a XenAPI client in the browser (the front-end project in ui/,
built into ui/dist by scripts/setup.sh), served from the API's own origin.

Every GET no other route claims comes here, as xapi serves its web folder. The built
files are read from `Settings.web_dir` (default: ui/dist beside the package) at each
request, so a rebuild shows without a restart and the server runs as well without them:
then GET / is a short page saying how to build the console, and any other path is 404.

- `index.html` is never cached (it names the current assets); Vite names every asset by
  a hash of its content, so those are cached for a year, `immutable`. A `.gz` sibling
  made at build time (ui/scripts/compress.mjs) is sent to a client that accepts gzip.
- A strict Content-Security-Policy on every answer: scripts, styles, images, fonts and
  connections from this origin only (CSP level 3 counts the same host's wss: as 'self',
  which is what the console's WebSocket needs), no inline script or style, no framing.
- The login page shows the server certificate's SHA-256 fingerprint, so a person can
  compare it with what the browser's certificate warning shows: it is written into
  index.html's `<meta name="xapi-certificate-sha256">` as the file is served (no inline
  script needed, and a replaced certificate shows at the next load).
"""
from __future__ import annotations

import asyncio
import html
import mimetypes
import os

from .responses import header
from .tls import fingerprint

DEFAULT_WEB_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "ui", "dist")

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "font-src 'self'; connect-src 'self'; manifest-src 'self'; base-uri 'none'; "
       "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [(b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY")]
NO_CACHE = b"no-cache"
FOREVER = b"public, max-age=31536000, immutable"
FINGERPRINT_SLOT = b"%XAPI_CERT_SHA256%"   # in ui/index.html's meta tag

TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
         ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml", ".json":
         "application/json", ".woff2": "font/woff2", ".png": "image/png", ".ico":
         "image/x-icon", ".wasm": "application/wasm", ".map": "application/json"}

NOT_BUILT = (b"<!doctype html><html><head><title>xapi-py</title></head><body>"
             b"<p>xapi-py: a XenAPI server. Speak XML-RPC (POST /) or JSON-RPC "
             b"(POST /jsonrpc) to it, or use xe.</p><p>The web console is not built: run "
             b"<code>scripts/setup.sh</code> (or <code>npm ci &amp;&amp; npm run build</code> "
             b"in <code>ui/</code>) and reload this page.</p></body></html>")
NOT_FOUND = b"<html><body><h1>HTTP 404 not found</h1></body></html>"


def web_dir(settings) -> str:
    return os.path.realpath(settings.web_dir or DEFAULT_WEB_DIR)


def resolve(root: str, path: str) -> str | None:
    """The file under `root` that the URL path names, or None: nothing outside the root,
    no hidden files, no folders."""
    relative = path.lstrip("/")
    if not relative or "\x00" in relative or any(part.startswith(".")
                                                 for part in relative.split("/")):
        return None
    full = os.path.realpath(os.path.join(root, relative))
    if not full.startswith(root + os.sep) or not os.path.isfile(full):
        return None
    return full


def content_type(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    return TYPES.get(ext) or mimetypes.guess_type(path)[0] or "application/octet-stream"


def accepts_gzip(scope) -> bool:
    accepted = header(scope, b"accept-encoding") or ""
    return any(item.split(";")[0].strip() == "gzip" for item in accepted.split(","))


def read_asset(full: str, gzip_ok: bool) -> tuple[bytes, bool]:
    """The file's bytes, or its build-time `.gz` sibling's when the client takes gzip."""
    if gzip_ok and os.path.isfile(full + ".gz"):
        with open(full + ".gz", "rb") as f:
            return f.read(), True
    with open(full, "rb") as f:
        return f.read(), False


def read_index(root: str, cert_path: str) -> bytes | None:
    try:
        with open(os.path.join(root, "index.html"), "rb") as f:
            page = f.read()
    except FileNotFoundError:
        return None
    return page.replace(FINGERPRINT_SLOT, html.escape(fingerprint(cert_path)).encode())


async def send_file(send, status: int, body: bytes, ctype: str, cache: bytes, extra=()):
    headers = [(b"content-type", ctype.encode()), (b"content-length", str(len(body)).encode()),
               (b"cache-control", cache), *SECURITY_HEADERS, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def get_root(app, scope, receive, send):
    root = web_dir(app.server.settings)
    path = scope["path"]
    if path in ("/", "/index.html"):
        page = await asyncio.to_thread(read_index, root, app.server.tls.cert_path)
        return await send_file(send, 200, page or NOT_BUILT, TYPES[".html"], NO_CACHE)
    full = resolve(root, path)
    if full is None:
        return await send_file(send, 404, NOT_FOUND, TYPES[".html"], NO_CACHE)
    body, gzipped = await asyncio.to_thread(read_asset, full, accepts_gzip(scope))
    hashed = path.startswith("/assets/")   # Vite's content-hashed output folder
    extra = [(b"vary", b"accept-encoding")] + ([(b"content-encoding", b"gzip")]
                                               if gzipped else [])
    await send_file(send, 200, body, content_type(full), FOREVER if hashed else NO_CACHE,
                    extra)
