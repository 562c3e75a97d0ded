"""Pool HA membership (issue 18), services/pool/ha_members.py on three hosts configured
by scripts/pool-ha-setup.sh (tests/ha_harness.py, setup_script=True: TLS everywhere,
passwords from the pool secret): the leader's host leaves (switchover, its Patroni
stopped, its member key and then its etcd member removed); the two left keep a
healthy etcd quorum of two and one synchronous replica; the host comes back with
`pool-ha-setup.sh --join`, as an etcd learner promoted once caught up, and Patroni
rebuilds its replica. Also Patroni's watchdog: what this machine can and cannot show.
"""
from __future__ import annotations

import os
import re
import shutil
import signal

import pytest

from ha_harness import PG_BIN, SETUP_SCRIPT, sh
from ha_shared import shared_cluster
from waiting import wait_for
from xapi_server.services.pool import ha_members
from xapi_server.services.pool.ha_members import Etcd, Patroni, Tls


LEFT = {}   # the host the leave test took out, for the rejoin test


# Its tests end with the three hosts members again: test_pool_ha_setup.py goes on
# on the same cluster (tests/ha_shared.py).
ha = shared_cluster(__name__, slot=5, setup_script=True)


def secret_of(ha) -> str:
    with open(os.path.join(os.path.dirname(ha.nodes[0].dir), "pool-secret")) as f:
        return f.read()


def tls_of(node) -> Tls:
    tls = os.path.dirname(node.ca)
    return Tls(node.ca, os.path.join(tls, "host.pem"), os.path.join(tls, "host.key"))


def clients(ha, nodes):
    """etcd and Patroni as the first of `nodes` reaches them."""
    tls = tls_of(nodes[0])
    return (Etcd([n.address for n in nodes], tls),
            Patroni(nodes[0].api, nodes[0].ca, secret_of(ha)))


def _argv(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def stop_patroni(ha, node):
    """What `systemctl stop patroni` does on a host: SIGTERM to Patroni, which stops
    its PostgreSQL first."""
    def patronis():
        found = []
        for pid in ha.pids(node):
            argv = _argv(pid)
            if any(a.endswith(b"/patroni") or a == b"patroni" for a in argv[:2]) \
                    and b"runuser" not in argv[0]:
                found.append(pid)
        return found
    for pid in patronis():
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not patronis(), 60, f"Patroni of {node.name} stopped")
    # ... and its PostgreSQL with it, never left running behind it
    postgres = [p for p in ha.pids(node) if _argv(p)[:1] == [f"{PG_BIN}/postgres".encode()]]
    assert not postgres, f"{node.name}: PostgreSQL left running after Patroni stopped"


def rows(ha, leader):
    with ha.connect_node(leader) as conn:
        return conn.execute("SELECT application_name, client_addr, state, sync_state "
                            "FROM pg_stat_replication").fetchall()


def test_watchdog_configured_for_real_hosts(ha):
    """The script gives Patroni `watchdog: mode: automatic`: a host with /dev/watchdog
    (hardware, or the softdog the script loads) arms it while it leads. This machine
    (a container: no /dev/watchdog, no kernel modules) cannot show the watchdog
    resetting a hung leader; what it shows is that Patroni tried to open the device and,
    in automatic mode, still leads without it."""
    leader = ha.wait_leader()
    with open(leader.patroni_config) as f:
        config = f.read()
    assert re.search(r"watchdog:\n  mode: automatic\n  device: /dev/watchdog\n", config)
    def whole_log():
        with open(os.path.join(leader.dir, "patroni.log"), errors="replace") as f:
            return f.read()
    log = wait_for(lambda: "watchdog" in whole_log().lower() and whole_log(), 30,
                   "Patroni's log mentions the watchdog")
    if os.path.exists("/dev/watchdog"):
        assert "could not activate" not in log.lower()
    else:
        assert re.search(r"(?i)could not activate.*watchdog|watchdog.*no such file", log)
    root = os.path.dirname(os.path.dirname(os.path.dirname(leader.patroni_config)))
    with open(os.path.join(root, "etc/modules-load.d/xapi-py-softdog.conf")) as f:
        assert f.read().strip() == "softdog"


