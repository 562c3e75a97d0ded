"""Pool HA (issue 18): what synchronous replication costs the writes, and how long a
failover takes, in one run.

1. Write throughput: 32 clients (official SDK, one session each, HTTPS) loop a mix
   of API writes: network.create, network.set_name_description,
   network.add_to_other_config, network.remove_from_other_config, network.destroy
   (five writes a round, each its own acknowledged transaction), for --seconds,
   first on a standalone host (SQLite store, its own namespace-free server), then on
   the coordinator of three hosts whose pool database is PostgreSQL 15 replicated
   with Patroni in synchronous mode (tests/ha_pool.py: etcd, Patroni, PostgreSQL,
   libvirtd and a server per network namespace). Printed: both rates and the ratio.
2. Failover: --kills times, kill -9 of everything in the coordinator's namespace,
   then the time until another host takes a login as coordinator; the killed host is
   started again (etcd, Patroni, libvirtd, server: it comes back as a member), the
   pool settles and both replicas stream again before the next kill. Printed: median
   and max.

    .venv/bin/python bench/bench_pool_ha.py [--clients 32] [--seconds 20] [--kills 10]
"""
import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from ha_pool import coordinator_among, ha_pool, wait_settled  # noqa: E402
from serverproc import ServerProcess  # noqa: E402


class Dirs:
    """What ha_pool wants of pytest's tmp_path_factory."""

    def __init__(self, root):
        self.root = root

    def mktemp(self, name):
        return tempfile.mkdtemp(prefix=name, dir=self.root)


def write_rounds(server, clients: int, seconds: float) -> tuple[float, int]:
    """(acknowledged writes per second, errors) of `clients` threads looping the mix."""
    counts, errors, start = [0] * clients, [0] * clients, threading.Barrier(clients + 1)
    stop = threading.Event()

    def client(i):
        x = server.session(timeout=60).xenapi
        start.wait()
        n = 0
        while not stop.is_set():
            try:
                ref = x.network.create({"name_label": f"bench-{i}-{n}",
                                        "name_description": "", "other_config": {},
                                        "MTU": "1500", "tags": []})
                x.network.set_name_description(ref, "mixed writes")
                x.network.add_to_other_config(ref, "bench", str(n))
                x.network.remove_from_other_config(ref, "bench")
                x.network.destroy(ref)
                counts[i] += 5
            except Exception:
                errors[i] += 1
            n += 1

    threads = [threading.Thread(target=client, args=(i,), daemon=True)
               for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    began = time.monotonic()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(120)
    return sum(counts) / (time.monotonic() - began), sum(errors)


def kill_and_measure(ha, hosts) -> float:
    """kill -9 of the coordinator's namespace; seconds until another host serves as
    coordinator. Then the host is started again and the pool settles."""
    coordinator, _ = wait_settled(ha, hosts, 180)
    ha.wait_sync_standby(120)
    node = ha.node(coordinator.name)
    ha.kill9(node)
    killed_at, new = time.monotonic(), None
    others = {k: h for k, h in hosts.items() if k != node.name}
    while new is None:
        if time.monotonic() - killed_at > 180:
            raise SystemExit("no new coordinator within 180 s")
        new = coordinator_among(others)
        time.sleep(0.2)
    failover = time.monotonic() - killed_at
    ha.start_node(node)
    coordinator.libvirtd.ensure_running()
    coordinator.server.start(180)
    leader, _ = wait_settled(ha, hosts, 180)
    # Whole again before the next kill: both replicas stream from the leader (one
    # killed while the other still rewinds would be two hosts lost, and the strict
    # synchronous mode then takes no write at all).
    deadline = time.monotonic() + 180
    while ha.replicas_streaming(ha.node(leader.name)) < 2:
        if time.monotonic() > deadline:
            raise SystemExit("the killed host's database did not stream again")
        time.sleep(0.5)
    return failover


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--kills", type=int, default=10)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-pool-ha-")
    print(f"load average at start: {os.getloadavg()}")

    standalone = ServerProcess(os.path.join(root, "standalone")).start(120)
    try:
        sqlite_rate, sqlite_errors = write_rounds(standalone, args.clients, args.seconds)
    finally:
        standalone.kill()
    print(f"standalone host (SQLite): {sqlite_rate:.0f} writes/s "
          f"({sqlite_errors} errors), load {os.getloadavg()[0]:.1f}")

    with ha_pool(Dirs(root), slot=5) as (ha, hosts):
        coordinator, _ = wait_settled(ha, hosts, 180)
        ha.wait_sync_standby(120)
        pool_rate, pool_errors = write_rounds(coordinator.server, args.clients,
                                              args.seconds)
        print(f"3-host pool, synchronous replication: {pool_rate:.0f} writes/s "
              f"({pool_errors} errors), load {os.getloadavg()[0]:.1f}")
        print(f"ratio pool / standalone: {pool_rate / sqlite_rate:.2f}")
        times = []
        for i in range(args.kills):
            times.append(kill_and_measure(ha, hosts))
            print(f"kill {i + 1}: a new coordinator serves after {times[-1]:.1f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        if times:
            print(f"failover over {len(times)} kills: median {statistics.median(times):.1f} s,"
                  f" max {max(times):.1f} s")


if __name__ == "__main__":
    main()
