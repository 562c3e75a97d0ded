"""Sustained load and VM.start latency under load (issue 8), over HTTPS on loopback.

(1) 200 clients for 60 s, mixed reads and writes (JSON-RPC, one session each
    connection's thread): 65% reads (host.get_record, VM.get_all_records,
    network.get_record, pool.get_all_records), 35% writes (setters, network.create
    followed by network.destroy of what it made). Prints errors (goal 0; transport
    errors and XenAPI failures both count), calls/s, p50 and p99 latency. Load: wrk.
(2) VM.start latency idle, then while 80 clients loop VM.get_all_records, in the same
    run on the same server; prints both medians and the ratio (goal <= 1.5).
    On qemu:///system with the tiny guest (tests/guest) when run as root, else on
    libvirt's test driver (--uri test:///default), where VM.start is nearly free and the
    ratio shows the server's own queueing instead.

    .venv/bin/python bench/bench_load.py [--seconds 60] [--clients 200] [--uri URI]
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
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests"))
sys.path.insert(0, os.path.join(ROOT, "tests", "guest"))
import build  # noqa: E402
from serverproc import ServerProcess  # noqa: E402


# wrk script: requests are taken round-robin from MIX; the reply to a create (JSON-RPC
# id "create") queues a destroy of the new object; any reply carrying "error" counts.
LUA = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  failures, sent, pending = 0, 0, {}
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  local ref = table.remove(pending)
  if ref then
    return wrk.format(nil, "/jsonrpc", nil, string.format(DESTROY, ref))
  end
  sent = sent + 1
  local unique = tid .. "-" .. sent
  return wrk.format(nil, "/jsonrpc", nil, string.format(MIX[(sent % #MIX) + 1], unique))
end
function response(status, headers, body)
  if status ~= 200 or string.find(body, '"error"', 1, true) then
    failures = failures + 1
    if failures <= 3 then io.stderr:write(body:sub(1, 300) .. "\n") end
  end
  if string.find(body, '"id":"create"', 1, true) then
    local ref = string.match(body, '"result":"(OpaqueRef:[^"]+)"')
    if ref then table.insert(pending, ref) end
  end
end
function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("failures") end
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %.1f %.1f %.1f\n", summary.requests,
    summary.duration, total + e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def rpc(method, *params, ident="r"):
    return json.dumps({"jsonrpc": "2.0", "method": method, "params": list(params),
                       "id": ident})


def lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


def mixed_script(session: str, x) -> str:
    host = x.host.get_all()[0]
    nets = [x.network.create({"name_label": f"load{i}", "other_config": {}})
            for i in range(20)]
    vms = list(x.VM.get_all())[:10]
    mix = []
    for i in range(20):
        net, vm = nets[i % len(nets)], vms[i % len(vms)]
        # "%s" (thread and request number) keeps written values changing.
        mix += [rpc("host.get_record", session, host),
                rpc("VM.get_all_records", session),
                rpc("network.get_record", session, net),
                rpc("network.set_name_description", session, net, "load %s"),
                rpc("host.get_record", session, host),
                rpc("pool.get_all_records", session),
                rpc("VM.set_name_description", session, vm, "load %s"),
                rpc("network.get_record", session, net),
                rpc("network.create", session, {"name_label": "tmp %s", "other_config": {}},
                    ident="create"),
                rpc("host.get_record", session, host),
                rpc("network.add_to_other_config", session, net, "k%s", "v"),
                rpc("VM.get_all_records", session),
                rpc("host.get_record", session, host)]
    # the "%s" of add_to_other_config makes every key new: no MAP_DUPLICATE_KEY.
    entries = ",\n".join(lua_string(body.replace("%", "%%").replace("%%s", "%s"))
                         for body in mix)
    destroy = rpc("network.destroy", session, "%s")
    return f"MIX = {{\n{entries}\n}}\nDESTROY = {lua_string(destroy)}\n" + LUA


def run_wrk(url: str, script: str, seconds: int, clients: int, threads: int = 2):
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds}s",
                              "--timeout", "30s", "-s", f.name, url],
                             capture_output=True, text=True, check=True)
    finally:
        os.unlink(f.name)
    match = re.search(r"RESULT (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", out.stdout)
    if not match:
        raise SystemExit(f"wrk said:\n{out.stdout}\n{out.stderr}")
    requests, duration_us, errors, p50, p99, worst = match.groups()
    return dict(requests=int(requests), seconds=int(duration_us) / 1e6, errors=int(errors),
                p50_ms=float(p50) / 1000, p99_ms=float(p99) / 1000,
                max_ms=float(worst) / 1000, stderr=out.stderr.strip())


def sustained(proc, seconds: int, clients: int):
    session = proc.session()
    script = mixed_script(session._session, session.xenapi)
    result = run_wrk(f"{proc.url}/jsonrpc", script, seconds, clients)
    print(f"sustained load: {clients} clients, {result['seconds']:.0f} s, mixed reads/writes")
    print(f"  calls        : {result['requests']}  ({result['requests'] / result['seconds']:.0f}"
          f" calls/s)")
    print(f"  errors       : {result['errors']}   (goal 0)")
    print(f"  latency      : p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, "
          f"max {result['max_ms']:.1f} ms")
    if result["stderr"]:
        print("  first failures:\n    " + result["stderr"].replace("\n", "\n    "))
    return result


def start_latencies(x, vm, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        started = time.monotonic()
        x.VM.start(vm, False, False)
        times.append(time.monotonic() - started)
        x.VM.hard_shutdown(vm)
    return times


def start_under_load(proc, rounds: int, clients: int, guest):
    session = proc.session()
    x = session.xenapi
    vm = build.guest_vm(x, guest, "load-bench")
    start_latencies(x, vm, 1)  # warm-up
    idle = start_latencies(x, vm, rounds)
    script = (f"MIX = {{ {lua_string(rpc('VM.get_all_records', session._session))} }}\n"
              f"DESTROY = ''\n" + LUA)
    per_round = max(idle) + 3
    wrk_seconds = int(per_round * rounds + 8)
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    background = subprocess.Popen(["wrk", "-t1", f"-c{clients}", f"-d{wrk_seconds}s",
                                   "--timeout", "30s", "-s", f.name, f"{proc.url}/jsonrpc"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(3)  # the load is up
        loaded = start_latencies(x, vm, rounds)
    finally:
        out, _ = background.communicate()
        os.unlink(f.name)
    reads = re.search(r"RESULT (\d+) (\d+)", out)
    a, b = statistics.median(idle), statistics.median(loaded)
    print(f"VM.start latency ({'tiny guest, qemu' if guest else 'test driver'}), "
          f"{rounds} rounds each:")
    print(f"  idle                          : median {a * 1000:7.1f} ms")
    print(f"  {clients} clients VM.get_all_records: median {b * 1000:7.1f} ms"
          + (f"   (they made {int(reads.group(1)) / (int(reads.group(2)) / 1e6):.0f}"
             f" calls/s)" if reads else ""))
    print(f"  ratio loaded/idle             : {b / a:7.2f}   (goal <= 1.5)")
    x.VM.destroy(vm)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--readers", type=int, default=80)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--uri", default="qemu:///system" if os.geteuid() == 0
                        else "test:///default")
    args = parser.parse_args()
    guest = None
    if args.uri.startswith("qemu"):
        guest = build.build_guest("/var/tmp/xapi-py-test-guest")
        if subprocess.run(["virsh", "-c", args.uri, "version"], capture_output=True).returncode:
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "libvirt-setup.sh")],
                           check=True)
    with tempfile.TemporaryDirectory() as data:
        os.chmod(data, 0o711)
        proc = ServerProcess(data, libvirt_uri=args.uri).start()
        try:
            sustained(proc, args.seconds, args.clients)
            start_under_load(proc, args.rounds, args.readers, guest)
        finally:
            proc.remove_vms_and_kill()


if __name__ == "__main__":
    main()
