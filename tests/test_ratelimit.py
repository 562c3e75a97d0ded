"""Per-client rate limiting (xapi's Caller / Rate_limit design) on a real server.

Clients are told apart by User-Agent and address; the tests send JSON-RPC over HTTPS
with their own User-Agent so each scenario is its own client. Waits are asserted as
lower bounds only (a bucket cannot hand out tokens faster than it fills), plus one
wide comparison against an unlimited client in the same run.
"""
import time

import httpx
import pytest
from serverproc import ROOT_PASSWORD, ServerProcess


class Client:
    def __init__(self, proc, user_agent):
        self.http = httpx.Client(base_url=proc.url, verify=False, timeout=60,
                                 headers={"User-Agent": user_agent})
        self.session = self.call("session.login_with_password", "root", ROOT_PASSWORD)

    def raw(self, method, *params):
        reply = self.http.post("/jsonrpc", json={"jsonrpc": "2.0", "method": method,
                                                 "params": list(params), "id": 1})
        assert reply.status_code == 200
        return reply.json()

    def call(self, method, *params):
        reply = self.raw(method, *params)
        if "error" in reply:
            raise RuntimeError([reply["error"]["message"], *reply["error"]["data"]])
        return reply["result"]

    def api(self, method, *params):
        return self.call(method, getattr(self, "session", None), *params)

    def error(self, method, *params):
        reply = self.raw(method, self.session, *params)
        assert "error" in reply, reply
        return [reply["error"]["message"], *reply["error"]["data"]]


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    p = ServerProcess(str(tmp_path_factory.mktemp("ratelimit")),
                      env={"XAPI_MAX_AUTO_CALLERS": "4"}).start()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def admin(proc):
    return Client(proc, "ratelimit-admin")


def timed(client, n, method="host.get_all"):
    started = time.monotonic()
    for _ in range(n):
        client.api(method)
    return time.monotonic() - started


def callers_for(admin, user_agent):
    records = admin.api("Caller.get_all_records")
    return {ref: rec for ref, rec in records.items() if rec["user_agent"] == user_agent}


def test_unknown_client_is_registered_automatically(admin, proc):
    Client(proc, "probe-client/1.0").api("pool.get_all")
    [(ref, record)] = callers_for(admin, "probe-client/1.0").items()
    assert record["client_ip"] == "127.0.0.1" and record["auto_registered"] is True
    assert record["name_label"] == "user_agent: probe-client/1.0, client_ip: 127.0.0.1"
    assert record["rate_limit"] == "OpaqueRef:NULL"
    assert int(admin.api("Caller.query_call_count", ref)) == 2  # login + pool.get_all
    # An admin's create for the same pattern takes the record over (idempotent).
    same = admin.api("Caller.create", {"user_agent": "probe-client/1.0",
                                       "client_ip": "127.0.0.1", "name_label": "probe"})
    assert same == ref
    assert admin.api("Caller.get_auto_registered", ref) is False
    assert admin.api("Caller.get_name_label", ref) == "probe"


def test_costs_come_from_the_datamodel(admin, proc):
    client = Client(proc, "cost-meter/1.0")
    [ref] = callers_for(admin, "cost-meter/1.0")
    before = float(admin.api("Caller.query_token_usage", ref))
    host = client.api("host.get_all")[0]
    client.api("host.get_record", host)
    after_reads = float(admin.api("Caller.query_token_usage", ref))
    assert after_reads - before == 2.0               # a getter costs one token
    template = admin.api("VM.get_by_name_label", "Other install media")[0]
    vm = admin.api("VM.clone", template, "costly")
    admin.api("VM.set_is_a_template", vm, False)
    before_start = float(admin.api("Caller.query_token_usage", ref))
    client.api("VM.start", vm, False, False)
    client.api("VM.hard_shutdown", vm)
    spent = float(admin.api("Caller.query_token_usage", ref)) - before_start
    assert spent == 200.0                            # VM.start and hard_shutdown: 100 each
    admin.api("VM.destroy", vm)


def test_a_limited_client_is_slowed_and_others_are_not(admin, proc):
    limited, free = Client(proc, "noisy-monitor/2.1"), Client(proc, "control-panel/1.0")
    caller = admin.api("Caller.create", {"user_agent": "noisy-monitor*",
                                         "name_label": "monitoring"})
    limit = admin.api("Rate_limit.create", {"name_label": "slow", "burst_size": 5.0,
                                            "fill_rate": 10.0})
    admin.api("Rate_limit.add_caller", limit, caller)
    assert admin.api("Rate_limit.get_callers", limit) == [caller]
    assert admin.api("Caller.get_rate_limit", caller) == limit
    time.sleep(0.6)  # a full bucket to start from
    # 25 calls: 5 from the full bucket, 20 at 10 per second: at least 2 s.
    slow = timed(limited, 25)
    fast = timed(free, 25)
    assert slow >= 1.8, slow
    assert fast < slow / 2, (fast, slow)
    # Faster refill: the same client speeds up without reconnecting.
    admin.api("Rate_limit.set_fill_rate", limit, 1000.0)
    admin.api("Rate_limit.set_burst_size", limit, 1000.0)
    assert timed(limited, 25) < slow / 2
    admin.api("Rate_limit.destroy", limit)
    assert admin.api("Caller.get_rate_limit", caller) == "OpaqueRef:NULL"


