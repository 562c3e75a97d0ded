"""What callers can make the server keep stays bounded (issue 12, item 9): Caller
records the rate limiter registers by itself, and messages (xapi's message GC)."""
import concurrent.futures
import os
import sqlite3

import httpx
import pytest

from serverproc import ROOT_PASSWORD, ServerProcess

CALLER_CAP, USER_AGENTS = 20, 600
MESSAGE_CAP, PER_OBJECT_CAP = 60, 25


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    server = ServerProcess(str(tmp_path_factory.mktemp("caps")), env={
        "XAPI_MAX_AUTO_CALLERS": str(CALLER_CAP), "XAPI_MAX_MESSAGES": str(MESSAGE_CAP),
        "XAPI_MAX_MESSAGES_PER_OBJECT": str(PER_OBJECT_CAP)}).start()
    yield server
    server.kill()


def stored_rows(proc, table):
    """Rows on disk now (the server's database is in WAL mode: readers do not block it)."""
    db = sqlite3.connect(f"file:{os.path.join(proc.data_dir, 'xapi.db')}?mode=ro", uri=True)
    try:
        return db.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]
    finally:
        db.close()


def test_auto_registered_callers_stay_within_their_cap(proc):
    x = proc.session().xenapi
    admin_caller = x.Caller.create({"user_agent": "kept-by-admin/1.0"})
    session = proc.session()._session

    def calls(first):
        with httpx.Client(base_url=proc.url, verify=False, timeout=30) as client:
            for i in range(first, USER_AGENTS, 4):
                reply = client.post("/jsonrpc", headers={"User-Agent": f"crowd-{i}/1.0"},
                                    json={"jsonrpc": "2.0", "method": "host.get_all",
                                          "params": [session], "id": i})
                assert "result" in reply.json(), reply.text

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(calls, range(4)))

    def auto(records):
        return [r for r in records.values() if r["auto_registered"]]
    records = x.Caller.get_all_records()
    assert len(auto(records)) <= CALLER_CAP
    assert admin_caller in records
    assert stored_rows(proc, "Caller") <= CALLER_CAP + 1 + 1   # + the admin's, + the SDK's

    proc.kill()
    proc.start()
    x = proc.session().xenapi
    records = x.Caller.get_all_records()
    assert len(auto(records)) <= CALLER_CAP and admin_caller in records
    assert stored_rows(proc, "Caller") <= CALLER_CAP + 2


def test_messages_are_kept_to_their_caps(proc):
    x = proc.session().xenapi
    pool = x.pool.get_all()[0]
    pool_uuid = x.pool.get_uuid(pool)
    host_uuid = x.host.get_uuid(x.pool.get_master(pool))
    first = x.message.create("FIRST", 3, "Host", host_uuid, "the oldest about the host")
    for i in range(3 * PER_OBJECT_CAP):
        x.message.create("NOISE", 5, "Pool", pool_uuid, f"noise {i}")
    messages = x.message.get_all_records()
    about_pool = sorted((r for r in messages.values() if r["obj_uuid"] == pool_uuid),
                        key=lambda r: r["timestamp"])
    assert len(about_pool) == PER_OBJECT_CAP   # the newest ones, the oldest went first
    assert about_pool[-1]["body"] == f"noise {3 * PER_OBJECT_CAP - 1}"
    assert about_pool[0]["body"] == f"noise {2 * PER_OBJECT_CAP}"
    assert first in messages   # one object's flood does not push out another's

    vm_uuids = [r["uuid"] for r in x.VM.get_all_records().values()][:10]   # templates
    assert len(vm_uuids) * PER_OBJECT_CAP > MESSAGE_CAP
    for i in range(MESSAGE_CAP):
        x.message.create("SPREAD", 5, "VM", vm_uuids[i % len(vm_uuids)], f"spread {i}")
    messages = x.message.get_all_records()
    assert len(messages) <= MESSAGE_CAP
    assert first not in messages   # the oldest of all went first
    assert stored_rows(proc, "message") <= MESSAGE_CAP

    proc.kill()
    proc.start()
    x = proc.session().xenapi
    assert len(x.message.get_all_records()) <= MESSAGE_CAP


def test_messages_are_only_about_objects_that_exist(proc):
    x = proc.session().xenapi
    with pytest.raises(Exception) as failure:
        x.message.create("X", 3, "VM", "00000000-0000-0000-0000-000000000000", "")
    assert failure.value.details == ["UUID_INVALID", "VM",
                                     "00000000-0000-0000-0000-000000000000"]
