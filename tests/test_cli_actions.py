"""Hand-written xe actions in-process (Harness on test:///default): vm-*, sr/vdi,
network/vif."""
import pytest

from xapi_server.cli.testing import Harness


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    h = Harness(str(tmp_path_factory.mktemp("cli-actions")), libvirt_uri="test:///default")
    yield h
    h.close()


def ok(cli, *argv, **kw):
    code, out, err = cli.run(*argv, **kw)
    assert code == 0, (argv, out, err)
    return out.strip()


def test_vm_install_start_shutdown_uninstall(cli):
    uuid = ok(cli, "vm-install", "template=Other install media", "new-name-label=inst")
    assert ok(cli, "vm-param-get", f"uuid={uuid}", "param-name=is-a-template") == "false"
    ok(cli, "vm-start", "vm=inst")
    assert ok(cli, "vm-param-get", f"uuid={uuid}", "param-name=power-state") == "running"
    ok(cli, "vm-shutdown", f"uuid={uuid}", "--force")
    assert ok(cli, "vm-param-get", f"uuid={uuid}", "param-name=power-state") == "halted"
    ok(cli, "vm-start", "vm=inst", "--progress")
    assert "All objects destroyed" in ok(cli, "vm-uninstall", "vm=inst", "--force")
    assert ok(cli, "vm-list", f"uuid={uuid}", "--minimal") == ""


def test_vm_install_errors(cli):
    code, _, err = cli.run("vm-install", "template=nope", "new-name-label=x")
    assert (code, err) == (1, "Error: No templates matched\n")


def test_selectors_and_multiple(cli):
    a = ok(cli, "vm-install", "template=Other install media", "new-name-label=sel-a")
    b = ok(cli, "vm-install", "template=Other install media", "new-name-label=sel-b")
    code, _, err = cli.run("vm-start", "name-description=Installed via xe CLI")
    assert (code, err) == (1, "Error: Multiple matches VMs found. --multiple required to "
                              "complete the operation\n")
    code, _, err = cli.run("vm-start", "vm=absent")
    assert (code, err) == (1, "Error: No matching VMs found\n")
    ok(cli, "vm-start", "name-description=Installed via xe CLI", "--multiple")
    ok(cli, "vm-shutdown", "name-description=Installed via xe CLI", "--multiple", "--force")
    clone = ok(cli, "vm-clone", "vm=sel-a", "new-name-label=sel-c")
    snap = ok(cli, "vm-snapshot", f"vm={a}", "new-name-label=sel-snap")
    assert clone and snap and clone != snap
    ok(cli, "vm-memory-limits-set", "vm=sel-b", "static-min=128MiB", "static-max=1GiB",
       "dynamic-min=256MiB", "dynamic-max=1GiB")
    assert ok(cli, "vm-param-get", f"uuid={b}", "param-name=memory-dynamic-min") == \
        str(256 << 20)
    code, out, _ = cli.run("vm-uninstall", "vm=sel-b", answers=["no"])
    assert code == 0 and "Aborted (you typed: 'no')" in out
    for vm in ("sel-a", "sel-b", "sel-c"):
        ok(cli, "vm-uninstall", f"vm={vm}", "--force")
    code, _, err = cli.run("vm-destroy", "uuid=00000000-0000-0000-0000-000000000000")
    assert code == 1 and "The uuid you supplied was invalid." in err