def test_the_most_specific_caller_pays(admin, proc):
    everyone = admin.api("Caller.create", {"user_agent": "specific-test*",
                                           "client_ip": "127.0.0.1"})
    vip = admin.api("Caller.create", {"user_agent": "specific-test/vip",
                                      "client_ip": "127.0.0.1"})
    slow = admin.api("Rate_limit.create", {"burst_size": 1.0, "fill_rate": 4.0})
    roomy = admin.api("Rate_limit.create", {"burst_size": 10000.0, "fill_rate": 10000.0})
    admin.api("Rate_limit.add_caller", slow, everyone)
    admin.api("Rate_limit.add_caller", roomy, vip)
    other, special = Client(proc, "specific-test/other"), Client(proc, "specific-test/vip")
    time.sleep(0.3)
    vip_time, other_time = timed(special, 12), timed(other, 12)
    assert other_time >= 2.5, other_time             # 1 + 11 tokens at 4/s
    assert vip_time < other_time / 2, (vip_time, other_time)
    # Both matched: both count the calls, only the specific one paid.
    assert int(admin.api("Caller.query_call_count", vip)) >= 12
    assert int(admin.api("Caller.query_call_count", everyone)) >= 24
    for ref in (slow, roomy):
        admin.api("Rate_limit.destroy", ref)


def test_async_calls_answer_at_once_and_the_task_waits(admin, proc):
    client = Client(proc, "async-heavy/1.0")
    caller = admin.api("Caller.create", {"user_agent": "async-heavy/1.0",
                                         "client_ip": "127.0.0.1"})
    limit = admin.api("Rate_limit.create", {"burst_size": 2.0, "fill_rate": 2.0})
    admin.api("Rate_limit.add_caller", limit, caller)
    time.sleep(1.1)
    started = time.monotonic()
    tasks = [client.api("Async.network.create", {"name_label": f"n{i}", "other_config": {}})
             for i in range(3)]
    answered = time.monotonic() - started
    while any(admin.api("task.get_status", t) == "pending" for t in tasks):
        time.sleep(0.05)
    finished = time.monotonic() - started
    assert all(admin.api("task.get_status", t) == "success" for t in tasks)
    assert finished >= 1.8, finished                # 3 creates, 2 tokens each, 2 per s
    assert answered < finished / 2, (answered, finished)
    admin.api("Rate_limit.destroy", limit)


def test_bad_input_gets_xapi_errors(admin):
    assert admin.error("Caller.create", {}) == [
        "INVALID_VALUE", "user_agent/client_ip",
        "at least one of user_agent or client_ip must be set"]
    assert admin.error("Caller.create", {"user_agent": "*", "client_ip": ""})[2] == \
        "all-wildcard pattern not allowed"
    assert admin.error("Rate_limit.create", {"burst_size": 5.0, "fill_rate": 0.0})[:2] == [
        "INVALID_VALUE", "fill_rate"]
    assert admin.error("Rate_limit.create", {"burst_size": -1.0, "fill_rate": 1.0})[:2] == [
        "INVALID_VALUE", "burst_size"]
    limit = admin.api("Rate_limit.create", {"burst_size": 5.0, "fill_rate": 1.0})
    assert admin.error("Rate_limit.set_fill_rate", limit, -2.0)[:2] == [
        "INVALID_VALUE", "fill_rate"]
    assert admin.error("Rate_limit.add_caller", limit, "OpaqueRef:nope")[0] == "HANDLE_INVALID"
    assert admin.error("Rate_limit.create", {"burst_size": "lots", "fill_rate": 1.0})[0] == \
        "FIELD_TYPE_ERROR"
    assert admin.error("Caller.query_group_call_count", "")[:2] == ["INVALID_VALUE", "group"]
    admin.api("Rate_limit.destroy", limit)


def test_groups_and_usage_table(admin, proc):
    a, b = Client(proc, "group-a/1"), Client(proc, "group-b/1")
    [ref_a], [ref_b] = callers_for(admin, "group-a/1"), callers_for(admin, "group-b/1")
    admin.api("Caller.create", {"user_agent": "group-a/1", "client_ip": "127.0.0.1"})
    admin.api("Caller.create", {"user_agent": "group-b/1", "client_ip": "127.0.0.1"})
    for ref in (ref_a, ref_b):
        admin.api("Caller.add_group", ref, "team")
    a.api("pool.get_all")
    b.api("pool.get_all")
    calls = int(admin.api("Caller.query_group_call_count", "team"))
    assert calls == int(admin.api("Caller.query_call_count", ref_a)) + \
        int(admin.api("Caller.query_call_count", ref_b))
    rows = admin.api("Caller.query_all_usage")
    assert all(len(row) == 4 for row in rows)
    tokens = [float(row[2]) for row in rows]
    assert tokens == sorted(tokens, reverse=True)
    admin.api("Caller.remove_group", ref_a, "team")
    assert admin.api("Caller.get_groups", ref_a) == []


def test_auto_registered_callers_are_capped_and_limits_survive_restart(admin, proc):
    # The cap is 4 (fixture): older auto-registered callers make room for new ones;
    # callers an admin owns are never evicted.
    for i in range(6):
        Client(proc, f"crowd-{i}/1.0")
    auto = [rec for rec in admin.api("Caller.get_all_records").values()
            if rec["auto_registered"]]
    assert len(auto) <= 4
    assert "crowd-5/1.0" in {rec["user_agent"] for rec in auto}
    assert "crowd-0/1.0" not in {rec["user_agent"] for rec in auto}

    caller = admin.api("Caller.create", {"user_agent": "restart-probe/1.0"})
    limit = admin.api("Rate_limit.create", {"burst_size": 2.0, "fill_rate": 5.0})
    admin.api("Rate_limit.add_caller", limit, caller)
    proc.stop()
    proc.start()
    admin.__init__(proc, "ratelimit-admin")
    assert admin.api("Caller.get_rate_limit", caller) == limit
    client = Client(proc, "restart-probe/1.0")
    assert timed(client, 12) >= 1.5                # 1 login + 12 calls, 2 from the bucket
    admin.api("Rate_limit.destroy", limit)
