"""Pool HA with the servers (issue 18): three hosts, each in its own network namespace
running etcd, Patroni + PostgreSQL 15 (tests/ha_harness.py), its own libvirtd and its
own server. The coordinator is the host of Patroni's leader, on the replicated pool
database; the two others joined it. Writers record every acknowledged write; the
coordinator's namespace is killed (kill -9 of every process in it); a new coordinator
must serve within the bound with every acknowledged write, the other member must send
clients to it (HOST_IS_SLAVE), and event tokens must not go backwards."""
from __future__ import annotations

import os
import threading
import time

import pytest

from ha_harness import ha_cluster
from pool_harness import FAST_HEARTBEATS, PORT, PoolHost, login_fails_with
from private_libvirtd import PrivateLibvirtd
from serverproc import GUEST_CACHE, ROOT_PASSWORD, ServerProcess

FAILOVER_BOUND = 30.0


@pytest.fixture(scope="module")
def pool(tmp_path_factory):
    with ha_cluster(slot=2) as ha:
        leader = ha.wait_leader(120)
        ha.wait_sync_standby(120)
        url = ha.new_database("xapi_pool")
        hosts: dict[str, PoolHost] = {}
        try:
            for node in ha.nodes:
                data = str(tmp_path_factory.mktemp(f"ha-{node.name}"))
                libvirtd = PrivateLibvirtd(os.path.join(data, "libvirt"),
                                           netns=node.name).start()
                env = {**FAST_HEARTBEATS, "XAPI_BOOT_DIRS": GUEST_CACHE,
                       "XAPI_PATRONI_URL": node.api, "XAPI_HA_DATABASE_URL": url,
                       "XAPI_HA_POLL_INTERVAL": "0.5"}
                server = ServerProcess(os.path.join(data, "xapi"), port=PORT,
                                       netns=node.name, host=node.address,
                                       libvirt_uri=libvirtd.uri, env=env,
                                       database_url=url if node is leader else "")
                hosts[node.name] = PoolHost(node.name, node.address, server, libvirtd)
            for host in hosts.values():
                host.server.start_nowait()
            for host in hosts.values():
                host.server.wait_started(120)
            for node in ha.nodes:
                if node is not leader:
                    joiner = hosts[node.name]
                    joiner.session().xenapi.pool.join(leader.address, "root", ROOT_PASSWORD)
                    joiner.wait_restarted()
            yield ha, hosts
        finally:
            for host in hosts.values():
                host.server.kill()
                host.libvirtd.stop()


def coordinator_of(hosts) -> PoolHost | None:
    for host in hosts.values():
        try:
            host.server.session().xenapi.session.logout()
            return host
        except Exception:   # HOST_IS_SLAVE, or not answering (restarting, killed)
            continue
    return None


class Writers:
    """Clients each creating networks one by one; every acknowledged name is kept."""

    def __init__(self, host: PoolHost, count: int):
        self.acked: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(host, i), daemon=True)
                        for i in range(count)]

    def _run(self, host: PoolHost, n: int):
        x = host.session().xenapi
        i = 0
        while not self.stop.is_set():
            name = f"ha-w{n}-{i}"
            try:
                x.network.create({"name_label": name, "name_description": "",
                                  "other_config": {}, "MTU": "1500", "tags": []})
            except Exception:   # the coordinator died under the call: not acknowledged
                return
            self.acked.append(name)
            i += 1

    def run_while(self, action):
        """Writers running, `action()` (the crash), then the writers end."""
        for t in self.threads:
            t.start()
        try:
            return action()
        finally:
            self.stop.set()
            for t in self.threads:
                t.join(30)


def test_coordinator_killed_new_one_serves_with_every_acknowledged_write(pool):
    ha, hosts = pool
    old = ha.leader()
    coordinator = hosts[old.name]
    assert coordinator_of(hosts) is coordinator
    for name, host in hosts.items():
        if host is not coordinator:
            assert login_fails_with(host) == ["HOST_IS_SLAVE", coordinator.address]
    x = coordinator.session().xenapi
    token_before = getattr(x.event, "from")(["network"], "", 0.0)["token"]
    writers = Writers(coordinator, 3)

    def crash():
        time.sleep(3)
        ha.kill9(old)
        return time.monotonic()

    killed_at = writers.run_while(crash)
    assert len(writers.acked) > 5, "the writers got nothing through"
    new = promoted = None
    while new is None and time.monotonic() - killed_at < FAILOVER_BOUND + 60:
        if promoted is None and ha.leader() not in (None, old):
            promoted = time.monotonic() - killed_at
        new = coordinator_of({k: h for k, h in hosts.items() if k != old.name})
        time.sleep(0.2)
    assert new is not None, "\n".join(h.server.log()[-3000:] for h in hosts.values())
    failover = time.monotonic() - killed_at
    print(f"\nfailover: the coordinator's host killed, a new coordinator serves after "
          f"{failover:.1f} s (Patroni's new leader after {promoted or failover:.1f} s; "
          f"{len(writers.acked)} acknowledged writes)")
    assert new.name == ha.wait_leader(not_this=old).name   # Patroni's leader's host
    x = new.session().xenapi
    names = {r["name_label"] for r in x.network.get_all_records().values()}
    lost = [n for n in writers.acked if n not in names]
    assert not lost, f"acknowledged but lost: {lost[:10]}"
    pool_ref = x.pool.get_all()[0]
    assert x.host.get_address(x.pool.get_master(pool_ref)) == new.address
    token_after = getattr(x.event, "from")(["network"], "", 0.0)["token"]
    assert int(token_after.split(",")[0]) > int(token_before.split(",")[0])
    other = next(h for k, h in hosts.items() if k not in (old.name, new.name))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if login_fails_with(other) == ["HOST_IS_SLAVE", new.address]:
                break
        except (OSError, AssertionError):
            pass
        time.sleep(0.3)
    assert login_fails_with(other) == ["HOST_IS_SLAVE", new.address]
    assert failover < FAILOVER_BOUND


