"""A real PostgreSQL 15 from Debian's packages for the tests, and the backend switch.

One cluster per test session (started on first use, stopped at exit) in a temp dir,
run as the `postgres` user (root may not run it), reached only over a UNIX socket in
that dir on a random port; every test module (or test) gets a fresh database of its
own. Import the fixtures into a module to run it on both backends:

    from pg_server import server, store_backend   # noqa: F401 (fixtures)

`server` then overrides conftest's: the module's tests run on the session's SQLite
server and again on a server whose records are in PostgreSQL.
"""
from __future__ import annotations

import atexit
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time

import psycopg
import pytest

from serverproc import ServerProcess, free_port

PG_BIN = "/usr/lib/postgresql/15/bin"
BACKENDS = ["sqlite", "postgresql"]
_names = itertools.count()


class PgCluster:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="xapi-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()   # names the socket file; nothing listens on TCP
        self.log_path = os.path.join(self.dir, "postgres.log")
        self.proc: subprocess.Popen | None = None
        owner = pwd.getpwnam("postgres")
        os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        os.chmod(self.dir, 0o755)   # the socket is reached by root's clients
        self._as_postgres([f"{PG_BIN}/initdb", "-D", self.data, "-A", "trust", "-U",
                           "postgres", "-E", "UTF8", "--no-sync"])

    def _as_postgres(self, argv, **kw):
        return subprocess.run(argv, user="postgres", cwd=self.dir, check=True,
                              capture_output=True, text=True, **kw)

    def start(self, timeout: float = 30) -> PgCluster:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [f"{PG_BIN}/postgres", "-D", self.data, "-k", self.dir, "-p", str(self.port),
             "-c", "listen_addresses=", "-c", "fsync=on", "-c", "synchronous_commit=on",
             "-c", "shared_buffers=32MB", "-c", "max_connections=60"],
            user="postgres", cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited:\n{self.log()}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
                return self
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"postgres did not start in {timeout}s:\n{self.log()}")

    def stop(self, mode: str = "fast"):
        """fast: SIGINT (sessions ended, a clean shutdown); immediate: SIGQUIT (no
        checkpoint: recovery at the next start, as after a crash)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT if mode == "fast" else signal.SIGQUIT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def url(self, dbname: str) -> str:
        return f"postgresql://postgres@/{dbname}?host={self.dir}&port={self.port}"

    def connect(self, dbname: str) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname), autocommit=True)

    def new_database(self, hint: str = "t") -> str:
        """A fresh, empty database; its URL."""
        name = "".join(ch if ch.isalnum() else "_" for ch in hint.lower())[-40:]
        name = f"{name}_{next(_names)}_{os.getpid()}"
        with self.connect("postgres") as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


_cluster: PgCluster | None = None


def cluster() -> PgCluster:
    """The session's cluster, started on first use (and again if a test stopped it)."""
    global _cluster
    if _cluster is None:
        _cluster = PgCluster()
        atexit.register(_cluster.destroy)
    if _cluster.proc is None or _cluster.proc.poll() is not None:
        _cluster.start()
    return _cluster


@pytest.fixture(scope="module", params=BACKENDS)
def store_backend(request):
    return request.param


@pytest.fixture(scope="module")
def server(request, store_backend, tmp_path_factory, server):
    """conftest's session server (the `server` argument) on SQLite; on PostgreSQL a
    server of this module's own, on a fresh database."""
    if store_backend == "sqlite":
        yield server
        return
    url = cluster().new_database(request.module.__name__)
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-pg-data")),
                         database_url=url).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def database_url(request, store_backend):
    """"" (SQLite in the data dir) or a fresh PostgreSQL database for this test."""
    return "" if store_backend == "sqlite" else cluster().new_database(request.node.name)
