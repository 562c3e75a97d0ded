"""PAM logins of system accounts: real accounts made with useradd/chpasswd, the real PAM
service scripts/setup.sh installs (/etc/pam.d/xapi-py), the real server, the official SDK
and the real `xe`."""
import os
import pwd
import secrets
import shutil
import subprocess
import sys
import time

import httpx
import pytest
import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import ROOT_PASSWORD, ServerProcess  # noqa: E402

SERVICE = "xapi-py"
DELAY = 0.2  # the test servers' auth_failure_delay (serverproc's default)
BOGUS = "OpaqueRef:00000000-pam-test-0000-000000000000"
XE = os.path.join(os.path.dirname(sys.executable), "xe")

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="making system accounts needs root"),
    pytest.mark.skipif(not shutil.which("useradd"), reason="no useradd"),
    pytest.mark.skipif(not os.path.exists(f"/etc/pam.d/{SERVICE}"),
                       reason=f"/etc/pam.d/{SERVICE} missing: run scripts/setup.sh"),
]


def run(*argv, stdin=None):
    subprocess.run(argv, input=stdin, text=True, check=True, capture_output=True)


class Accounts:
    """System accounts and groups made for one test module, all removed at the end."""

    def __init__(self):
        self.tag = secrets.token_hex(3)
        self.users, self.groups = [], []

    def group(self, name):
        name = f"xpt{name}{self.tag}"
        run("groupadd", name)
        self.groups.append(name)
        return name

    def user(self, name, password, groups=()):
        name = f"xpt{name}{self.tag}"
        extra = ["-G", ",".join(groups)] if groups else []
        run("useradd", "-M", "-s", "/usr/sbin/nologin", *extra, name)
        self.users.append(name)
        run("chpasswd", stdin=f"{name}:{password}\n")
        return name

    def remove(self):
        for name in self.users:
            subprocess.run(["userdel", name], capture_output=True)
        for name in self.groups:
            subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture(scope="module")
def accounts():
    made = Accounts()
    try:
        yield made
    finally:
        made.remove()


@pytest.fixture(scope="module")
def pam_server(tmp_path_factory):
    proc = ServerProcess(str(tmp_path_factory.mktemp("pam-data")),
                         env={"XAPI_PAM_SERVICE": SERVICE}).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def admin(pam_server):
    return pam_server.session().xenapi


def login_error(server, user, password):
    s = XenAPI.Session(server.url, ignore_ssl=True)
    with pytest.raises(XenAPI.Failure) as info:
        s.xenapi.login_with_password(user, password, "1.0", "tests")
    return info.value.details


def add_subject(admin, identifier, role, other_config=None):
    subject = admin.subject.create({"subject_identifier": identifier,
                                    "other_config": other_config or {}})
    for current in admin.subject.get_roles(subject):
        admin.subject.remove_from_roles(subject, current)
    if role:
        admin.subject.add_to_roles(subject, admin.role.get_by_name_label(role)[0])
    return subject


def raw(session, method, *args):
    """A call without the SDK, which would log in again on SESSION_INVALID."""
    return session._ServerProxy__request(method, (session._session, *args))


