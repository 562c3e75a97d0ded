"""Pool HA lifecycle through the servers (issue 18): pool.eject of a member of an HA
pool, on a cluster of its own (slot 8; tests/ha_pool.py builds it the admin's way:
a pool on PostgreSQL, the offer, the Patroni settings, the move at restart).

Not on test_pool_ha.py's cluster: the eject takes a host out for good, so it would
run after that file's hung-coordinator test, after which Patroni 3.0.2 sometimes
can no longer write its synchronous standby's key ("updated by someone else"): no
synchronous standby, and the strict synchronous mode then takes no write."""
from __future__ import annotations

import time

from ha_pool import module_pool, wait_settled
from test_pool_ha import wait_whole
from xapi_server.services.pool import ha_members

BEFORE: dict = {}   # what the pool held on its first database (ha_pool)
pool = module_pool(8, BEFORE)


def test_eject_of_a_member_leaves_the_replicated_database(pool):
    """pool.eject through the SDK on the coordinator of an HA pool: the member runs the
    leaving steps (services/pool/ha_members.py: its Patroni stopped, its member key and
    its etcd member removed), leaves the pool's records and starts again standalone;
    the two hosts left keep the database with synchronous commit. The first
    coordinator is not ejected: its database_url names the copy of before the move,
    on which it would refuse to start (tests/test_pool_ha_move.py)."""
    ha, hosts = pool
    wait_whole(ha)
    coordinator, _ = wait_settled(ha, hosts)
    sync = ha.wait_sync_standby()
    members = sorted((h for h in hosts.values() if h is not coordinator
                      and h.name != BEFORE["coordinator"]),
                     key=lambda h: h.name == sync)   # the async replica first
    leaving = members[0]
    rest = [ha.node(h.name) for h in hosts.values() if h is not leaving]
    x = coordinator.session().xenapi
    ref = next(h for h in x.host.get_all() if x.host.get_address(h) == leaving.address)
    restarts = leaving.restarts()
    started = time.monotonic()
    x.pool.eject(ref)
    took = time.monotonic() - started
    print(f"\npool.eject of an HA pool's member: {took:.1f} s")
    assert sorted(x.host.get_address(h) for h in x.host.get_all()) == \
        sorted(n.address for n in rest)
    etcd = ha_members.Etcd([n.address for n in rest], None)
    assert sorted(m.name for m in etcd.members()) == sorted(n.name for n in rest)
    assert sorted(m["name"] for m in ha.cluster_view()) == sorted(n.name for n in rest)
    # The two left: a leader and its synchronous standby; a write acknowledged.
    assert ha.wait_sync_standby(60) in {n.name for n in rest}
    x.network.create({"name_label": "after-eject", "name_description": "",
                      "other_config": {}, "MTU": "1500", "tags": []})
    # The ejected host: standalone, a pool of its own.
    leaving.wait_restarted(120, before=restarts)
    y = leaving.session().xenapi
    assert [y.host.get_address(h) for h in y.host.get_all()] == [leaving.address]
    assert y.pool.get_master(y.pool.get_all()[0]) == y.host.get_all()[0]
