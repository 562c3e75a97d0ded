"""Start the real server as a subprocess on a loopback port, for tests and benchmarks.

Each server runs in a session of its own and is killed with everything in it: a child
it forked that never exec'd (and so ignores SIGTERM) must not outlive the test. An
atexit hook kills whatever a failed or interrupted test left running."""
from __future__ import annotations

import atexit
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import xmlrpc.client

import XenAPI

ROOT_PASSWORD = "test-root-password"
# Where tests/guest builds its kernels: world-traversable, as QEMU's user reads them.
GUEST_CACHE = "/var/tmp/xapi-py-test-guest"


_running: set[ServerProcess] = set()   # started and not yet killed


@atexit.register
def _kill_leftovers():
    for server in list(_running):
        server.kill()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_connect(port: int, timeout: float = 10, host: str = "127.0.0.1") -> ssl.SSLSocket:
    """A raw TLS socket to the server on loopback (its certificate is self-signed)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    return ctx.wrap_socket(socket.create_connection((host, port), timeout=timeout))


def add_local_user(admin, user: str, role: str, password: str) -> str:
    """A local account holding exactly `role`; `admin` is a root session's xenapi."""
    subject = admin.subject.create({"subject_identifier": f"local:{user}",
                                    "other_config": {}})
    for held in admin.subject.get_roles(subject):
        admin.subject.remove_from_roles(subject, held)
    admin.subject.add_to_roles(subject, admin.role.get_by_name_label(role)[0])
    admin.subject.set_password(subject, password)
    return subject


# Settings naming a command that acts on the machine itself (xapi_server/config.py).
HOST_COMMANDS = ("host_reboot_command", "host_shutdown_command", "ssh_enable_command",
                 "ssh_disable_command", "set_time_command", "agent_restart_command",
                 "hostname_command", "syslog_restart_command")


class ServerProcess:
    def __init__(self, data_dir: str, port: int | None = None, env: dict | None = None,
                 libvirt_uri: str = "test:///default", max_fds: int | None = None,
                 netns: str | None = None, host: str = "127.0.0.1",
                 database_url: str = ""):
        self.data_dir = data_dir
        self.max_fds = max_fds   # the server's file descriptor limit (soft and hard)
        self.port = port or free_port()
        # netns: the server runs in that network namespace, listening on `host`, an
        # address of that namespace this one can reach (a veth between the two)
        self.netns, self.host = netns, host
        self.url = f"https://{host}:{self.port}"
        self.env = {**os.environ, "XAPI_ROOT_PASSWORD": ROOT_PASSWORD,
                    "XAPI_AUTH_FAILURE_DELAY": "0.2", "XAPI_AUTH_FAILURE_MAX_DELAY": "1.6",
                    "XAPI_LIBVIRT_URI": libvirt_uri,
                    "XAPI_LOG_LEVEL": "WARNING",
                    # The tiny test guest's kernels (tests/guest) may be booted.
                    "XAPI_BOOT_DIRS": GUEST_CACHE,
                    # No test server may reboot, rename or re-time the machine running
                    # the tests: the commands that change the host do nothing unless a
                    # test names its own.
                    **{f"XAPI_{name.upper()}": "true" for name in HOST_COMMANDS},
                    **(env or {})}
        if database_url:   # the records in PostgreSQL (tests/pg_server.py), not data_dir
            self.env["XAPI_DATABASE_URL"] = database_url
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(data_dir, "server.log")

    def start(self, timeout: float = 60):
        self.start_nowait()
        return self.wait_started(timeout)

    def start_nowait(self):
        """Launch it; wait_started() then waits until it answers (several servers can
        start together)."""
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen(
            [*inside, sys.executable, "-m", "xapi_server", "--data-dir", self.data_dir,
             "--listen", self.host, "--port", str(self.port)],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,   # see kill()
            preexec_fn=self._limit_fds if self.max_fds else None)
        log.close()
        _running.add(self)

    def wait_started(self, timeout: float = 60):
        try:
            self._wait_answering(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def _wait_answering(self, timeout: float):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            if self._answers():
                return
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer in {timeout}s:\n{self.log()}")

    def _limit_fds(self):
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_fds, self.max_fds))

    def _answers(self) -> bool:
        try:
            with tls_connect(self.port, timeout=1, host=self.host) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return s.recv(12).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-5000:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM (a clean shutdown), then kill() whatever is left after 15 s."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        """SIGKILL to the server's whole session (it leads its own process group): no
        shutdown handlers, no flushing, and no child of it left behind. QEMU leaves
        the session (libvirt daemonizes it): remove_vms_and_kill() stops guests."""
        if self.proc is None:
            return
        _running.discard(self)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:   # the server and all its children are gone
            pass
        self.proc.wait()

    def remove_vms_and_kill(self):
        """Stop and destroy every VM (not templates) so no guest outlives the test or
        benchmark, then SIGKILL the server."""
        try:
            x = self.session(timeout=60).xenapi   # a hung server must not hang teardown
            for ref, rec in x.VM.get_all_records().items():
                if not rec["is_a_template"]:
                    if rec["power_state"] != "Halted":
                        x.VM.hard_shutdown(ref)
                    x.VM.destroy(ref)
        finally:
            self.kill()

    def session(self, user: str = "root", password: str = ROOT_PASSWORD,
                timeout: float | None = None) -> XenAPI.Session:
        """An official SDK session; with `timeout`, every call fails after that many
        seconds without an answer instead of waiting for ever."""
        transport = _TimeoutTransport(timeout) if timeout else None
        s = XenAPI.Session(self.url, transport=transport, ignore_ssl=True)
        s.xenapi.login_with_password(user, password, "1.0", "tests")
        return s


class _TimeoutTransport(xmlrpc.client.SafeTransport):
    """The SDK's HTTPS transport (certificate unchecked) with a socket timeout."""

    def __init__(self, timeout: float):
        super().__init__(context=ssl._create_unverified_context())
        self.timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


def logged_in(session):
    """For a fixture: the session's proxy for a test, logged out after it (unless the
    test did)."""
    yield session.xenapi
    try:
        session.xenapi.session.logout()
    except Exception:
        pass