def test_login_needs_a_subject_and_gets_its_role(pam_server, admin, accounts):
    user = accounts.user("alice", "Alice-pw-1")
    details = login_error(pam_server, user, "Alice-pw-1")
    assert details[:2] == ["SESSION_AUTHENTICATION_FAILED", user]

    subject = add_subject(admin, f"pam:{user}", None,
                          other_config={"subject-is-group": "true", "note": "kept"})
    account = pwd.getpwnam(user)
    other = admin.subject.get_other_config(subject)
    assert other["subject-name"] == user and other["subject-is-group"] == "false"
    assert other["subject-uid"] == f"u{account.pw_uid}"
    assert other["subject-gid"] == f"g{account.pw_gid}"
    assert other["subject-account-disabled"] == "false" and other["note"] == "kept"
    # xapi: authenticated, but a subject without roles may not log in
    details = login_error(pam_server, user, "Alice-pw-1")
    assert details[:2] == ["RBAC_PERMISSION_DENIED", "session.login_with_password"]

    admin.subject.add_to_roles(subject, admin.role.get_by_name_label("read-only")[0])
    session = pam_server.session(user, "Alice-pw-1")
    x, ref = session.xenapi, session._session
    record = x.session.get_record(ref)
    assert record["auth_user_sid"] == f"pam:{user}" and record["auth_user_name"] == user
    assert record["subject"] == subject and record["is_local_superuser"] is False
    pool = x.pool.get_all()[0]
    assert x.pool.get_record(pool)["uuid"]
    with pytest.raises(XenAPI.Failure) as info:
        x.pool.set_name_label(pool, "nope")
    assert info.value.details[:2] == ["RBAC_PERMISSION_DENIED", "pool.set_name_label"]
    with pytest.raises(XenAPI.Failure) as info:
        x.session.change_password("Alice-pw-1", "other")
    assert info.value.details[0] == "USER_IS_NOT_LOCAL_SUPERUSER"

    assert login_error(pam_server, user, "wrong")[:2] == ["SESSION_AUTHENTICATION_FAILED", user]
    assert login_error(pam_server, user, "")[0] == "SESSION_AUTHENTICATION_FAILED"
    # Text PAM cannot take (XML cannot carry NUL; JSON can): refused, not a traceback
    with httpx.Client(base_url=pam_server.url, verify=False, timeout=30) as http:
        reply = http.post("/jsonrpc", json={
            "jsonrpc": "2.0", "id": 1, "method": "session.login_with_password",
            "params": [user, "Alice-pw-1\0", "1.0", "t"]}).json()
    assert reply["error"]["message"] == "SESSION_AUTHENTICATION_FAILED"


def test_a_group_subject_lets_its_members_in(pam_server, admin, accounts):
    group = accounts.group("ops")
    member = accounts.user("bob", "Bob-pw-1", groups=[group])
    outsider = accounts.user("carol", "Carol-pw-1")
    assert login_error(pam_server, member, "Bob-pw-1")[0] == "SESSION_AUTHENTICATION_FAILED"

    subject = add_subject(admin, f"pam-group:{group}", "vm-operator")
    other = admin.subject.get_other_config(subject)
    assert other["subject-name"] == group and other["subject-is-group"] == "true"
    session = pam_server.session(member, "Bob-pw-1")
    record = session.xenapi.session.get_record(session._session)
    assert record["subject"] == subject and record["auth_user_sid"] == f"pam:{member}"
    # vm-operator may shut VMs down (so the bogus ref is what fails), not rename the pool
    assert raw(session, "VM.clean_shutdown", BOGUS)["ErrorDescription"][0] == "HANDLE_INVALID"
    assert raw(session, "pool.set_name_label", admin.pool.get_all()[0], "x")[
        "ErrorDescription"][0] == "RBAC_PERMISSION_DENIED"
    assert login_error(pam_server, outsider, "Carol-pw-1")[0] == "SESSION_AUTHENTICATION_FAILED"

    # A weaker subject of the member's own does not take the group's role away (xapi
    # grants the union of the roles of every subject that matches).
    add_subject(admin, f"pam:{member}", "read-only")
    again = pam_server.session(member, "Bob-pw-1")
    assert raw(again, "VM.clean_shutdown", BOGUS)["ErrorDescription"][0] == "HANDLE_INVALID"


def test_subjects_that_name_nothing_are_refused(admin):
    for identifier in ("pam:xpt-no-such-user", "pam-group:xpt-no-such-group", "pam:a\tb"):
        with pytest.raises(XenAPI.Failure) as info:
            admin.subject.create({"subject_identifier": identifier, "other_config": {}})
        assert info.value.details[0] == "SUBJECT_CANNOT_BE_RESOLVED"


def test_expired_account_is_refused(pam_server, admin, accounts):
    user = accounts.user("dave", "Dave-pw-1")
    add_subject(admin, f"pam:{user}", "read-only")
    pam_server.session(user, "Dave-pw-1")
    run("chage", "-E", "1", user)  # expired on 2 January 1970: PAM's account stage says no
    try:
        assert login_error(pam_server, user, "Dave-pw-1")[0] == "SESSION_AUTHENTICATION_FAILED"
    finally:
        run("chage", "-E", "-1", user)


