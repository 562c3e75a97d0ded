"""Logins under attack, through the real server and the official SDK (issue 12):
failures throttled per (address, user name) with turns, a cheap typo, concurrent guesses
no faster than serial ones (item 11); root is no subject (item 13); session caps per
user (item 14)."""
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import XenAPI

from serverproc import ROOT_PASSWORD, ServerProcess, add_local_user

DELAY = 0.2       # serverproc's auth_failure_delay
CAP = 8 * DELAY   # the module server's auth_failure_max_delay: 0.2 0.2 0.2 0.4 0.8 1.6 1.6


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("logins")), env={
        "XAPI_AUTH_FAILURE_MAX_DELAY": str(CAP),
        "XAPI_MAX_SESSIONS_PER_ORIGINATOR": "3", "XAPI_MAX_SESSIONS_PER_USER": "5"}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin(srv):
    return srv.session().xenapi


def login(server, user, password, originator="tests"):
    s = XenAPI.Session(server.url, ignore_ssl=True)
    s.xenapi.login_with_password(user, password, "1.0", originator)
    return s


def failing(server, user, password="wrong") -> float:
    """Seconds a failed login took to answer."""
    started = time.monotonic()
    with pytest.raises(XenAPI.Failure) as info:
        login(server, user, password)
    assert info.value.details[0] == "SESSION_AUTHENTICATION_FAILED"
    return time.monotonic() - started


def raw(session, method, *args):
    """A call without the SDK, which would log in again on SESSION_INVALID."""
    return session._ServerProxy__request(method, (session._session, *args))


def test_a_typo_is_cheap(srv, admin):
    """An admin who mistypes three times waits the base delay each time, not 0.2, 0.4,
    0.8 s (5, 10, 20 s with the default settings before)."""
    add_local_user(admin, "typist", "pool-admin", "Typist-pw-1")
    assert [failing(srv, "typist") < DELAY + 0.3 for _ in range(3)] == [True] * 3
    login(srv, "typist", "Typist-pw-1")


def test_users_do_not_share_failures(srv, admin):
    """One user's failures neither slow another user from the same address, nor are they
    cleared by that user's good login."""
    add_local_user(admin, "alice", "read-only", "Alice-pw-1")
    add_local_user(admin, "bob", "read-only", "Bob-pw-1")
    for _ in range(5):
        failing(srv, "alice")
    assert failing(srv, "bob") < DELAY + 0.3       # bob's first typo: the base delay
    started = time.monotonic()
    login(srv, "bob", "Bob-pw-1")
    assert time.monotonic() - started < 1.0
    assert failing(srv, "alice") >= CAP - 0.05     # alice's sixth: still the capped delay
    login(srv, "alice", "Alice-pw-1")              # her own good login clears her count
    assert failing(srv, "alice") < DELAY + 0.3


def test_concurrent_guesses_take_turns(tmp_path):
    """60 wrong guesses sent at once take as long as 60 sent one after another (the sum
    of the growing delays), while another user logs in at once; a good login of that
    other user does not reset the guesser's count."""
    base, cap, guesses = 0.05, 0.15, 60
    expected = sum(min(base * 2 ** max(0, n - 3), cap) for n in range(1, guesses + 1))
    proc = ServerProcess(str(tmp_path / "d"), env={
        "XAPI_AUTH_FAILURE_DELAY": str(base), "XAPI_AUTH_FAILURE_MAX_DELAY": str(cap),
        "XAPI_LOGIN_FAILURES_ALERT": "1000"}).start()
    try:
        add_local_user(proc.session().xenapi, "bystander", "read-only", "By-pw-1")
        with ThreadPoolExecutor(guesses) as pool:
            started = time.monotonic()
            results = [pool.submit(failing, proc, "root", f"guess-{i}")
                       for i in range(guesses)]
            time.sleep(1.0)
            before = time.monotonic()
            login(proc, "bystander", "By-pw-1")
            bystander = time.monotonic() - before
            for result in results:
                result.result()
            elapsed = time.monotonic() - started
        assert elapsed >= expected - 0.2, (elapsed, expected)
        assert bystander < 1.0
        assert failing(proc, "root") >= cap - 0.02   # count 61: still the capped delay
        login(proc, "root", ROOT_PASSWORD)
    finally:
        proc.stop()


def test_root_is_not_a_subject(srv, admin):
    """Root's credentials change only through the local superuser: nobody, not even a
    pool-admin, creates a subject local:root (which would set root's password)."""
    add_local_user(admin, "other-admin", "pool-admin", "Other-pw-1")
    other = login(srv, "other-admin", "Other-pw-1").xenapi
    for who in (other, admin):
        with pytest.raises(XenAPI.Failure) as info:
            who.subject.create({"subject_identifier": "local:root", "other_config": {}})
        assert info.value.details[0] == "USER_IS_NOT_LOCAL_SUPERUSER"
    identifiers = [admin.subject.get_subject_identifier(s) for s in admin.subject.get_all()]
    assert "local:root" not in identifiers
    login(srv, "root", ROOT_PASSWORD)


def test_session_caps_are_per_user(srv, admin):
    """Logins of one user with originator XenCenter (cap 3 here) end that user's oldest
    sessions only, never root's XenCenter session."""
    add_local_user(admin, "viewer", "read-only", "Viewer-pw-1")
    root_xc = login(srv, "root", ROOT_PASSWORD, "XenCenter")
    mine = [login(srv, "viewer", "Viewer-pw-1", "XenCenter") for _ in range(4)]
    assert raw(root_xc, "pool.get_all")["Status"] == "Success"
    assert raw(mine[0], "pool.get_all")["ErrorDescription"][0] == "SESSION_INVALID"
    assert [raw(s, "pool.get_all")["Status"] for s in mine[1:]] == ["Success"] * 3
    # The per-user cap (5 here) counts every originator of that user only.
    others = [login(srv, "viewer", "Viewer-pw-1", f"tool-{i}") for i in range(3)]
    alive = [raw(s, "pool.get_all")["Status"] == "Success" for s in mine[1:] + others]
    assert alive == [False, True, True, True, True, True]
    assert raw(root_xc, "pool.get_all")["Status"] == "Success"
