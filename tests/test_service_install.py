"""scripts/install-service.sh, into a staging root: the systemd unit systemd accepts, the
settings file, an `xe` that runs without the venv's site packages (no editable-install
import hook) and talks to a real server, its completion; and setup.sh doing nothing
when nothing changed (run-server.sh runs it on every start)."""
import os
import shutil
import subprocess

import pytest

from serverproc import ROOT_PASSWORD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def staged(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["bash", os.path.join(ROOT, "scripts", "install-service.sh"), "--root",
                    str(root)], check=True, capture_output=True, timeout=900)
    return root


def test_unit_and_settings(staged):
    unit = staged / "etc/systemd/system/xapi-py.service"
    text = unit.read_text()
    assert f"ExecStart={ROOT}/.venv/bin/xapi-server --config /etc/xapi-py/xapi.toml" in text
    assert "Restart=on-failure" in text and "@ROOT@" not in text
    assert "port = 443" in (staged / "etc/xapi-py/xapi.toml").read_text()
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the unit was not verified")
    checked = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                             text=True)
    assert checked.returncode == 0, checked.stderr
    assert "xapi-py.service" not in checked.stderr, checked.stderr   # no warnings about it


def test_installed_xe_runs_without_site_packages(staged, server):
    xe = staged / "usr/local/bin/xe"
    shebang = xe.read_text().splitlines()[0]
    assert shebang.startswith("#!/") and shebang.endswith(" -IS")
    assert (staged / "usr/share/bash-completion/completions/xe").exists()
    env = {"PATH": "/usr/bin:/bin", "HOME": str(staged)}
    out = subprocess.run([str(xe), "-s", "127.0.0.1", "-p", str(server.port), "-u", "root",
                          "-pw", ROOT_PASSWORD, "--no-verify", "host-list", "--minimal"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip()) == 36     # the host's uuid
    # the launcher's interpreter loads no site packages: the venv's import hook is absent
    probe = subprocess.run([shebang[2:].split()[0], "-IS", "-c",
                            "import sys; print(any('site-packages' in p for p in sys.path))"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "False"


def test_setup_does_nothing_when_nothing_changed(tmp_path, staged):
    """After a complete run (the staging install ran one), setup.sh stops before it asks
    dpkg or pip anything: a dpkg-query that would leave a mark is never called."""
    fake = tmp_path / "bin"
    fake.mkdir()
    mark = tmp_path / "called"
    (fake / "dpkg-query").write_text(f"#!/bin/sh\ntouch {mark}\nexit 1\n")
    (fake / "dpkg-query").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    done = subprocess.run(["bash", os.path.join(ROOT, "scripts", "setup.sh")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not mark.exists()
