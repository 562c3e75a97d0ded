"""Three pool hosts on a replicated pool database (issue 18), for tests/test_pool_ha.py
and bench/bench_pool_ha.py: each host in its own network namespace running etcd,
Patroni + PostgreSQL 15 (tests/ha_harness.py), its own libvirtd and its own server.

The pool is made the admin's way (README "Pool HA"): its coordinator first on a
PostgreSQL of its own (tests/pg_server.py, over a UNIX socket every namespace sees),
on a host that is not Patroni's leader; the two others join it, the third join raises
the POOL_DATABASE_HA_AVAILABLE offer; then every server gets the Patroni settings and
is restarted: the coordinator moves the pool's records into the replicated database
and hands the pool to the host of Patroni's leader (api/pool_ha_enable.py).

    with ha_pool(tmp_path_factory, slot=2) as (ha, hosts):   # hosts: name -> PoolHost
        coordinator, answers = wait_settled(ha, hosts)
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import XenAPI

from ha_harness import ha_cluster
from ha_writers import CALL_TIMEOUT
from pg_server import cluster
from pool_harness import FAST_HEARTBEATS, PORT, PoolHost
from private_libvirtd import PrivateLibvirtd
from serverproc import GUEST_CACHE, ROOT_PASSWORD, ServerProcess

OFFER = "POOL_DATABASE_HA_AVAILABLE"
STOP_SERVICE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ha_stop_service.sh")


@contextlib.contextmanager
def ha_pool(tmp_path_factory, slot: int, before: dict | None = None, on=None):
    """tmp_path_factory: pytest's, or anything whose mktemp(name) gives a new dir.
    before: filled with what the pool held before the move: "coordinator" (the first
    host's name), "standalone" (its first database's URL), "ha_database" (the
    replicated one's), "offer" (the offer's body), "vm" (the uuid of a VM made
    then), "token" (an event.from token of then).
    on: a running HaCluster (plain configuration) to build on, else one of `slot`."""
    before = {} if before is None else before
    with (contextlib.nullcontext(on) if on else ha_cluster(slot=slot)) as ha:
        leader = ha.wait_leader(120)
        ha.wait_sync_standby(120)
        url = ha.new_database("xapi_pool")
        first = next(n for n in ha.nodes if n is not leader)
        standalone = cluster().new_database(f"prepool{os.getpid() % 10000}{slot}")
        hosts: dict[str, PoolHost] = {}
        try:
            for node in ha.nodes:
                data = str(tmp_path_factory.mktemp(f"ha-{node.name}"))
                libvirtd = PrivateLibvirtd(os.path.join(data, "libvirt"), netns=node.name)
                env = {**FAST_HEARTBEATS, "XAPI_BOOT_DIRS": GUEST_CACHE,
                       "XAPI_HA_POLL_INTERVAL": "0.5",
                       # pool.eject: how the host stops its etcd and Patroni
                       "XAPI_HA_SERVICE_STOP_COMMAND":
                           f"sh {STOP_SERVICE} {node.dir} {{service}}"}
                server = ServerProcess(os.path.join(data, "xapi"), port=PORT,
                                       netns=node.name, host=node.address,
                                       libvirt_uri=libvirtd.uri, env=env,
                                       database_url=standalone if node is first else "")
                hosts[node.name] = PoolHost(node.name, node.address, server, libvirtd)
            with ThreadPoolExecutor(len(hosts)) as starting:   # each takes seconds
                list(starting.map(lambda h: h.libvirtd.start(), hosts.values()))
            _restart(hosts.values(), stop=False)
            coordinator = hosts[first.name]
            for name, joiner in hosts.items():
                if joiner is not coordinator:
                    restarts = joiner.restarts()
                    joiner.session().xenapi.pool.join(first.address, "root", ROOT_PASSWORD)
                    joiner.wait_restarted(before=restarts)
            before.update(coordinator=first.name, standalone=standalone, ha_database=url,
                          **_pool_before_the_move(coordinator))
            # The admin ran pool-ha-setup.sh (here: the harness's cluster) and puts the
            # lines it prints in every host's settings.
            for node in ha.nodes:
                hosts[node.name].server.env.update(XAPI_PATRONI_URL=node.api,
                                                   XAPI_HA_DATABASE_URL=url)
            restarted = time.monotonic()
            _restart(hosts.values(), stop=True)
            wait_settled(ha, hosts)
            print(f"\nha_pool: the pool moved into the replicated database and settled on "
                  f"the leader's host {time.monotonic() - restarted:.1f} s after the "
                  "servers were stopped for the restart")
            yield ha, hosts
        finally:
            for host in hosts.values():
                host.server.kill()
                host.libvirtd.stop()


def module_pool(slot: int, before: dict):
    """A module-scoped pytest fixture (assign it to `pool` in the test module): ha_pool
    on `slot`, filling `before`."""
    @pytest.fixture(scope="module")
    def pool(tmp_path_factory):
        with ha_pool(tmp_path_factory, slot=slot, before=before) as made:
            yield made
    return pool


def _pool_before_the_move(coordinator: PoolHost) -> dict:
    x = coordinator.session().xenapi
    offers = [m["body"] for m in x.message.get_all_records().values() if m["name"] == OFFER]
    assert len(offers) == 1, f"no {OFFER} message after the third join"
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, "made before the move")
    x.VM.set_is_a_template(vm, False)
    token = getattr(x.event, "from")(["VM"], "", 0.0)["token"]
    return {"offer": offers[0], "vm": x.VM.get_uuid(vm), "token": token}


def _restart(hosts, stop: bool):
    if stop:   # as `systemctl restart` on each host, at once
        for host in hosts:
            host.server.proc.send_signal(signal.SIGTERM)
        for host in hosts:
            host.server.stop()
    for host in hosts:
        host.server.start_nowait()
    for host in hosts:
        host.server.wait_started(120)


def answer_of(host: PoolHost):
    """"accepted" if a root login works, else the failure's details (or the error)."""
    try:
        host.server.session(timeout=CALL_TIMEOUT).xenapi.session.logout()
        return "accepted"
    except XenAPI.Failure as exc:
        return exc.details
    except Exception as exc:
        return repr(exc)


def coordinator_among(hosts: dict) -> PoolHost | None:
    """The first host that takes a login, with a timeout (a cut-off host does not
    answer at all)."""
    return next((h for h in hosts.values() if answer_of(h) == "accepted"), None)


def wait_settled(ha, hosts: dict, timeout: float = 120) -> tuple[PoolHost, dict]:
    """The host of Patroni's leader coordinates and every other host sends clients to
    it (HOST_IS_SLAVE with its address): that host and the others' answers."""
    deadline, answers = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        leader = ha.leader()
        current = hosts[leader.name] if leader else None
        if current is not None and answer_of(current) == "accepted":
            answers = {name: answer_of(h) for name, h in hosts.items() if h is not current}
            if all(a == ["HOST_IS_SLAVE", current.address] for a in answers.values()):
                return current, answers
        time.sleep(0.3)
    raise AssertionError(f"the pool did not settle on Patroni's leader: {answers}\n" +
                         "\n".join(h.server.log()[-2000:] for h in hosts.values()))


__all__ = ["ha_pool", "answer_of", "coordinator_among", "wait_settled"]
