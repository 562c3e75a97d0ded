"""A libvirtd of a test's own, which it may kill and restart at will.

Other tests (and other people's test runs on the same machine) use the system
daemon; killing that one would break their guests mid-call. This one runs in a
private mount namespace in which /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
/var/log/libvirt and /etc/libvirt are directories under `root`, so its domains,
state files and sockets are its own; from outside, its socket is
`<root>/run/libvirt-sock` (see `uri`). Its qemu.conf runs QEMU as root with no
cgroups, namespaces, file ownership changes or virtlogd: nothing is shared with
the system daemon but the kernel. QEMU processes outlive the daemon (as with the
real one), and a restarted daemon (same directories) takes them over again.

The binary runs under another name (a symlink), so that `pgrep -x libvirtd`
(scripts/libvirt-setup.sh) never takes it for the system daemon.
"""
from __future__ import annotations

import atexit
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

BINDS = {"run": "/run/libvirt", "lib": "/var/lib/libvirt", "cache": "/var/cache/libvirt",
         "log": "/var/log/libvirt", "etc": "/etc/libvirt"}
QEMU_CONF = """user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = []
cgroup_controllers = []
stdio_handler = "file"
"""

# QEMU's capabilities as the system daemon or the first daemon of this test run probed
# them: probing costs several seconds of CPU per new daemon, as every private root starts
# with an empty cache. New daemons start from a copy; libvirt re-probes any entry whose
# QEMU binary, libvirt or kernel has changed since.
SYSTEM_CAPS = "/var/cache/libvirt/qemu/capabilities"
_caps_seed: str | None = None


