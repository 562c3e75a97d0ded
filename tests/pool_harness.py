"""Simulated hosts of a pool on one machine: each in a network namespace of its own,
with its own libvirtd (tests/private_libvirtd.py, started inside the namespace) and
its own server listening on port 443 of its own address, as a real host would.
The namespaces hang off one bridge in the test's namespace, so the hosts reach each
other and the test reaches every host. The first host keeps its records in
PostgreSQL (tests/pg_server.py, over its UNIX socket: a file path every namespace
sees); the others start standalone, on SQLite, as hosts do before they join.

    with pool_hosts(tmp_path_factory, 3) as hosts:
        coordinator, member = hosts[0], hosts[1]   # PoolHost: .server, .address, .libvirtd
"""
from __future__ import annotations

import contextlib
import os
import subprocess
import time
import uuid
from dataclasses import dataclass

import XenAPI

from pg_server import cluster
from pool_tls import TestCA, libvirtd_conf, qemu_conf
from private_libvirtd import PrivateLibvirtd
from serverproc import ROOT_PASSWORD, GUEST_CACHE, ServerProcess

PORT = 443
# Heartbeats fast enough for a test: a member silent for 4 s is not live.
FAST_HEARTBEATS = {"XAPI_POOL_HEARTBEAT_INTERVAL": "0.5",
                   "XAPI_HOST_ASSUMED_DEAD_INTERVAL": "4"}


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


@dataclass
class PoolHost:
    name: str           # its network namespace
    address: str        # its address on the bridge: host.address, pool.join's master_address
    server: ServerProcess
    libvirtd: PrivateLibvirtd

    def session(self) -> XenAPI.Session:
        return self.server.session()

    def restarts(self) -> int:
        """How many times its server has restarted so far (its log says each)."""
        with open(self.server.log_path, errors="replace") as f:
            return f.read().count("xapi-server: restarting")

    def wait_restarted(self, timeout: float = 60, before: int | None = None):
        """After a change of role the server stops and starts again in the same process:
        wait until it has let go of its port and answers again. With `before` (what
        restarts() gave before the action), until it has restarted once more than that:
        a restart in the same process can be over between two looks at the port."""
        deadline = time.monotonic() + timeout
        if before is not None:
            while self.restarts() <= before:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.name} did not restart:\n{self.server.log()}")
                time.sleep(0.1)
            self.server._wait_answering(max(1.0, deadline - time.monotonic()))
            return
        while self.server._answers():   # the old server, until it stops
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not restart:\n{self.server.log()}")
            time.sleep(0.1)
        self.server._wait_answering(max(1.0, deadline - time.monotonic()))


@contextlib.contextmanager
def pool_hosts(tmp_path_factory, count: int, slot: int = 0, migration: bool = False,
               env: dict | None = None, host_options: list[dict] | None = None):
    """migration: each libvirtd also listens for its peers over TLS (certificates of a
    CA of the test's own, tests/pool_tls.py) with a host UUID of its own, and each
    server reaches its peers' daemons with its certificate (live migration).
    env: more environment for every server (settings, XAPI_...).
    host_options: per host, {"env": more environment for its server, "libvirtd": more
    PrivateLibvirtd arguments (e.g. lockd_leases)}."""
    tag = f"{os.getpid() % 10000}{slot}"
    ca = TestCA(str(tmp_path_factory.mktemp("pool-ca"))) if migration else None
    net = 10 + (os.getpid() + 11 * slot) % 200
    bridge = f"xpb{tag}"
    hosts: list[PoolHost] = []
    namespaces: list[str] = []
    sh("ip", "link", "add", bridge, "type", "bridge")
    try:
        sh("ip", "addr", "add", f"10.96.{net}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i in range(count):
            ns, address = f"xph{tag}{i}", f"10.96.{net}.{11 + i}"
            # A namespace of the same name just deleted frees its veth asynchronously:
            # the host end is taken down here so the name is free at once.
            sh("ip", "link", "del", f"xpv{tag}{i}", check=False)
            sh("ip", "netns", "add", ns)
            namespaces.append(ns)
            sh("ip", "link", "add", f"xpv{tag}{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "link", "set", f"xpv{tag}{i}", "master", bridge, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", f"10.96.{net}.1")
            data = str(tmp_path_factory.mktemp(f"pool-host{i}"))
            options = (host_options or [{}] * count)[i]
            server_env = {**FAST_HEARTBEATS, "XAPI_BOOT_DIRS": GUEST_CACHE, **(env or {}),
                          **options.get("env", {})}
            tls = {}
            if ca is not None:
                pki = ca.host_dir(ns, address)
                tls = {"libvirtd_conf": libvirtd_conf(pki, str(uuid.uuid4())),
                       "qemu_conf": qemu_conf(pki), "listen": True}
                server_env["XAPI_MIGRATION_PEER_URI"] = \
                    "qemu+tls://{address}/system?pkipath=" + pki
            libvirtd = PrivateLibvirtd(os.path.join(data, "libvirt"), netns=ns,
                                       **tls, **options.get("libvirtd", {})).start()
            url = cluster().new_database(f"pool{tag}") if i == 0 else ""
            server = ServerProcess(os.path.join(data, "xapi"), port=PORT, netns=ns,
                                   host=address, libvirt_uri=libvirtd.uri,
                                   database_url=url, env=server_env)
            hosts.append(PoolHost(ns, address, server, libvirtd))
        _start_all([h.server for h in hosts])
        yield hosts
    finally:
        for host in hosts:
            host.server.kill()
            host.libvirtd.stop()
        for ns in namespaces:   # also one whose host never started
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", bridge, check=False)


@contextlib.contextmanager
def joined_pool(tmp_path_factory, count: int, **options):
    """pool_hosts (same options) with every other host joined to the first."""
    with pool_hosts(tmp_path_factory, count, **options) as made:
        for member in made[1:]:
            restarts = member.restarts()
            member.session().xenapi.pool.join(made[0].address, "root", ROOT_PASSWORD)
            member.wait_restarted(before=restarts)
        yield made


def _start_all(servers: list[ServerProcess], timeout: float = 90):
    for server in servers:
        server.start_nowait()
    for server in servers:
        server.wait_started(timeout)


def login_fails_with(host: PoolHost) -> list:
    """The XenAPI failure a root login on the host gets (the official SDK)."""
    try:
        host.server.session()
    except XenAPI.Failure as exc:
        return exc.details
    raise AssertionError(f"{host.name} accepted a login")


__all__ = ["PoolHost", "pool_hosts", "joined_pool", "login_fails_with", "ROOT_PASSWORD"]
