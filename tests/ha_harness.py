"""A replicated pool database on one machine, as three pool hosts would run it: three
network namespaces on a bridge, each running an etcd member (one 3-member cluster,
Patroni's consensus store) and Patroni managing a PostgreSQL 15 of its own, with
synchronous replication (`synchronous_mode` and `synchronous_mode_strict`: a commit
is acknowledged once a standby has flushed it, and never with no standby).

Everything comes from Debian's packages (etcd-server, patroni, postgresql-15). The test
reaches every node over the bridge; faults act on one namespace: `kill9` (every process
in it, as a crash of the host), `freeze`/`thaw` (SIGSTOP/SIGCONT, a hung host),
`link_down`/`link_up` (cut off).

    with ha_cluster() as ha:
        leader = ha.wait_leader()
        with ha.connect() as conn: ...      # libpq multi-host, read-write session
        ha.kill9(leader)
        new = ha.wait_leader(not_this=leader)
"""
from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

import psycopg

PG_BIN = "/usr/lib/postgresql/15/bin"
PG_PORT, PATRONI_PORT, ETCD_CLIENT, ETCD_PEER = 5432, 8008, 2379, 2380
SUPERUSER_PASSWORD = "ha-test-superuser"
REPLICATION_PASSWORD = "ha-test-replication"
# Timings for a test (Patroni's rule: loop_wait + 2 * retry_timeout <= ttl): a leader
# that stops renewing its key loses it after `ttl` seconds.
TTL, LOOP_WAIT, RETRY_TIMEOUT = 10, 1, 4
SETUP_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "scripts", "pool-ha-setup.sh")
SCRIPT_ETCD, SCRIPT_PATRONI = ("etc", "etcd", "etcd.yml"), ("etc", "patroni", "config.yml")


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, check=check).stdout


