"""`xapi-server`: read the settings, make sure the certificate exists, serve HTTPS."""
from __future__ import annotations

import os
import shutil
import sys

import uvicorn

from . import config
from .config import make_data_dir
from ._logging import configure
from .http import redirect, tls
from .http.app import XapiApp
from .http.guard import guarded_protocol
from .http.sockets import SocketTable, socket_cap, tls_protocol
from .server import Server
from .store import DatabaseUnavailable


def build_app(settings):
    server = Server(settings)
    return XapiApp(server)


class _Server(uvicorn.Server):
    def _log_started_message(self, listeners):
        pass   # it would say http://: uvicorn sees no SSL context (see main); we say it


def main(argv=None):
    settings = config.load(argv)
    configure(settings.log_level)
    server = serve(settings)
    # A new pool role (api/pool_membership.py) stops serving and restarts. A take-over
    # of the pool (api/pool_ha.py) starts a new Server in this interpreter: the Server
    # keeps its state in its own objects, never in module globals, so nothing of the
    # old one is left but its imports, which a new process would spend seconds on.
    while server.restart_after_stop and server.restart_in_process:
        _remove(server.remove_after_stop)
        print("xapi-server: restarting in this process", file=sys.stderr, flush=True)
        server = serve(config.load(argv))
    if server.restart_after_stop:
        _remove(server.remove_after_stop)
        print("xapi-server: restarting", file=sys.stderr, flush=True)
        os.execv(sys.executable, [sys.executable, "-m", "xapi_server", *sys.argv[1:]])


def _remove(paths):
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path)
        for name in (path, path + "-wal", path + "-shm"):
            if os.path.isfile(name):
                os.unlink(name)


def serve(settings) -> Server:
    """Until it stops: the Server that served (restart_after_stop says what next)."""
    make_data_dir(settings.data_dir)
    cert, key, created = tls.ensure_certificate(settings.cert_dir)
    print(f"xapi-server: {'created' if created else 'using'} certificate {cert}", file=sys.stderr)
    print(f"xapi-server: certificate SHA-256 fingerprint {tls.fingerprint(cert)}",
          file=sys.stderr, flush=True)
    try:
        app = build_app(settings)
    except DatabaseUnavailable as exc:   # nothing to serve without the records
        sys.exit(f"xapi-server: {exc}")
    # uvicorn gets no SSL context: TLS is wrapped per accepted socket (http/sockets.py),
    # so that a connection counts, and has a deadline, from accept, handshake included.
    table = SocketTable(socket_cap(settings.max_connections), budget=settings.max_connections)
    http = tls_protocol(guarded_protocol(settings.header_timeout, settings.body_timeout,
                                         settings.max_header_bytes),
                        app.server.tls.context,  # ours: TLS 1.2+, replaceable live
                        table, settings.tls_timeout)
    uv = uvicorn.Config(app, host=settings.listen, port=settings.port, lifespan="on",
                        access_log=False,
                        log_level=settings.log_level.lower(),
                        timeout_keep_alive=settings.keep_alive_timeout,
                        timeout_graceful_shutdown=3,  # idle keep-alive clients must not
                                                      # hold up a stop
                        # the table keeps max_connections open while one is idle;
                        # uvicorn counts the newcomer too: beyond that, all busy, 503
                        limit_concurrency=settings.max_connections + 1,
                        # X-Forwarded-For is not believed: the rate limiter and the audit
                        # log record the address the connection really comes from.
                        proxy_headers=False,
                        # uvloop, but children are spawned without its fork handler
                        # (eventloop.py: libvirt's embedded driver forks in threads)
                        loop="xapi_server.eventloop:new_event_loop", http=http,
                        # WebSocket upgrades (the console) and CONNECT reach the app as
                        # plain requests; the handler takes the connection (http/raw.py)
                        ws="none")
    uv.load()
    print(f"xapi-server: serving https://{settings.listen}:{settings.port}", file=sys.stderr,
          flush=True)
    server = app.server
    serving = _Server(uv)
    # A change of pool role stops serving and restarts (below): not by a signal, which
    # uvicorn raises again once it has stopped.
    server.serve_until(lambda: setattr(serving, "should_exit", True))
    redirect.run(serving, settings,  # + the plain-HTTP redirect port, if set
                 closed=lambda: server.host_ref is not None and
                 server.store.get("host", server.host_ref, "https_only"))
    return server


if __name__ == "__main__":
    main()
