"""Three pool hosts on a replicated pool database (issue 18), for tests/test_pool_ha.py
and bench/bench_pool_ha.py: each host in its own network namespace running etcd,
Patroni + PostgreSQL 15 (tests/ha_harness.py), its own libvirtd and its own server.
The coordinator is the host of Patroni's leader; the two others joined it.

    with ha_pool(tmp_path_factory, slot=2) as (ha, hosts):   # hosts: name -> PoolHost
        coordinator, answers = wait_settled(ha, hosts)
"""
from __future__ import annotations

import contextlib
import os
import time

import XenAPI

from ha_harness import ha_cluster
from ha_writers import CALL_TIMEOUT
from pool_harness import FAST_HEARTBEATS, PORT, PoolHost
from private_libvirtd import PrivateLibvirtd
from serverproc import GUEST_CACHE, ROOT_PASSWORD, ServerProcess


@contextlib.contextmanager
def ha_pool(tmp_path_factory, slot: int):
    """tmp_path_factory: pytest's, or anything whose mktemp(name) gives a new dir."""
    with ha_cluster(slot=slot) as ha:
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
