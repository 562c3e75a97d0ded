"""Event delivery latency and the cost of blocked waiters.

1. Latency from a change (a setter call on one connection) to its delivery to a client
   blocked in event.from on another connection: median and p99 over N changes
   (goal: median <= 10 ms; xapi batches for 50 ms by design).
2. host.get_record throughput with and without 100 clients blocked in event.from,
   measured in the same run (goal: no more than 10% lower).

    .venv/bin/python bench/bench_events.py [--changes 1000]
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import ssl
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from serverproc import ROOT_PASSWORD, ServerProcess  # noqa: E402

_CTX = ssl._create_unverified_context()


class Client:
    """A keep-alive JSON-RPC connection."""

    def __init__(self, port: int):
        self.conn = http.client.HTTPSConnection("127.0.0.1", port, context=_CTX, timeout=120)
        self.session = self.call("session.login_with_password", "root", ROOT_PASSWORD,
                                 session=False)

    def call(self, method, *params, session=True):
        args = ([self.session] if session else []) + list(params)
        self.conn.request("POST", "/jsonrpc", json.dumps(
            {"jsonrpc": "2.0", "method": method, "params": args, "id": 1}),
            {"Content-Type": "application/json"})
        reply = json.loads(self.conn.getresponse().read())
        if "error" in reply:
            raise RuntimeError(reply["error"])
        return reply["result"]


def latency(port: int, changes: int) -> list[float]:
    writer, watcher = Client(port), Client(port)
    pool = writer.call("pool.get_all")[0]
    token = watcher.call("event.from", ["pool"], "", 0.1)["token"]
    received, sent_at, samples = threading.Event(), [0.0], []
    stop = False

    def watch():
        nonlocal token
        while not stop:
            batch = watcher.call("event.from", ["pool"], token, 5.0)
            token = batch["token"]
            if batch["events"]:
                samples.append(time.perf_counter() - sent_at[0])
                received.set()
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    time.sleep(0.3)
    for i in range(changes):
        received.clear()
        sent_at[0] = time.perf_counter()
        writer.call("pool.set_name_description", pool, f"change {i}")
        received.wait(10)
    stop = True
    return samples


def throughput(port: int, seconds: float) -> float:
    client = Client(port)
    host = client.call("pool.get_master", client.call("pool.get_all")[0])
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        client.call("host.get_record", host)
        count += 1
    return count / seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--waiters", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        server = ServerProcess(data).start()
        try:
            samples = sorted(latency(server.port, args.changes))
            base = throughput(server.port, args.seconds)
            waiters = [Client(server.port) for _ in range(args.waiters)]
            stop = threading.Event()

            def wait(c):
                token = c.call("event.from", ["message"], "", 0.1)["token"]
                while not stop.is_set():
                    token = c.call("event.from", ["message"], token, 2.0)["token"]
            threads = [threading.Thread(target=wait, args=(c,), daemon=True) for c in waiters]
            for t in threads:
                t.start()
            time.sleep(1.0)
            loaded = throughput(server.port, args.seconds)
            stop.set()
        finally:
            server.stop()
    ms = [s * 1000 for s in samples]
    print(f"event latency over {len(ms)} changes: median {statistics.median(ms):.2f} ms, "
          f"p99 {ms[int(len(ms) * 0.99) - 1]:.2f} ms   (goal: median <= 10 ms)")
    print(f"host.get_record: {base:.0f} calls/s alone, {loaded:.0f} calls/s with "
          f"{args.waiters} blocked waiters: {loaded / base:.2f}x   (goal >= 0.90)")


if __name__ == "__main__":
    main()