@dataclass
class HaNode:
    name: str        # Patroni's member name and the network namespace's
    address: str
    dir: str
    procs: list = field(default_factory=list)   # etcd, patroni (Popen)
    ca: str = ""     # the pool CA its https REST API is checked against ("": http)

    @property
    def api(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.address}:{PATRONI_PORT}"

    @property
    def etcd_config(self) -> str:
        return os.path.join(self.dir, *(SCRIPT_ETCD if self.ca else ("etcd.yml",)))

    @property
    def patroni_config(self) -> str:
        return os.path.join(self.dir, *(SCRIPT_PATRONI if self.ca else ("patroni.yml",)))

    def get(self, path: str, timeout: float = 2):
        """GET from its Patroni REST API."""
        context = ssl.create_default_context(cafile=self.ca) if self.ca else None
        return urllib.request.urlopen(f"{self.api}{path}", timeout=timeout, context=context)

    def status(self, timeout: float = 2) -> dict | None:
        """Patroni's view of this node (GET /patroni), None if it does not answer."""
        try:
            with self.get("/patroni", timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as exc:   # 503 on a replica: still a JSON body
            try:
                return json.load(exc)
            except ValueError:
                return None
        except (OSError, ValueError):
            return None

    def log(self, which: str = "patroni") -> str:
        try:
            with open(os.path.join(self.dir, f"{which}.log"), errors="replace") as f:
                return f.read()[-3000:]
        except FileNotFoundError:
            return ""


class HaCluster:
    def __init__(self, nodes: list[HaNode], scope: str):
        self.nodes, self.scope = nodes, scope
        self.password, self.ssl = SUPERUSER_PASSWORD, ""   # libpq: how to log in
        self.setup_output = ""   # what scripts/pool-ha-setup.sh printed (its xapi.toml)

    # -- connections ---------------------------------------------------------------

    def url(self, dbname: str = "postgres", *, nodes: list[HaNode] | None = None,
            read_write: bool = True) -> str:
        """libpq multi-host URL over every node (or `nodes`); read_write: only the
        primary is accepted (target_session_attrs=read-write)."""
        hosts = ",".join(f"{n.address}:{PG_PORT}" for n in (nodes or self.nodes))
        attrs = "&target_session_attrs=read-write" if read_write else ""
        return (f"postgresql://postgres:{self.password}@{hosts}/{dbname}"
                f"?connect_timeout=3{attrs}{self.ssl}")

    def connect(self, dbname: str = "postgres", **kw) -> psycopg.Connection:
        return psycopg.connect(self.url(dbname, **kw), autocommit=True)

    def connect_node(self, node: HaNode, dbname: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(self.url(dbname, nodes=[node], read_write=False),
                               autocommit=True)

    def new_database(self, name: str) -> str:
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    # -- roles ---------------------------------------------------------------------

    def leader(self) -> HaNode | None:
        """The node Patroni's answering members agree runs the primary, else None."""
        seen = set()
        for node in self.nodes:
            st = node.status()
            if st and st.get("role") in ("master", "primary") and st.get("state") == "running":
                seen.add(node.name)
        if len(seen) != 1:
            return None
        return next(n for n in self.nodes if n.name in seen)

    def wait_leader(self, timeout: float = 90, not_this: HaNode | None = None) -> HaNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.leader()
            if node is not None and node is not not_this:
                return node
            time.sleep(0.2)
        raise AssertionError(f"no leader in {timeout}s:\n" +
                             "\n".join(f"--- {n.name}\n{n.log()}" for n in self.nodes))

    def cluster_view(self) -> list[dict]:
        """Patroni's member list (GET /cluster) from the first node that answers."""
        for node in self.nodes:
            with contextlib.suppress(OSError, ValueError):
                with node.get("/cluster") as r:
                    return json.load(r).get("members", [])
        return []

    def etcd_leader(self) -> HaNode | None:
        """The node whose etcd member leads etcd, as the first member that answers
        says (plain-HTTP clusters only), None if none answers or sees a leader."""
        for node in self.nodes:
            request = urllib.request.Request(
                f"http://{node.address}:{ETCD_CLIENT}/v3/maintenance/status", b"{}",
                method="POST")
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(request, timeout=2) as r:
                    leader = str(json.load(r).get("leader", ""))
                with urllib.request.urlopen(urllib.request.Request(
                        f"http://{node.address}:{ETCD_CLIENT}/v3/cluster/member/list",
                        b"{}", method="POST"), timeout=2) as r:
                    members = json.load(r).get("members", [])
                names = [m.get("name") for m in members if str(m.get("ID")) == leader]
                return next((n for n in self.nodes if names and n.name == names[0]), None)
        return None

    def wait_sync_standby(self, timeout: float = 90) -> str:
        """The name of the synchronous standby, once Patroni has made one and the
        primary's WAL sender to it is synchronous."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            names = [m["name"] for m in self.cluster_view() if m.get("role") == "sync_standby"]
            with contextlib.suppress(psycopg.Error):
                with self.connect() as conn:
                    sync = {r[0] for r in conn.execute(
                        "SELECT application_name FROM pg_stat_replication "
                        "WHERE sync_state = 'sync'")}
                if names and names[0] in sync:
                    return names[0]
            time.sleep(0.3)
        raise AssertionError(f"no synchronous standby: {self.cluster_view()}\n" +
                             "\n".join(f"--- {n.name}\n{n.log()}" for n in self.nodes))

    def replicas_streaming(self, leader: HaNode) -> int:
        with self.connect_node(leader) as conn:
            return conn.execute("SELECT count(*) FROM pg_stat_replication "
                                "WHERE state = 'streaming'").fetchone()[0]

    def node(self, name: str) -> HaNode:
        return next(n for n in self.nodes if n.name == name)

    # -- faults --------------------------------------------------------------------

    def pids(self, node: HaNode) -> list[int]:
        return [int(p) for p in sh("ip", "netns", "pids", node.name, check=False).split()]

    def kill9(self, node: HaNode):
        """A crash of the host: every process in its namespace, SIGKILL."""
        for pid in self.pids(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in node.procs:
            proc.wait()
        node.procs.clear()

    def freeze(self, node: HaNode, sig=signal.SIGSTOP):
        for pid in self.pids(node):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def thaw(self, node: HaNode):
        self.freeze(node, signal.SIGCONT)

    def cut_inbound(self, node: HaNode):
        """A one-way partition (nftables in its namespace): nothing the other nodes
        send reaches `node`, while what it sends still reaches them; the test's own
        traffic (from the bridge's address) passes both ways."""
        peers = ", ".join(n.address for n in self.nodes if n is not node)
        nft = ("ip", "netns", "exec", node.name, "nft")
        sh(*nft, "add", "table", "inet", "xapi_cut")
        sh(*nft, "add", "chain", "inet", "xapi_cut", "inbound",
           "{ type filter hook input priority 0; policy accept; }")
        sh(*nft, "add", "rule", "inet", "xapi_cut", "inbound", "ip", "saddr",
           f"{{ {peers} }}", "drop")

    def heal_inbound(self, node: HaNode):
        sh("ip", "netns", "exec", node.name, "nft", "delete", "table", "inet", "xapi_cut")

    def link_down(self, node: HaNode):
        sh("ip", "-n", node.name, "link", "set", "eth0", "down")

    def link_up(self, node: HaNode):
        sh("ip", "-n", node.name, "link", "set", "eth0", "up")
        sh("ip", "-n", node.name, "route", "replace", "default", "via", self._gateway)

    def start_node(self, node: HaNode):
        """etcd and Patroni of the node (again, after kill9: same data dirs)."""
        node.procs = []
        self.start_etcd(node)
        self.start_patroni(node)

    def start_etcd(self, node: HaNode):
        node.procs.append(_spawn(node, "etcd", ["etcd", "--config-file", node.etcd_config]))

    def start_patroni(self, node: HaNode):
        node.procs.append(_spawn(node, "patroni", ["runuser", "-u", "postgres", "--",
                                                   "patroni", node.patroni_config]))

    _gateway = ""


def _spawn(node: HaNode, name: str, argv: list[str]) -> subprocess.Popen:
    log = open(os.path.join(node.dir, f"{name}.log"), "ab")
    try:
        return subprocess.Popen(["ip", "netns", "exec", node.name, *argv], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()


def _etcd_config(node: HaNode, nodes: list[HaNode], token: str) -> dict:
    peers = ",".join(f"{n.name}=http://{n.address}:{ETCD_PEER}" for n in nodes)
    return {"name": node.name, "data-dir": os.path.join(node.dir, "etcd"),
            "listen-peer-urls": f"http://{node.address}:{ETCD_PEER}",
            "initial-advertise-peer-urls": f"http://{node.address}:{ETCD_PEER}",
            "listen-client-urls": f"http://{node.address}:{ETCD_CLIENT},"
                                  f"http://127.0.0.1:{ETCD_CLIENT}",
            "advertise-client-urls": f"http://{node.address}:{ETCD_CLIENT}",
            "initial-cluster": peers, "initial-cluster-state": "new",
            "initial-cluster-token": token, "heartbeat-interval": 100,
            "election-timeout": 1000, "enable-v2": False,
            # A member that hears nobody (a one-way partition) asks first whether it
            # could win before starting an election: without it, its ever higher
            # terms unseat the leader of the two that still hear each other.
            "pre-vote": True,
            # a config file leaves the gRPC gateway off; Patroni speaks the v3 JSON API
            "enable-grpc-gateway": True}


def _patroni_config(node: HaNode, nodes: list[HaNode], scope: str, subnet: str) -> dict:
    return {
        "scope": scope, "name": node.name,
        "log": {"level": "INFO"},
        "restapi": {"listen": f"{node.address}:{PATRONI_PORT}",
                    "connect_address": f"{node.address}:{PATRONI_PORT}"},
        "etcd3": {"hosts": [f"{n.address}:{ETCD_CLIENT}" for n in nodes]},
        "bootstrap": {
            "dcs": {"ttl": TTL, "loop_wait": LOOP_WAIT, "retry_timeout": RETRY_TIMEOUT,
                    "synchronous_mode": True, "synchronous_mode_strict": True,
                    "postgresql": {"use_pg_rewind": True, "parameters": {
                        "synchronous_commit": "on", "wal_log_hints": "on",
                        "max_connections": 40, "shared_buffers": "16MB",
                        "max_wal_senders": 6, "max_replication_slots": 6,
                        "wal_keep_size": "64MB", "fsync": "on",
                        # a replica whose primary went away retries streaming
                        # this often (5 s by default): the new primary's first
                        # synchronous commit waits for its standby's retry
                        "wal_retrieve_retry_interval": "500ms"}}},
            "initdb": [{"encoding": "UTF8"}, {"auth-local": "trust"}]},
        "postgresql": {
            "listen": f"{node.address}:{PG_PORT}",
            "connect_address": f"{node.address}:{PG_PORT}",
            "data_dir": os.path.join(node.dir, "pgdata"),
            "bin_dir": PG_BIN,
            "pgpass": os.path.join(node.dir, "pgpass"),
            "authentication": {
                "superuser": {"username": "postgres", "password": SUPERUSER_PASSWORD},
                "replication": {"username": "replicator",
                                "password": REPLICATION_PASSWORD},
                "rewind": {"username": "postgres", "password": SUPERUSER_PASSWORD}},
            "parameters": {"unix_socket_directories": node.dir},
            "pg_hba": ["local all all trust",
                       f"host replication replicator {subnet} scram-sha-256",
                       f"host all all {subnet} scram-sha-256"]},
        "tags": {"nofailover": False, "noloadbalance": False},
    }


@contextlib.contextmanager
def ha_cluster(count: int = 3, slot: int = 0, setup_script: bool = False):
    """setup_script: configured by scripts/pool-ha-setup.sh (TLS everywhere, passwords
    from a pool secret) instead of the plain test configuration below."""
    tag = f"{os.getpid() % 10000}{slot}"
    net = 10 + (os.getpid() + 13 * slot) % 200
    bridge, subnet = f"xhb{tag}", f"10.97.{net}.0/24"
    base = tempfile.mkdtemp(prefix="xapi-ha-")
    owner = pwd.getpwnam("postgres")
    os.chmod(base, 0o755)
    nodes: list[HaNode] = []
    cluster = HaCluster(nodes, f"xha{tag}")
    cluster._gateway = f"10.97.{net}.1"
    sh("ip", "link", "add", bridge, "type", "bridge")
    try:
        sh("ip", "addr", "add", f"10.97.{net}.1/24", "dev", bridge)
        sh("ip", "link", "set", bridge, "up")
        for i in range(count):
            ns = f"xhh{tag}{i}"
            node = HaNode(ns, f"10.97.{net}.{11 + i}", os.path.join(base, ns))
            os.mkdir(node.dir, 0o700)
            os.chown(node.dir, owner.pw_uid, owner.pw_gid)
            _plug(ns, f"xhv{tag}{i}", bridge, node.address, cluster._gateway)
            nodes.append(node)
        _name_the_nodes(nodes)
        if setup_script:
            _run_setup_script(cluster, base)
        for node in nodes if not setup_script else ():
            _write_yaml(os.path.join(node.dir, "etcd.yml"),
                        _etcd_config(node, nodes, cluster.scope))
            _write_yaml(os.path.join(node.dir, "patroni.yml"),
                        _patroni_config(node, nodes, cluster.scope, subnet))
            for name in ("etcd.yml", "patroni.yml"):
                os.chown(os.path.join(node.dir, name), owner.pw_uid, owner.pw_gid)
        for node in nodes:
            cluster.start_node(node)
        yield cluster
    finally:
        for node in nodes:
            cluster.thaw(node)
            cluster.kill9(node)
        for node in nodes:
            sh("ip", "netns", "del", node.name, check=False)
            shutil.rmtree(os.path.join(NETNS_ETC, node.name), ignore_errors=True)
        sh("ip", "link", "del", bridge, check=False)
        shutil.rmtree(base, ignore_errors=True)


def _run_setup_script(cluster: HaCluster, base: str):
    """Each node configured by the install script under its own root (the first makes
    the pool CA, the others get a copy of it, as an operator would copy it)."""
    secret = os.path.join(base, "pool-secret")
    with open(secret, "w") as f:
        f.write(secrets.token_hex(24))
    members = ",".join(f"{n.name}={n.address}" for n in cluster.nodes)
    for i, node in enumerate(cluster.nodes):
        if i:
            shutil.copytree(os.path.join(cluster.nodes[0].dir, "pool-ca"),
                            os.path.join(node.dir, "pool-ca"))
        cluster.setup_output = sh(
            "bash", SETUP_SCRIPT, "--name", node.name, "--address", node.address,
            "--members", members, "--secret-file", secret, "--ca-dir", "/pool-ca",
            "--root", node.dir, "--allow", f"{cluster._gateway}/32",   # the test's own
            *(["--new-ca"] if i == 0 else []))
        node.ca = os.path.join(node.dir, "etc/xapi-py/pool-ha/ca.pem")
    with open(os.path.join(cluster.nodes[0].dir, "etc/xapi-py/pool-ha.pgpass")) as f:
        cluster.password = f.readline().strip().rsplit(":", 1)[1]
    cluster.ssl = f"&sslmode=verify-ca&sslrootcert={cluster.nodes[0].ca}"


def _plug(ns: str, veth: str, bridge: str, address: str, gateway: str):
    """A namespace whose eth0 hangs off the bridge, with its address and a route out."""
    for argv in (f"netns add {ns}",
                 f"link add {veth} type veth peer name eth0 netns {ns}",
                 f"link set {veth} master {bridge} up",
                 f"-n {ns} link set lo up",
                 f"-n {ns} addr add {address}/24 dev eth0",
                 f"-n {ns} link set eth0 up",
                 f"-n {ns} route add default via {gateway}"):
        sh("ip", *argv.split())


# `ip netns exec NAME` mounts the files of /etc/netns/NAME over those of /etc.
NETNS_ETC = "/etc/netns"


def _name_the_nodes(nodes: list[HaNode]):
    """Every node's /etc/hosts names each node's address, as a real pool host's does.
    No name server answers inside the namespaces (their route out ends at the bridge),
    and Patroni's REST API looks its own address up (socket.getfqdn) as it starts: in
    DNS alone that lookup gives up after 10 s, every start of every Patroni."""
    with open("/etc/hosts") as f:
        machine = f.read()
    names = "".join(f"{node.address} {node.name}\n" for node in nodes)
    for node in nodes:
        os.makedirs(os.path.join(NETNS_ETC, node.name), exist_ok=True)
        with open(os.path.join(NETNS_ETC, node.name, "hosts"), "w") as f:
            f.write(machine.rstrip("\n") + "\n" + names)


def _write_yaml(path: str, data: dict):
    # JSON is YAML: no YAML writer needed, and etcd and Patroni read it as their YAML.
    with open(path, "w") as f:
        json.dump(data, f, indent=1)


__all__ = ["HaCluster", "HaNode", "ha_cluster", "TTL"]
