"""Crash safety under load, bigger than the test (tests/test_crash_writes.py):
several rounds on one data dir of
  200 clients making mutating calls -> SIGKILL after a random number of
  acknowledgements -> consistency check of the data dir -> restart -> every
  acknowledged write compared with what the server holds.
Prints per round the calls acknowledged and in flight, the call rate, the check
and restart times and the problems found (goal: 0).

    .venv/bin/python bench/bench_crash.py [--rounds 5] [--clients 200] [--acks 4000:12000]
"""
import argparse
import os
import random
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from crashload import AckLog, compare, run_load, server_records  # noqa: E402
from serverproc import ROOT_PASSWORD, ServerProcess  # noqa: E402

from xapi_server.store.check import check_data_dir  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--acks", default="4000:12000",
                    help="kill after a random number of acknowledgements in this range")
    args = ap.parse_args()
    low, high = (int(n) for n in args.acks.split(":"))
    work = tempfile.mkdtemp(prefix="xapi-bench-crash-")
    server = ServerProcess(os.path.join(work, "data"))
    total_problems = 0
    for round_no in range(args.rounds):
        began = time.perf_counter()
        server.start()
        restart = time.perf_counter() - began
        target = random.randint(low, high)
        log = AckLog(os.path.join(work, f"acks-{round_no}.jsonl"))
        began = time.perf_counter()
        failures = run_load(server.url, ROOT_PASSWORD, args.clients, log, server.kill, target,
                            timeout=600, tag=f"r{round_no}")
        elapsed = time.perf_counter() - began
        log.close()
        entries = AckLog.read(log.path)
        acked = sum(1 for e in entries if e["acked"])
        began = time.perf_counter()
        problems = check_data_dir(server.data_dir)
        check_time = time.perf_counter() - began
        server.start()
        problems += failures + compare(entries, server_records(server.session().xenapi),
                                       tag=f"r{round_no}")
        server.kill()
        total_problems += len(problems)
        print(f"round {round_no}: {acked} acknowledged, {len(entries) - acked} in flight at "
              f"the kill, {acked / elapsed:.0f} calls/s; check {check_time * 1000:.0f} ms; "
              f"start {restart:.1f} s; problems: {len(problems)}")
        for problem in problems[:10]:
            print("   ", problem)
    print(f"{args.rounds} rounds, {total_problems} problems (data in {work})")
    return 1 if total_problems else 0


if __name__ == "__main__":
    sys.exit(main())
