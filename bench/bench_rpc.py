"""Calls per second of (a) a bare ASGI app returning a constant JSON-RPC reply and
(b) our `host.get_record` with a valid session, both over HTTPS on loopback, both with
one uvicorn worker, driven by the same load generator (wrk) at the same concurrency.
Prints both, the ratio b/a (goal: >= 0.6), and each server's CPU per call (user+system
of its process over the run: steadier than the rates on a shared machine). The two are
measured in alternation, `rounds` times, and the medians compared: on a shared machine
the bare app's own CPU per call moved from 109 to 194 us between runs minutes apart.

    .venv/bin/python bench/bench_rpc.py [--seconds 5] [--rounds 3] [--connections 32]
                                        [--profile x.svg|x.txt]

--profile records our server with py-spy during its first run (its rates then suffer);
a name not ending in .svg gets collapsed stacks (py-spy --format raw).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
from serverproc import ServerProcess, free_port  # noqa: E402


def wrk(url: str, body: str, seconds: int, connections: int) -> float:
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    script.write('wrk.method = "POST"\n'
                 'wrk.headers["Content-Type"] = "application/json"\n'
                 f"wrk.body = {json.dumps(body)}\n")
    script.close()
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", script.name,
                          url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"errors during the run:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def cpu_seconds(pid: int) -> float:
    """The server's user+system CPU so far: per-call figures that the other work on a
    shared machine does not inflate as much as wall time."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, url: str, body: str, seconds: int, connections: int):
    """(calls/s, server CPU us per call) of a warmed-up wrk run against `pid`."""
    wrk(url, body, 2, connections)  # warm-up
    cpu = cpu_seconds(pid)
    rate = wrk(url, body, seconds, connections)
    return rate, (cpu_seconds(pid) - cpu) / (rate * seconds) * 1e6


def start_bare(cert: str, key: str, app: str = "bare_app:app",
               env: dict | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port",
         str(port), "--ssl-certfile", cert, "--ssl-keyfile", key, "--log-level", "warning",
         "--no-access-log"], cwd=HERE, env={**os.environ, **(env or {})})
    time.sleep(2)
    return proc, f"https://127.0.0.1:{port}/jsonrpc"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs; medians")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--profile", help="py-spy flame graph of our server to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        ours = ServerProcess(data).start()
        x = ours.session().xenapi
        host = x.pool.get_master(x.pool.get_all()[0])
        session = ours.session()._session
        cert = os.path.join(data, "certs", "server.crt")
        key = os.path.join(data, "certs", "server.key")
        bare, bare_url = start_bare(cert, key)
        spy = None
        try:
            constant = json.dumps({"jsonrpc": "2.0", "method": "x", "params": [], "id": 1})
            get_record = json.dumps({"jsonrpc": "2.0", "method": "host.get_record",
                                     "params": [session, host], "id": 1})
            rounds = []
            for n in range(args.rounds):   # alternated: both see the same moments of load
                a = measured(bare.pid, bare_url, constant, args.seconds, args.connections)
                if args.profile and n == 0:
                    raw = [] if args.profile.endswith(".svg") else ["--format", "raw"]
                    spy = subprocess.Popen([os.path.join(os.path.dirname(sys.executable),
                                                         "py-spy"),
                                            "record", "-o", args.profile, *raw, "-d",
                                            str(args.seconds + 3), "--pid", str(ours.proc.pid)])
                b = measured(ours.proc.pid, f"{ours.url}/jsonrpc", get_record, args.seconds,
                             args.connections)
                rounds.append((*a, *b))
                print(f"round {n + 1}: bare {a[0]:.0f}/s {a[1]:.0f} us, ours {b[0]:.0f}/s "
                      f"{b[1]:.0f} us", flush=True)
        finally:
            if spy is not None:
                spy.wait()
            bare.terminate()
            ours.stop()
    a, a_cpu, b, b_cpu = (statistics.median(column) for column in zip(*rounds))
    print(f"(a) bare ASGI constant reply : {a:9.0f} calls/s {a_cpu:6.0f} us CPU per call")
    print(f"(b) host.get_record          : {b:9.0f} calls/s {b_cpu:6.0f} us CPU per call")
    print(f"ratio b/a (medians of {args.rounds})     : {b / a:9.2f}   CPU a/b {a_cpu / b_cpu:.2f}"
          f"   (goal >= 0.6)   load {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":
    main()
