"""One libvirt connection for the whole server: URI choice, event loop, reconnect.

- libvirt's own event loop (virEventRegisterDefaultImpl) runs in a daemon thread;
  it must be registered before the first connection is opened, because both the
  embedded QEMU driver and domain lifecycle events need it.
- Calls run in a small thread pool (`await conn.call(fn, ...)`), never on the asyncio
  loop: a libvirt call can block for seconds (managed save, a daemon restart).
- When the connection dies (libvirtd killed or restarted, keepalive timeout), libvirt's
  close callback starts a reconnect loop with backoff; each call in between tries
  once to reconnect and otherwise fails at once with `Unreachable` (never hangs). On
  every new connection the event callbacks are registered again and `on_connect`
  is told whether domains may have changed unseen (events lost in between), so the
  caller can re-read every domain.
"""
from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qsl, urlsplit

import libvirt

log = logging.getLogger(__name__)

SYSTEM_URI = "qemu:///system"
TEST_URI = "test:///default"
RECONNECT_DELAYS = (0.2, 0.5, 1.0, 2.0)   # seconds between attempts; the last repeats
_CLOSE_REASONS = {libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
                  libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "end of file",
                  libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive timeout",
                  libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "closed"}

_loop_lock = threading.Lock()
_loop_thread: threading.Thread | None = None


def ensure_event_loop():
    """Register libvirt's default event implementation once and run it in a thread."""
    global _loop_thread
    with _loop_lock:
        if _loop_thread is not None:
            return
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(target=_run_events, name="libvirt-events", daemon=True)
        _loop_thread.start()


def _run_events():
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # keep the loop alive whatever a callback does
            log.exception("libvirt event loop iteration failed")
            time.sleep(0.1)


# libvirt prints every error to stderr by default; we report them ourselves.
libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def embedded_uri(data_dir: str) -> str:
    """qemu:///embed rooted in the data dir (see prepare_embedded_root)."""
    root = os.path.join(os.path.abspath(data_dir), "libvirt")
    prepare_embedded_root(root)
    return f"qemu:///embed?root={root}"


def prepare_embedded_root(root: str):
    """A qemu.conf that runs QEMU as root without mount namespaces: no daemon, no
    libvirt-qemu user needed."""
    etc = os.path.join(root, "etc")
    os.makedirs(etc, exist_ok=True)
    conf = os.path.join(etc, "qemu.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write('user = "root"\ngroup = "root"\nnamespaces = []\n'
                    '# no virtlogd in embedded mode: QEMU writes its own logs\n'
                    'stdio_handler = "file"\n'
                    '# no ownership bookkeeping (xattrs) that would collide with a\n'
                    '# system libvirtd using the same kernel or disk files\n'
                    'dynamic_ownership = 0\n')


def system_daemon_answers() -> bool:
    try:
        conn = libvirt.open(SYSTEM_URI)
    except libvirt.libvirtError:
        return False
    conn.close()
    return True


def resolve_uri(setting: str, data_dir: str) -> str:
    """`auto`: the system daemon when one answers, else the embedded driver."""
    if setting and setting != "auto":
        if setting.startswith("qemu:///embed"):
            root = dict(parse_qsl(urlsplit(setting).query)).get("root")
            if root:
                prepare_embedded_root(root)
        return setting
    return SYSTEM_URI if system_daemon_answers() else embedded_uri(data_dir)


def kvm_usable() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    if " vmx" not in flags and " svm" not in flags:
        return False
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError:
        return False
    return True


class Unreachable(Exception):
    """No connection to the hypervisor, and a fresh attempt failed too."""