def test_leader_leaves_two_keep_quorum_and_one_sync_replica(ha):
    leaving = ha.wait_leader()
    ha.wait_sync_standby(120)   # the switchover's candidate, with every commit
    rest = [n for n in ha.nodes if n is not leaving]
    etcd, _ = clients(ha, rest)
    assert len(etcd.members()) == 3
    LEFT["node"] = leaving
    stopped = []

    def stop_service(service):   # what ha_service_stop_command does on a host
        stopped.append(service)
        if service == "patroni":
            stop_patroni(ha, leaving)
    # What pool.eject runs on the host, from its settings (patroni_url, the pool CA).
    removed = ha_members.leave_host(leaving.api, leaving.ca, secret_of(ha), stop_service)
    assert removed == 1 and stopped == ["patroni", "etcd"]
    members = etcd.members()
    assert sorted(m.name for m in members) == sorted(n.name for n in rest)
    assert not any(m.learner for m in members)
    assert all(etcd.healthy(n.address) for n in rest)     # a quorum of two
    # Removed from the cluster, its etcd stops by itself.
    etcd_proc = leaving.procs[0]
    wait_for(lambda: etcd_proc.poll() is not None, 30, "the removed etcd exits")
    # Patroni: a new leader among the two, the other its synchronous standby, and its
    # member gone from the view at once (its key deleted, not left to expire).
    new = ha.wait_leader(60, not_this=leaving)
    assert new in rest
    view = ha_members.Patroni(new.api, new.ca, "").members()
    assert sorted(m["name"] for m in view) == sorted(n.name for n in rest)
    standby = ha.wait_sync_standby(60)
    assert standby in {n.name for n in rest} - {new.name}
    wait_for(lambda: [r[0] for r in rows(ha, new)] == [standby], 60,
             f"one replica streaming, {standby}")
    with ha.connect() as conn:   # synchronous commit with two hosts
        conn.execute("CREATE TABLE IF NOT EXISTS after_leave (x int)")
        conn.execute("INSERT INTO after_leave VALUES (1)")


def test_host_rejoins_as_learner_then_voter(ha):
    """The host that left (its data wiped, as pool.eject leaves it) joins again with
    `pool-ha-setup.sh --join`: a learner first, a voter once etcd promotes it."""
    leader = ha.wait_leader()
    gone = LEFT["node"]
    ha.kill9(gone)   # whatever of it is left (its runuser)
    rest = [n for n in ha.nodes if n is not gone]
    shutil.rmtree(os.path.join(gone.dir, "var"))
    # The same list, in the same order, as every host was set up with: its files are
    # then those of a first install (test_pool_ha_setup.py, next on this cluster,
    # compares the hosts' password files).
    members = ",".join(f"{n.name}={n.address}" for n in ha.nodes)
    secret = os.path.join(os.path.dirname(gone.dir), "pool-secret")
    sh("bash", SETUP_SCRIPT, "--name", gone.name, "--address", gone.address,
       "--members", members, "--secret-file", secret, "--ca-dir", "/pool-ca",
       "--root", gone.dir, "--allow", f"{ha._gateway}/32", "--join")
    with open(gone.etcd_config) as f:
        assert "initial-cluster-state: 'existing'" in f.read()
    etcd, _ = clients(ha, rest)
    learner = ha_members.add_to_etcd(etcd, gone.address, lambda: ha.start_etcd(gone))
    assert learner.learner
    members = etcd.members()
    assert len(members) == 3 and not any(m.learner for m in members)
    assert all(etcd.healthy(n.address) for n in ha.nodes)
    # A second add of the same host is refused, not a fourth member.
    with pytest.raises(ha_members.MembershipError, match="already"):
        ha_members.add_to_etcd(etcd, gone.address, lambda: None)
    ha.start_patroni(gone)
    # Its replica built by Patroni (pg_basebackup) and streaming under its own name.
    others = {n.name for n in ha.nodes if n is not leader}
    wait_for(lambda: {r[0] for r in rows(ha, leader) if r[2] == "streaming"} == others,
             120, f"replicas {others} streaming again")
    with ha.connect_node(gone) as conn:
        wait_for(lambda: conn.execute("SELECT count(*) FROM after_leave").fetchone()[0],
                 60, "the rejoined replica has the write made without it")
