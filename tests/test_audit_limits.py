"""What anonymous clients send is bounded before it is logged or stored (issue 12 items 8
and 9): huge user names, originators and User-Agents; a flood of failed logins cannot
rotate the audit history away; audit files are private. Through the real server."""
import grp
import json
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import XenAPI

from serverproc import ServerProcess

GROUP = "adm"          # a group every Debian system has
AUDIT_MAX = 65536      # the module server's audit_max_bytes
WINDOW = 2.0           # its audit_flood_window
LISTED = 20            # failed logins a window lists one by one (audit.py)
FIELD_MAX = 300        # bounds.py: 256 characters and a note of how many were cut


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("audit")), env={
        "XAPI_AUDIT_MAX_BYTES": str(AUDIT_MAX), "XAPI_AUDIT_BACKUPS": "1",
        "XAPI_AUDIT_FLOOD_WINDOW": str(WINDOW), "XAPI_AUDIT_GROUP": GROUP}).start()
    yield proc
    proc.stop()


def audit_lines(proc) -> list[str]:
    with open(os.path.join(proc.data_dir, "audit.log"), encoding="utf-8") as f:
        return f.read().splitlines()


def jsonrpc(proc, method, params, headers=None):
    with httpx.Client(verify=False, timeout=60) as http:
        reply = http.post(f"{proc.url}/jsonrpc", headers=headers or {}, json={
            "jsonrpc": "2.0", "id": 1, "method": method, "params": params})
    return reply.json()


def test_audit_log_is_private(server):
    """The shared test server (no audit_group): 0600, not 0644."""
    server.session().xenapi.pool.get_all()
    mode = os.stat(os.path.join(server.data_dir, "audit.log")).st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_failed_login_flood_keeps_the_history(srv):
    """40 failed logins with 256 KiB user names and originators: every line stays small,
    at most 20 are listed one by one and the rest are summarised with a count; the
    admin's earlier record is still in the current file and nothing was rotated."""
    x = srv.session().xenapi
    x.pool.set_name_description(x.pool.get_all()[0], "before the flood")
    huge = 256 * 1024

    def fail(i):
        name = f"{i:03d}" + "n" * huge
        reply = jsonrpc(srv, "session.login_with_password", [name, "x", "1.0", "o" * huge])
        assert reply["error"]["message"] == "SESSION_AUTHENTICATION_FAILED"
        assert len(reply["error"]["data"][0]) < FIELD_MAX    # not echoed back whole

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(fail, range(40)))
    deadline = time.monotonic() + 3 * WINDOW + 5
    while True:
        entries = [json.loads(line) for line in audit_lines(srv)]
        failed = [e for e in entries if e["method"] == "session.login_with_password"]
        listed = [e for e in failed if e["result"] == "SESSION_AUTHENTICATION_FAILED"]
        summarised = sum(e.get("failed_logins", 0) for e in failed)
        if len(listed) + summarised >= 40 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert len(listed) <= LISTED and len(listed) + summarised == 40, (len(listed), summarised)
    assert all(len(e["user"]) < FIELD_MAX and len(e["originator"]) < FIELD_MAX
               for e in listed)
    assert max(len(line) for line in audit_lines(srv)) <= 4096
    assert any(e["method"] == "pool.set_name_description" for e in entries)
    assert not os.path.exists(os.path.join(srv.data_dir, "audit.log.1"))


def test_rotated_audit_files_keep_mode_and_group(srv):
    """audit_group set: 0640 and that group, for the current file and rotated ones."""
    x = srv.session().xenapi
    pool = x.pool.get_all()[0]
    path = os.path.join(srv.data_dir, "audit.log")
    for i in range(2000):
        if os.path.exists(path + ".1"):
            break
        x.pool.set_name_description(pool, f"rotation {i}")
    gid = grp.getgrnam(GROUP).gr_gid
    for name in (path, path + ".1"):
        info = os.stat(name)
        assert (stat.S_IMODE(info.st_mode), info.st_gid) == (0o640, gid), name


def test_login_failures_message_has_a_bounded_name(srv):
    """LOGIN_FAILURES names the user in a bounded, escaped form."""
    x = srv.session().xenapi
    before = set(x.message.get_all())
    name = "evil\nname\x1b[31m" + "e" * 10_000
    for _ in range(5):   # JSON-RPC: XML cannot carry the escape character
        reply = jsonrpc(srv, "session.login_with_password", [name, "x"])
        assert reply["error"]["message"] == "SESSION_AUTHENTICATION_FAILED"
    bodies = [x.message.get_record(m)["body"] for m in set(x.message.get_all()) - before
              if x.message.get_record(m)["name"] == "LOGIN_FAILURES"]
    assert bodies and all(len(body) < 600 for body in bodies), [len(b) for b in bodies]
    assert all("\n" not in body and "\x1b" not in body for body in bodies)
    assert "evil\\nname\\x1b[31m" in bodies[0]


def test_user_agent_and_originator_are_bounded(srv):
    """The Caller record a User-Agent makes and a session's originator keep at most a
    bounded start of what the client sent."""
    agent = "Z" * 4000
    login = jsonrpc(srv, "session.login_with_password",
                    ["root", "test-root-password", "1.0", "O" * 50_000],
                    headers={"user-agent": agent})
    session = login["result"]
    assert len(jsonrpc(srv, "session.get_originator", [session, session])["result"]) \
        < FIELD_MAX
    x = srv.session().xenapi
    agents = [r["user_agent"] for r in x.Caller.get_all_records().values()
              if r["user_agent"].startswith("ZZZ")]
    assert agents and all(len(a) < FIELD_MAX for a in agents)
