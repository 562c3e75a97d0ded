"""The real `xe` binary against the real server over TLS on loopback: connection
options, ~/.xe, XE_EXTRA_ARGS, -pwf, exit codes, and certificate trust (first use,
change refused, pinning, --no-verify)."""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import ROOT_PASSWORD, ServerProcess, free_port  # noqa: E402

from xapi_server.http.tls import fingerprint  # noqa: E402

XE = os.path.join(os.path.dirname(sys.executable), "xe")


@pytest.fixture
def home(tmp_path):
    (tmp_path / "cfg").mkdir()
    return tmp_path


def xe(home, *argv, port=None, extra_env=None, stdin=""):
    env = {k: v for k, v in os.environ.items() if k != "XE_EXTRA_ARGS"}
    env.update(HOME=str(home), XDG_CONFIG_HOME=str(home / "cfg"), **(extra_env or {}))
    conn = ["-s", "127.0.0.1", "-p", str(port), "-pw", ROOT_PASSWORD] if port else []
    return subprocess.run([XE, *conn, *argv], env=env, capture_output=True, text=True,
                          input=stdin, timeout=60)


def known_hosts(home):
    return (home / "cfg" / "xe" / "known_hosts").read_text()


def server_fp(proc):
    return fingerprint(os.path.join(proc.data_dir, "certs", "server.crt"))


def test_list_and_first_use_trust(server, home):
    r = xe(home, "host-list", port=server.port)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("uuid ( RO)") and r.stdout.endswith("\n\n\n")
    assert "on first use" in r.stderr
    assert known_hosts(home) == f"127.0.0.1:{server.port} {server_fp(server)}\n"
    again = xe(home, "host-list", "params=uuid", "--minimal", port=server.port)
    assert (again.returncode, again.stderr) == (0, "")
    assert again.stdout.strip() in r.stdout


def test_errors_and_exit_codes(server, home):
    r = xe(home, "no-such-thing", port=server.port, extra_env={"XE_EXTRA_ARGS": ""})
    assert (r.returncode, r.stdout) == (1, "")
    assert "Unknown command: no-such-thing\nFor usage run: 'xe help'\n" in r.stderr
    r = xe(home, "-s", "127.0.0.1", "-p", str(server.port), "-pw", "bad", "vm-list")
    assert r.returncode == 1 and r.stderr.endswith("Authentication failed\n"
                                                   "For usage run: 'xe help'\n")
    r = xe(home, "vm-param-list", "uuid=nope", port=server.port)
    assert r.returncode == 1 and "The uuid you supplied was invalid." in r.stderr


def test_param_set_roundtrip(server, home):
    pool = xe(home, "pool-list", "--minimal", port=server.port).stdout.strip()
    r = xe(home, "pool-param-set", f"uuid={pool}", "other-config:xe-test=a,b",
           port=server.port)
    assert r.returncode == 0, r.stderr
    r = xe(home, "pool-param-get", f"uuid={pool}", "param-name=other-config",
           "param-key=xe-test", port=server.port)
    assert r.stdout == "a,b\n"


def test_settings_from_rc_file_extra_args_and_password_file(server, home):
    (home / ".xe").write_text(f"server=127.0.0.1\nport={server.port}\n\n"
                              f"password={ROOT_PASSWORD}\n")
    assert xe(home, "host-list", "--minimal").returncode == 0
    (home / ".xe").write_text("this line has no equals sign\n")
    r = xe(home, "host-list", extra_env={
        "XE_EXTRA_ARGS": f"server=127.0.0.1,port={server.port},password={ROOT_PASSWORD}"})
    assert r.returncode == 0 and "Error parsing rc file" in r.stderr
    (home / "pw").write_text(f"root\n{ROOT_PASSWORD}\n")
    r = xe(home, "-s", "127.0.0.1", "-p", str(server.port), "-pwf", str(home / "pw"),
           "host-list", "--minimal")
    assert r.returncode == 0, r.stderr


def test_bash_completion_asks_the_server(server, home):
    script = os.path.join(os.path.dirname(os.path.dirname(__file__)), "xe_cli",
                          "completion.bash")
    conn = f"xe -s 127.0.0.1 -p {server.port} -pw {ROOT_PASSWORD}"
    probe = (f"source {script}; comp() {{ COMP_WORDS=(\"$@\"); COMP_CWORD=$((${{#COMP_WORDS[@]}}-1)); "
             f"_xe; echo \"${{COMPREPLY[*]}}\"; }}; comp {conn} host-cpu-param-; "
             f"comp {conn} host-param-get ''; comp {conn} host-list uuid=")
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / "cfg"),
           "PATH": os.path.dirname(XE) + os.pathsep + os.environ["PATH"]}
    lines = subprocess.run(["bash", "-c", probe], env=env, capture_output=True, text=True,
                           timeout=60).stdout.splitlines()
    assert "host-cpu-param-get" in lines[0].split() and "vm-list" not in lines[0]
    assert {"uuid=", "param-name=", "param-key="} <= set(lines[1].split())
    host = xe(home, "host-list", "--minimal", port=server.port).stdout.strip()
    assert lines[2] == f"uuid={host}"


def test_usage_version_and_unreachable(home):
    r = xe(home)
    assert r.returncode == 0 and r.stdout.startswith("Usage: xe")
    assert xe(home, "-version").stdout == "ThinCLI protocol: 0.2\n"
    r = xe(home, "-s", "127.0.0.1", "-p", str(free_port()), "host-list")
    assert r.returncode == 1 and "Unable to contact server" in r.stderr


def test_changed_certificate_is_refused(tmp_path, home):
    port = free_port()
    first = ServerProcess(str(tmp_path / "a"), port=port).start()
    try:
        assert xe(home, "host-list", port=port).returncode == 0
        old = server_fp(first)
    finally:
        first.stop()
    second = ServerProcess(str(tmp_path / "b"), port=port).start()
    try:
        new = server_fp(second)
        assert new != old
        r = xe(home, "host-list", port=port)
        assert (r.returncode, r.stdout) == (1, "")
        assert "has CHANGED" in r.stderr and old in r.stderr and new in r.stderr
        assert known_hosts(home) == f"127.0.0.1:{port} {old}\n"   # not overwritten
        assert xe(home, "--fingerprint", new, "host-list", port=port).returncode == 0
        assert xe(home, "--no-verify", "host-list", port=port).returncode == 0
        r = xe(home, "--fingerprint", old, "host-list", port=port)
        assert r.returncode == 1 and "pinned" in r.stderr
    finally:
        second.stop()
