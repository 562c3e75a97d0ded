"""The replicated pool database itself (tests/ha_harness.py: etcd + Patroni +
PostgreSQL 15 in three network namespaces): an acknowledged commit survives the crash
of the primary's host, and a new primary takes over within the bound."""
from __future__ import annotations

import json
import queue
import time
import urllib.request

import psycopg
import pytest

from ha_shared import shared_cluster
from xapi_server.services.pool import ha as pool_ha
from xapi_server.store._postgres import PgDatabase

FAILOVER_BOUND = 30.0


# Its tests leave the three nodes up with a synchronous standby: test_pool_ha.py builds
# its pool on the same cluster (tests/ha_shared.py).
cluster = shared_cluster(__name__, name="cluster", slot=2)


@pytest.fixture(scope="module")
def ha(cluster):
    cluster.wait_sync_standby(120)
    return cluster


def write_loop(ha, table: str, seconds: float, acked: list, start: int = 0):
    """Insert one row per commit for `seconds`, through the read-write multi-host URL,
    recording every id whose commit was acknowledged; reconnect after an error."""
    deadline, i, conn = time.monotonic() + seconds, start, None
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = ha.connect()
            conn.execute(f"INSERT INTO {table} VALUES (%s)", (i,))
            acked.append(i)
        except psycopg.Error:
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.1)
        i += 1
    if conn is not None:
        conn.close()
    return i


def test_synchronous_standby_configured(ha):
    leader = ha.wait_leader()
    with ha.connect_node(leader) as conn:
        assert conn.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        names = conn.execute("SHOW synchronous_standby_names").fetchone()[0]
    standby = ha.wait_sync_standby()
    assert standby != leader.name and standby in names


def test_killed_primary_replaced_and_no_acknowledged_write_lost(ha):
    leader = ha.wait_leader()
    with ha.connect() as conn:
        conn.execute("CREATE TABLE acked_kill (id INT PRIMARY KEY)")
    acked: list[int] = []
    nxt = write_loop(ha, "acked_kill", 2.0, acked)
    assert len(acked) > 10, "the writer got no commit through"
    killed_at = time.monotonic()
    ha.kill9(leader)
    # The writer keeps going; the first commit acknowledged after the crash is the
    # new primary serving.
    first_after = None
    while time.monotonic() - killed_at < FAILOVER_BOUND + 30:
        before = len(acked)
        nxt = write_loop(ha, "acked_kill", 0.5, acked, nxt)
        if len(acked) > before:
            first_after = time.monotonic()
            break
    assert first_after is not None, "no primary accepted a write after the crash"
    failover = first_after - killed_at
    new = ha.wait_leader(not_this=leader)
    print(f"\nfailover after kill -9 of the primary's host: {failover:.1f} s "
          f"({leader.name} -> {new.name}, {len(acked)} acknowledged commits)")
    with ha.connect_node(new) as conn:
        present = {r[0] for r in conn.execute("SELECT id FROM acked_kill")}
    missing = sorted(set(acked) - present)
    assert not missing, f"acknowledged but lost: {missing[:20]}"
    assert failover < FAILOVER_BOUND
    ha.start_node(leader)   # back as a replica of the new primary
    deadline = time.monotonic() + 90
    while (ha.replicas_streaming(new) < 2) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ha.replicas_streaming(new) == 2, leader.log()


def test_patroni_view_names_this_host_and_the_leader(ha):
    leader = ha.wait_leader()
    for node in ha.nodes:
        view = pool_ha.read_view(node.api)
        assert (view.me, view.my_address, view.leader, view.leader_address) == \
            (node.name, node.address, leader.name, leader.address)
        assert view.leader_is_me == (node is leader)
    with pytest.raises(pool_ha.PatroniUnreachable):
        pool_ha.read_view(f"http://{ha.nodes[0].address}:1")


class Answers:
    """The writer's answers, one per batch, in order."""

    def __init__(self):
        self.got: queue.Queue = queue.Queue()

    def __call__(self, batch_id, reason):
        self.got.put((batch_id, reason))

    def next(self):
        return self.got.get(timeout=60)


def test_demoted_primary_deposes_the_writer_for_good(ha):
    url = ha.new_database("deposed")
    db = PgDatabase(url)
    assert db.replicated and db.deposed is None
    answers = Answers()
    db.start(answers)
    try:
        db.submit(1, [("meta", "before", "1")])
        assert answers.next() == (1, None)
        old = ha.wait_leader()
        standby = ha.wait_sync_standby()
        body = json.dumps({"leader": old.name, "candidate": standby}).encode()
        req = urllib.request.Request(f"{old.api}/switchover", body, method="POST")
        with urllib.request.urlopen(req, timeout=60) as reply:
            assert reply.status == 200
        new = ha.wait_leader(not_this=old)
        db.submit(2, [("meta", "after", "1")])
        batch, reason = answers.next()
        assert batch == 2 and "no longer the writer of the replicated pool database" in reason
        assert db.deposed == reason
        # A reconnect would find the new primary: the writer stays deposed anyway.
        db.submit(3, [("meta", "later", "1")])
        assert answers.next() == (3, reason)
        with ha.connect_node(new, url.rsplit("/", 1)[1].split("?")[0]) as conn:
            keys = {k for (k,) in conn.execute("SELECT key FROM meta")}
        assert "before" in keys and not keys & {"after", "later"}
    finally:
        db.close()