class Connection:
    def __init__(self, setting: str, data_dir: str):
        self.setting, self.data_dir = setting, data_dir
        self.uri = ""
        self._conn: libvirt.virConnect | None = None
        self._lock = threading.Lock()        # one (re)connect at a time
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="libvirt")
        self._callbacks: list[tuple[int, object]] = []   # (event id, callback)
        self._callback_ids: list[int] = []
        self._attempted = False               # a connection was made or tried before
        self._closing = False
        self._reconnect_lock = threading.Lock()
        self._reconnecting = False
        # callable(virConnect, missed: bool), run in a worker thread after each new
        # connection; `missed`: domains may have changed while we were not connected.
        self.on_connect = None

    # -- used from the asyncio side -----------------------------------------------

    async def open(self):
        """Connect now; if that fails, keep trying in the background and raise."""
        ensure_event_loop()
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._connection)
        except Unreachable:
            self._start_reconnect()
            raise

    async def call(self, fn, *args):
        """Run fn(virConnect, *args) in a worker thread; reconnect once if the
        connection turns out to be dead."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call,
                                                                fn, args)

    async def close(self):
        self._closing = True

        def _close():
            with self._lock:
                self._drop_locked()
        await asyncio.get_running_loop().run_in_executor(self._pool, _close)
        self._pool.shutdown(wait=False)

    def add_event_callback(self, event_id: int, callback):
        """Registered now (if connected) and again after every reconnect."""
        self._callbacks.append((event_id, callback))
        with self._lock:
            if self._conn is not None:
                self._callback_ids.append(
                    self._conn.domainEventRegisterAny(None, event_id, callback, None))

    # -- worker-thread side ---------------------------------------------------------

    def _call(self, fn, args):
        conn = self._connection()
        try:
            return fn(conn, *args)
        except libvirt.libvirtError:
            if self._alive(conn):
                raise
        # The daemon went away under us: reopen and try once more.
        return fn(self._connection(), *args)

    @staticmethod
    def _alive(conn) -> bool:
        try:
            return conn.isAlive() == 1
        except libvirt.libvirtError:
            return False

    def _connection(self) -> libvirt.virConnect:
        """The live connection, opened now if there is none (raises Unreachable)."""
        conn = self._conn
        if conn is not None and self._alive(conn):
            return conn
        opened = False
        with self._lock:
            if self._conn is None or not self._alive(self._conn):
                missed = self._attempted
                self._attempted = True
                self._open_locked()
                opened = True
            conn = self._conn
        if opened and missed:
            log.warning("connected to %s again", self.uri)
        if opened and self.on_connect:
            try:
                self.on_connect(conn, missed)
            except Exception:
                log.exception("after connecting to %s", self.uri)
        return conn

    def _open_locked(self):
        self._drop_locked()
        if not self.uri:
            self.uri = resolve_uri(self.setting, self.data_dir)
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError as exc:
            raise Unreachable(f"cannot connect to {self.uri}: "
                              f"{exc.get_error_message() or exc}") from None
        if not self.uri.startswith(("test:", "qemu:///embed")):
            try:  # notice a dead daemon within ~15 s even when idle
                conn.setKeepAlive(5, 3)
                conn.registerCloseCallback(self._on_close, None)
            except libvirt.libvirtError:
                pass
        self._conn = conn
        self._callback_ids = [conn.domainEventRegisterAny(None, event_id, cb, None)
                              for event_id, cb in self._callbacks]
        log.info("connected to %s", self.uri)

    def _drop_locked(self):
        """Forget the current connection (dead or not), quietly."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        for cid in self._callback_ids:
            try:
                conn.domainEventDeregisterAny(cid)
            except libvirt.libvirtError:
                pass
        self._callback_ids = []
        try:
            conn.unregisterCloseCallback()
        except libvirt.libvirtError:
            pass
        try:
            conn.close()
        except libvirt.libvirtError:
            pass

    # -- losing the connection --------------------------------------------------------

    def _on_close(self, _conn, reason, _opaque):
        """libvirt's close callback, in its event thread: never block here."""
        if self._closing:
            return
        log.warning("connection to %s lost (%s); reconnecting", self.uri,
                    _CLOSE_REASONS.get(reason, reason))
        self._start_reconnect()

    def _start_reconnect(self):
        with self._reconnect_lock:
            if self._reconnecting or self._closing:
                return
            self._reconnecting = True
        threading.Thread(target=self._reconnect_loop, name="libvirt-reconnect",
                         daemon=True).start()

    def _reconnect_loop(self):
        attempt = 0
        try:
            while not self._closing:
                try:
                    self._connection()
                    return
                except Unreachable as exc:
                    if attempt == 0:
                        log.warning("%s; retrying", exc)
                except libvirt.libvirtError as exc:   # the new connection died at once
                    log.warning("reconnecting to %s: %s", self.uri, exc)
                time.sleep(RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)])
                attempt += 1
        finally:
            with self._reconnect_lock:
                self._reconnecting = False