def test_the_old_coordinator_comes_back_as_a_member(pool):
    """After the crash above: the dead host starts again (etcd, Patroni, libvirtd,
    server); Patroni's leader is elsewhere, so its server starts as a member of the
    leader's host, never as a second coordinator, and is live again by its heartbeats."""
    ha, hosts = pool
    leader = ha.wait_leader()
    coordinator = hosts[leader.name]
    dead = [node for node in ha.nodes if not node.procs]
    assert len(dead) == 1, "the test above left one host down"
    node, back = dead[0], hosts[dead[0].name]
    ha.start_node(node)
    deadline = time.monotonic() + 90
    while (node.status() or {}).get("role") != "replica" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert (node.status() or {}).get("role") == "replica", node.log()
    back.libvirtd.ensure_running()
    back.server.start(120)
    assert login_fails_with(back) == ["HOST_IS_SLAVE", coordinator.address]
    x = coordinator.session().xenapi
    me = [h for h, r in x.host.get_all_records().items() if r["address"] == back.address]
    assert len(me) == 1 and me[0] != x.pool.get_master(x.pool.get_all()[0])
    metrics = x.host.get_metrics(me[0])
    deadline = time.monotonic() + 30
    while not x.host_metrics.get_live(metrics) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert x.host_metrics.get_live(metrics)


def test_hung_coordinator_is_replaced_and_never_writes_again(pool):
    """SIGSTOP of everything on the coordinator's host (a hung host): another host
    takes over; once the hung one runs again, no write of its own is acknowledged
    (its database refuses it, it is deposed) and it sends clients to the new one."""
    ha, hosts = pool
    old = ha.wait_leader()
    ha.wait_sync_standby()
    coordinator = hosts[old.name]
    assert coordinator_of(hosts) is coordinator
    writers = Writers(coordinator, 2)
    late: list = []

    def hang_then_wake():
        time.sleep(2)
        ha.freeze(old)
        frozen_at = time.monotonic()
        new = None
        while new is None and time.monotonic() - frozen_at < FAILOVER_BOUND + 60:
            new = coordinator_of({k: h for k, h in hosts.items() if k != old.name})
            time.sleep(0.3)
        late.append((new, time.monotonic() - frozen_at))
        ha.thaw(old)

    writers.run_while(hang_then_wake)
    new, failover = late[0]
    assert new is not None, "\n".join(h.server.log()[-3000:] for h in hosts.values())
    print(f"\nfailover: the coordinator's host hung, a new coordinator serves after "
          f"{failover:.1f} s")
    # The woken host: its writes are refused (or it already sends clients on).
    try:
        coordinator.session().xenapi.network.create(
            {"name_label": "after-wake", "name_description": "", "other_config": {},
             "MTU": "1500", "tags": []})
        woke_wrote = True
    except Exception:
        woke_wrote = False
    # Patroni may move on again meanwhile (a loaded machine, TTL 10 s), even back to
    # the woken host once it is a standby again: the pool must settle on the host of
    # Patroni's leader, every other host sending clients there.
    deadline, current, answers = time.monotonic() + 90, None, {}
    while time.monotonic() < deadline:
        leader = ha.leader()
        current = hosts[leader.name] if leader else None
        if current is not None and coordinator_of(hosts) is current:
            answers = {}
            for name, host in hosts.items():
                if host is not current:
                    try:
                        answers[name] = login_fails_with(host)
                    except (OSError, AssertionError) as exc:
                        answers[name] = str(exc)
            if all(a == ["HOST_IS_SLAVE", current.address] for a in answers.values()):
                break
        time.sleep(0.3)
    assert current is not None and answers and \
        all(a == ["HOST_IS_SLAVE", current.address] for a in answers.values()), \
        (answers, coordinator.server.log()[-3000:])
    if current is not new:
        print(f"(Patroni moved on again: {new.name} -> {current.name})")
    x = current.session().xenapi
    names = {r["name_label"] for r in x.network.get_all_records().values()}
    assert not woke_wrote and "after-wake" not in names
    lost = [n for n in writers.acked if n not in names]
    assert not lost, f"acknowledged but lost: {lost[:10]}"
    assert failover < FAILOVER_BOUND
