"""Write throughput of the store on SQLite vs PostgreSQL, in the same run.

Two servers on this machine, one per backend (PostgreSQL 15 from Debian's packages,
started in a temp dir as tests/pg_server.py does, fsync on, UNIX socket). For each,
N clients loop a write for T seconds: network.set_name_label (one row per call) and
network.create + destroy (two calls); every call is acknowledged only once committed.
The backends take turns, twice, so a change in the machine's load hits both.

    .venv/bin/python bench/bench_store.py [--clients 16] [--seconds 10]
"""
import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from pg_server import cluster  # noqa: E402
from serverproc import ServerProcess  # noqa: E402


def rate(server, clients: int, seconds: float, work) -> float:
    sessions = [server.session() for _ in range(clients)]
    nets = [s.xenapi.network.create({"name_label": "bench", "other_config": {}})
            for s in sessions]
    done = [0] * clients
    stop = time.monotonic() + seconds

    def loop(i):
        x, net = sessions[i].xenapi, nets[i]
        while time.monotonic() < stop:
            done[i] += work(x, net, done[i])

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(done) / (time.monotonic() - began)


def set_label(x, net, n):
    x.network.set_name_label(net, f"n{n}")
    return 1


def create_destroy(x, net, n):
    made = x.network.create({"name_label": f"c{n}", "other_config": {}})
    x.network.destroy(made)
    return 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="xapi-bench-store-")
    servers = {
        "sqlite": ServerProcess(os.path.join(work, "sqlite")),
        "postgresql": ServerProcess(os.path.join(work, "pg"),
                                    database_url=cluster().new_database("bench")),
    }
    results = {(b, w): [] for b in servers for w in ("set_name_label", "create+destroy")}
    try:
        for server in servers.values():
            server.start()
        for _ in range(2):
            for backend, server in servers.items():
                for name, fn in (("set_name_label", set_label),
                                 ("create+destroy", create_destroy)):
                    results[(backend, name)].append(rate(server, args.clients,
                                                         args.seconds, fn))
    finally:
        for server in servers.values():
            server.kill()
    print(f"{args.clients} clients, {args.seconds:.0f} s per run, two runs each (calls/s):")
    for name in ("set_name_label", "create+destroy"):
        sq = sum(results[("sqlite", name)]) / 2
        pg = sum(results[("postgresql", name)]) / 2
        runs = " / ".join(f"{r:.0f}" for r in results[("postgresql", name)])
        print(f"  {name:15s} sqlite {sq:6.0f}   postgresql {pg:6.0f} ({runs})   "
              f"pg/sqlite {pg / sq:.2f}")


if __name__ == "__main__":
    main()
