"""event.from, legacy event.next, inject and messages against the live server, with
its records in SQLite and again in PostgreSQL (pg_server.py)."""
import concurrent.futures
import threading
import time

import pytest

from pg_server import server, store_backend  # noqa: F401 (fixtures: both backends)
from sdk_failures import failure


def event_from(x, classes, token, timeout):
    return getattr(x.event, "from")(classes, token, timeout)


def test_empty_token_gives_every_object_as_add(xapi):
    batch = event_from(xapi, ["POOL", "host"], "", 1.0)
    classes = {(e["class"], e["operation"]) for e in batch["events"]}
    assert classes == {("pool", "add"), ("host", "add")}
    pool = xapi.pool.get_all()[0]
    snap = [e for e in batch["events"] if e["class"] == "pool"][0]
    assert snap["ref"] == pool and snap["snapshot"]["uuid"] == xapi.pool.get_uuid(pool)
    assert isinstance(batch["valid_ref_counts"]["pool"], int)
    assert batch["valid_ref_counts"]["pool"] == 1
    assert len(batch["token"].split(",")) == 2


def test_timeout_with_nothing_changed(xapi):
    token = event_from(xapi, ["pool"], "", 0.1)["token"]
    started = time.monotonic()
    batch = event_from(xapi, ["pool"], token, 1.0)
    assert batch["events"] == [] and time.monotonic() - started >= 0.9


def test_changes_are_coalesced_to_latest_state(xapi):
    pool = xapi.pool.get_all()[0]
    token = event_from(xapi, ["pool"], "", 0.1)["token"]
    xapi.pool.set_name_description(pool, "one")
    xapi.pool.set_name_description(pool, "two")
    batch = event_from(xapi, ["pool"], token, 5.0)
    assert len(batch["events"]) == 1
    event = batch["events"][0]
    assert event["operation"] == "mod" and event["snapshot"]["name_description"] == "two"


def test_add_del_and_transient_objects(xapi):
    keep = xapi.network.create({"name_label": "ev-keep", "other_config": {}})
    token = event_from(xapi, ["network"], "", 0.1)["token"]
    transient = xapi.network.create({"name_label": "ev-transient", "other_config": {}})
    xapi.network.destroy(transient)
    new = xapi.network.create({"name_label": "ev-new", "other_config": {}})
    xapi.network.destroy(keep)
    events = {e["ref"]: e for e in event_from(xapi, ["network"], token, 5.0)["events"]}
    assert transient not in events
    assert events[new]["operation"] == "add"
    assert events[keep]["operation"] == "del" and "snapshot" not in events[keep]
    xapi.network.destroy(new)


def test_blocked_call_wakes_on_change_from_another_connection(server, xapi):
    pool = xapi.pool.get_all()[0]
    token = event_from(xapi, ["pool"], "", 0.1)["token"]
    other = server.session().xenapi

    def change():
        time.sleep(0.5)
        other.pool.set_name_description(pool, "woken")
    threading.Thread(target=change).start()
    started = time.monotonic()
    batch = event_from(xapi, ["pool"], token, 30.0)
    assert time.monotonic() - started < 10
    assert batch["events"][0]["snapshot"]["name_description"] == "woken"


def test_single_object_and_star_subscriptions(xapi):
    pool = xapi.pool.get_all()[0]
    token = event_from(xapi, ["*"], "", 0.1)["token"]
    xapi.pool.set_name_description(pool, "star")
    assert any(e["ref"] == pool for e in event_from(xapi, ["*"], token, 5)["events"])
    batch = event_from(xapi, [f"pool/{pool}"], "", 1)
    assert [e["ref"] for e in batch["events"]] == [pool]