def qemu_pid(run_dir: str, domain: str) -> int | None:
    """The pid of the QEMU running `domain` (libvirt's pid file in `run_dir`, e.g.
    <root>/run/qemu), checked against its command line: a stale pid file must not make
    us kill an unrelated process."""
    try:
        with open(os.path.join(run_dir, f"{domain}.pid")) as f:
            pid = int(f.read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except (OSError, ValueError):
        return None
    return pid if b"qemu" in cmdline and f"guest={domain}".encode() in cmdline else None


def kill_qemus(run_dir: str):
    """SIGKILL every QEMU that libvirt recorded in `run_dir`."""
    for path in glob.glob(os.path.join(run_dir, "*.pid")):
        pid = qemu_pid(run_dir, os.path.basename(path)[:-len(".pid")])
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def unavailable() -> str | None:
    """Why this machine cannot run one, or None."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("libvirtd", "unshare", "virsh", "qemu-system-x86_64"):
        if not shutil.which(tool):
            return f"{tool} not installed"
    # /run is emptied at each boot: /run/libvirt is there only once a libvirtd has run
    # since. Here it is only a mount point, made as libvirtd makes it: a fresh machine's
    # first run must not skip every test that needs a private libvirtd (a clean-clone
    # CI run after a boot skipped 45 of them).
    os.makedirs(BINDS["run"], mode=0o700, exist_ok=True)
    missing = [path for path in BINDS.values() if not os.path.isdir(path)]
    if missing:
        return f"missing {', '.join(missing)} (libvirt-daemon-system not installed?)"
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode:
        return "cannot make a mount namespace (unshare -m)"
    return None


class PrivateLibvirtd:
    def __init__(self, root: str, netns: str | None = None, libvirtd_conf: str = "",
                 qemu_conf: str = "", listen: bool = False, lockd_leases: str = ""):
        self.root = os.path.abspath(root)
        self.netns = netns   # run in that network namespace (its QEMUs' taps are there)
        # Optional extra settings (a pool's hosts: host_uuid, TLS listening, migration
        # certificates), and `listen`: libvirtd --listen (its TCP/TLS sockets).
        self.listen = listen
        self.proc: subprocess.Popen | None = None
        for sub in BINDS:
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        os.makedirs(os.path.join(self.root, "etc", "qemu"), exist_ok=True)
        # lockd_leases: QEMU runs under libvirt's lock manager, a virtlockd of this
        # daemon's own holding a lease per disk in that directory (shared storage: a
        # disk leased by one daemon cannot be opened by another's QEMU).
        self.lockd = bool(lockd_leases)
        if self.lockd:
            qemu_conf += 'lock_manager = "lockd"\n'
            with open(os.path.join(self.root, "etc", "qemu-lockd.conf"), "w") as f:
                f.write(f'auto_disk_leases = 1\nrequire_lease_for_disks = 1\n'
                        f'file_lockspace_dir = "{lockd_leases}"\n')
        with open(os.path.join(self.root, "etc", "qemu.conf"), "w") as f:
            f.write(QEMU_CONF + qemu_conf)
        with open(os.path.join(self.root, "etc", "libvirtd.conf"),
                  "w" if libvirtd_conf else "a") as f:
            f.write(libvirtd_conf)
        self.binary = os.path.join(self.root, "xapi-test-libvirtd")
        if not os.path.lexists(self.binary):
            os.symlink(shutil.which("libvirtd"), self.binary)
        atexit.register(self.stop)   # whatever a failed or interrupted test left running

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.root}/run/libvirt-sock"

    def virsh(self, *args, check=True) -> str:
        return subprocess.run(["virsh", "-c", self.uri, *args], capture_output=True,
                              text=True, check=check).stdout

    def answers(self) -> bool:
        return subprocess.run(["virsh", "-c", self.uri, "version"],
                              capture_output=True).returncode == 0

    def start(self, timeout: float = 60):
        caps = os.path.join(self.root, "cache", "qemu", "capabilities")
        seed = _caps_seed or (SYSTEM_CAPS if _populated(SYSTEM_CAPS) else None)
        if seed and not os.path.isdir(caps):
            shutil.copytree(seed, caps)
        binds = "; ".join(f"mount --bind {os.path.join(self.root, sub)} {target}"
                          for sub, target in BINDS.items())
        lockd = f"virtlockd -d -p {self.root}/virtlockd.pid; " if self.lockd else ""
        script = f"set -e; {binds}; {lockd}exec {self.binary} -p {self.root}/libvirtd.pid" + \
            (" --listen" if self.listen else "")
        log = open(os.path.join(self.root, "libvirtd.log"), "ab")
        # unshare and sh exec: the pid we get is the daemon's.
        inside = ["ip", "netns", "exec", self.netns] if self.netns else []
        self.proc = subprocess.Popen([*inside, "unshare", "-m", "--propagation", "private",
                                      "sh", "-c", script], stdout=log, stderr=log)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"private libvirtd did not come up: {self.log()}")
            time.sleep(0.1)
        _seed_capabilities(caps)
        return self

    def kill(self):
        """SIGKILL, as a crash: its QEMU processes keep running."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def ensure_running(self):
        if self.proc is None or self.proc.poll() is not None:
            self.start()

    def qemu_pid(self, domain: str) -> int | None:
        return qemu_pid(os.path.join(self.root, "run", "qemu"), domain)

    def stop(self):
        """Kill every QEMU it started, then the daemon (and its virtlockd)."""
        kill_qemus(os.path.join(self.root, "run", "qemu"))
        self.kill()
        if self.lockd:
            try:
                with open(os.path.join(self.root, "virtlockd.pid")) as f:
                    pid = int(f.read().strip())
                with open(f"/proc/{pid}/cmdline", "rb") as f:   # not a reused pid
                    if b"virtlockd" in f.read():
                        os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass

    def log(self) -> str:
        try:
            with open(os.path.join(self.root, "libvirtd.log"), errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""


def _populated(folder: str) -> bool:
    return os.path.isdir(folder) and bool(os.listdir(folder))


def _seed_capabilities(caps: str):
    global _caps_seed
    if _caps_seed is None and _populated(caps):
        seed = os.path.join(tempfile.mkdtemp(prefix="xapi-test-qemu-caps-"), "capabilities")
        shutil.copytree(caps, seed)
        atexit.register(shutil.rmtree, os.path.dirname(seed), True)
        _caps_seed = seed
