"""What hostile clients cost everyone else: the p99 latency of small calls
(host.get_record from 8 keep-alive clients) while each kind of attack runs, against the
same server quiet, in one run.

    quiet                  nothing else runs (the baseline)
    worst filter           get_all_records_where with the largest expression allowed
                           (and one over the cap) over 300 networks, in a loop
    16 MiB bodies          2 clients sending XML-RPC bodies as big as the cap allows
    login flood            16 anonymous clients guessing an admin's password (the
                           small-call clients log in as root: another name's turns)
    half-open TLS          500 connections that never send a ClientHello

    .venv/bin/python bench/bench_hostile.py [--seconds 5]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from serverproc import ServerProcess  # noqa: E402
from test_expensive_calls import (_CTX, Client, big_xmlrpc_body, p99,  # noqa: E402
                                  small_call_latencies, worst_allowed_expression)


def _loop(stop: threading.Event, once):
    while not stop.is_set():
        once()


def filter_attack(port, stop):
    client = Client(port)
    bodies = [client.body("network.get_all_records_where", worst_allowed_expression()),
              client.body("network.get_all_records_where",
                          'field "name__label" = "x" or ' * 40000 + "false")]
    _loop(stop, lambda: [client.post(b) for b in bodies])


def big_body_attack(port, stop):
    body = big_xmlrpc_body()
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=_CTX, timeout=120)

    def once():
        conn.request("POST", "/", body, {"Content-Type": "text/xml"})
        conn.getresponse().read()
    _loop(stop, once)


def login_attack(port, stop):
    conn = http.client.HTTPSConnection("127.0.0.1", port, context=_CTX, timeout=120)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "session.login_with_password",
                       "params": ["admin", "guess", "1.0", "bench"]})

    def once():
        conn.request("POST", "/jsonrpc", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
    _loop(stop, once)


def half_open_attack(port, stop):
    held = []
    for _ in range(500):
        try:
            held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        except OSError:
            break
    stop.wait()
    for sock in held:
        sock.close()


ATTACKS = [("worst filter", filter_attack, 1), ("16 MiB bodies", big_body_attack, 2),
           ("login flood", login_attack, 16), ("half-open TLS", half_open_attack, 1)]


def under(port, seconds, attack=None, threads=0):
    stop = threading.Event()
    workers = [threading.Thread(target=attack, args=(port, stop)) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(0.5 if attack else 0)   # let the attack get going
    try:
        return small_call_latencies(port, seconds)
    finally:
        stop.set()
        for w in workers:
            w.join()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    proc = ServerProcess(tempfile.mkdtemp(prefix="bench-hostile-"),
                         env={"XAPI_AUTH_FAILURE_DELAY": "1"}).start()
    try:
        x = proc.session().xenapi
        for i in range(300):
            x.network.create({"name_label": f"net-{i}", "other_config": {}})
        quiet = under(proc.port, args.seconds)
        print(f"{'scenario':<16} {'p99 ms':>8} {'max ms':>8} {'p99 vs quiet':>13}")
        print(f"{'quiet':<16} {p99(quiet) * 1e3:8.1f} {max(quiet) * 1e3:8.1f} {1.0:13.2f}")
        for name, attack, threads in ATTACKS:
            loaded = under(proc.port, args.seconds, attack, threads)
            print(f"{name:<16} {p99(loaded) * 1e3:8.1f} {max(loaded) * 1e3:8.1f} "
                  f"{p99(loaded) / p99(quiet):13.2f}")
    finally:
        proc.kill()


if __name__ == "__main__":
    main()