def test_sessions_of_others_never_appear_in_events(server, xapi):
    """A session ref is a credential: like xapi, no events for the session class."""
    token = event_from(xapi, ["*"], "", 0.1)["token"]
    other = server.session()
    other.xenapi.pool.get_all()
    events = event_from(xapi, ["*"], token, 1.0)["events"]
    assert not [e for e in events if e["class"] == "session"]
    assert other._session not in str(events)
    assert all(e["class"] != "session" for e in event_from(xapi, ["*"], "", 0.1)["events"])
    assert failure(event_from, xapi, ["session"], "", 1)[0] == "EVENT_SUBSCRIPTION_PARSE_FAILURE"
    other.xenapi.session.logout()


def test_parse_failures(xapi):
    assert failure(event_from, xapi, ["pool"], "garbage", 1) == \
        ["EVENT_FROM_TOKEN_PARSE_FAILURE", "garbage"]
    assert failure(event_from, xapi, ["nosuchclass"], "", 1) == \
        ["EVENT_SUBSCRIPTION_PARSE_FAILURE", "nosuchclass"]


def test_inject_and_current_id(xapi):
    pool = xapi.pool.get_all()[0]
    token = xapi.event.inject("pool", pool)
    before = int(xapi.event.get_current_id())
    after_token = xapi.event.inject("pool", pool)
    assert int(xapi.event.get_current_id()) > before
    events = event_from(xapi, ["pool"], token, 5)["events"]
    assert events[0]["operation"] == "mod" and after_token > token
    assert failure(xapi.event.inject, "pool", "OpaqueRef:nope") == \
        ["HANDLE_INVALID", "pool", "OpaqueRef:nope"]


@pytest.mark.parametrize("cls", ["*", "pool/OpaqueRef:x", "no_such_class", ""])
def test_inject_into_something_not_a_class_is_handle_invalid(xapi, cls):
    pool = xapi.pool.get_all()[0]
    assert failure(xapi.event.inject, cls, pool) == ["HANDLE_INVALID", cls, pool]


def test_legacy_register_next(server, xapi):
    assert failure(xapi.event.next)[0] == "SESSION_NOT_REGISTERED"
    xapi.event.register(["pool"])
    pool = xapi.pool.get_all()[0]
    xapi.pool.set_name_description(pool, "legacy")
    events = xapi.event.next()
    assert events[-1]["class"] == "pool" and events[-1]["snapshot"]["name_description"] == "legacy"
    float(events[-1]["timestamp"])
    xapi.event.unregister(["pool"])


def test_hundred_waiters_while_other_calls_stay_fast(server, xapi):
    token = event_from(xapi, ["message"], "", 0.1)["token"]
    sessions = [server.session().xenapi for _ in range(100)]
    pool = xapi.pool.get_all()[0]
    with concurrent.futures.ThreadPoolExecutor(110) as ex:
        waiting = [ex.submit(event_from, s, ["message"], token, 20.0) for s in sessions]
        time.sleep(1.0)
        started = time.monotonic()
        for _ in range(50):
            xapi.pool.get_record(pool)
        elapsed = time.monotonic() - started
        msg = xapi.message.create("TEST_ALERT", 3, "Pool", xapi.pool.get_uuid(pool), "hello")
        results = [w.result(timeout=30) for w in waiting]
    assert elapsed < 5.0  # 50 reads, each well under 100 ms with 100 clients blocked
    for batch in results:
        assert [e["ref"] for e in batch["events"]] == [msg]
    xapi.message.destroy(msg)


def test_messages(xapi):
    pool = xapi.pool.get_all()[0]
    uuid = xapi.pool.get_uuid(pool)
    ref = xapi.message.create("CUSTOM", 2, "Pool", uuid, "body text")
    record = xapi.message.get_record(ref)
    assert record["name"] == "CUSTOM" and record["cls"] == "Pool" and record["priority"] == "2"
    assert ref in xapi.message.get_since("19700101T00:00:00Z")
    assert ref in xapi.message.get("Pool", uuid, "19700101T00:00:00Z")
    assert failure(xapi.message.create, "X", 1, "Nope", uuid, "") == ["INVALID_VALUE", "cls", "Nope"]
    xapi.message.destroy(ref)
    assert ref not in xapi.message.get_all()