def test_subject_identifiers_list_and_logout(pam_server, admin, accounts):
    user = accounts.user("erin", "Erin-pw-1")
    add_subject(admin, f"pam:{user}", "vm-admin")
    first, second = (pam_server.session(user, "Erin-pw-1") for _ in range(2))
    assert f"pam:{user}" in admin.session.get_all_subject_identifiers()
    admin.session.logout_subject_identifier(f"pam:{user}")
    for session in (first, second):
        assert raw(session, "pool.get_all")["ErrorDescription"] == [
            "SESSION_INVALID", session._session]
    assert f"pam:{user}" not in admin.session.get_all_subject_identifiers()


def test_failures_are_delayed_and_back_off(pam_server, admin, accounts):
    """Every way to fail waits the failure delay, counted from the start of the attempt;
    PAM failures count towards the (address, user name) backoff like local ones: the
    first three cost the base delay, then it doubles (to the test servers' cap, 8x)."""
    user = accounts.user("frank", "Frank-pw-1")
    add_subject(admin, f"pam:{user}", "read-only")

    def failing(name, password):
        started = time.monotonic()
        assert login_error(pam_server, name, password)[0] == "SESSION_AUTHENTICATION_FAILED"
        return time.monotonic() - started

    ways = {"unknown name": ("xpt-nobody", "x"), "wrong PAM password": (user, "wrong"),
            "no subject": (accounts.user("grace", "Grace-pw-1"), "Grace-pw-1"),
            "wrong local password": ("root", "wrong")}
    for way, (name, password) in ways.items():
        assert DELAY <= failing(name, password) < DELAY + 2.0, way
    pam_server.session(user, "Frank-pw-1")  # a success clears this pair's count
    waits = [failing(user, "wrong") for _ in range(5)]
    assert [DELAY <= wait < DELAY + 0.5 for wait in waits[:3]] == [True] * 3, waits
    assert waits[3] >= DELAY * 2 and waits[4] >= DELAY * 4, waits


def xe(server, user, password, *argv):
    env = {**os.environ, "HOME": "/nonexistent", "XDG_CONFIG_HOME": os.path.join(
        server.data_dir, "xe-config")}
    env.pop("XE_EXTRA_ARGS", None)
    return subprocess.run([XE, "-s", "127.0.0.1", "-p", str(server.port), "-u", user,
                           "-pw", password, "--no-verify", *argv],
                          env=env, capture_output=True, text=True, timeout=60)


def test_xe_as_a_system_account(pam_server, admin, accounts):
    user = accounts.user("heidi", "Heidi-pw-1")
    add_subject(admin, f"pam:{user}", "read-only")
    listed = xe(pam_server, user, "Heidi-pw-1", "pool-list", "--minimal")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == admin.pool.get_uuid(admin.pool.get_all()[0])
    denied = xe(pam_server, user, "Heidi-pw-1", "pool-param-set",
                f"uuid={listed.stdout.strip()}", "name-label=nope")
    assert denied.returncode == 1 and "permission: pool.set_name_label" in denied.stderr
    wrong = xe(pam_server, user, "wrong", "pool-list")
    assert wrong.returncode != 0 and "Authentication failed" in wrong.stderr


def test_passwords_never_logged(pam_server):
    with open(pam_server.log_path, errors="replace") as log:
        text = log.read()
    for password in ("Alice-pw-1", "Bob-pw-1", "Frank-pw-1", "Heidi-pw-1", ROOT_PASSWORD):
        assert password not in text


def test_pam_off_refuses_system_accounts(tmp_path, accounts):
    user = accounts.user("ivan", "Ivan-pw-1")
    proc = ServerProcess(str(tmp_path / "d")).start()
    try:
        add_subject(proc.session().xenapi, f"pam:{user}", "pool-admin")
        assert login_error(proc, user, "Ivan-pw-1")[:2] == [
            "SESSION_AUTHENTICATION_FAILED", user]
    finally:
        proc.stop()
