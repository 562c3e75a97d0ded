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


def test_sr_vdi_lifecycle(cli, tmp_path):
    sr = ok(cli, "sr-create", "name-label=files", "type=file",
            f"device-config:path={tmp_path / 'sr'}", "content-type=user")
    assert ok(cli, "sr-param-get", f"uuid={sr}", "param-name=type") == "file"
    vdi = ok(cli, "vdi-create", f"sr-uuid={sr}", "name-label=d1", "virtual-size=8MiB")
    assert ok(cli, "vdi-param-get", f"uuid={vdi}", "param-name=virtual-size") == str(8 << 20)
    code, _, err = cli.run("vdi-create", f"sr-uuid={sr}", "name-label=x",
                           "virtual-size=1MiB", "type=bogus")
    assert (code, err) == (1, "Error: Unknown vdi type: bogus\n")
    ok(cli, "vdi-resize", f"uuid={vdi}", "disk-size=16MiB")
    copy = ok(cli, "vdi-copy", f"uuid={vdi}", f"sr-uuid={sr}", "--progress")
    clone = ok(cli, "vdi-clone", f"uuid={vdi}", "new-name-label=d1-clone")
    assert ok(cli, "vdi-param-get", f"uuid={clone}", "param-name=name-label") == "d1-clone"
    vm = ok(cli, "vm-install", "template=Other install media", "new-name-label=disky")
    vbd = ok(cli, "vbd-create", f"vm-uuid={vm}", f"vdi-uuid={copy}", "device=1")
    assert copy in ok(cli, "vbd-list", f"uuid={vbd}", "params=vdi-uuid", "--minimal")
    ok(cli, "vm-disk-add", f"vm={vm}", "disk-size=4MiB", "device=2", f"sr-uuid={sr}")
    out = ok(cli, "vm-disk-list", f"vm={vm}")
    assert "Disk 0 VBD:" in out and "Created by xe" in out
    ok(cli, "vbd-destroy", f"uuid={vbd}")
    ok(cli, "vm-uninstall", f"vm={vm}", "--force")   # removes the "Created by xe" disk
    for v in (vdi, copy, clone):
        ok(cli, "vdi-destroy", f"uuid={v}")
    assert ok(cli, "vdi-list", f"sr-uuid={sr}", "--minimal") == ""
    ok(cli, "sr-scan", f"uuid={sr}")
    code, out, err = cli.run("sr-forget", f"uuid={sr}")
    assert code == 1 and "The SR is still connected to a host via a PBD" in out + err
    pbd = ok(cli, "pbd-list", f"sr-uuid={sr}", "params=uuid", "--minimal")
    ok(cli, "pbd-unplug", f"uuid={pbd}")
    ok(cli, "pbd-destroy", f"uuid={pbd}")
    ok(cli, "sr-forget", f"uuid={sr}")
    assert ok(cli, "sr-list", f"uuid={sr}", "--minimal") == ""


def test_network_vif(cli):
    net = ok(cli, "network-create", "name-label=lan", "MTU=1400")
    assert ok(cli, "network-param-get", f"uuid={net}", "param-name=MTU") == "1400"
    vm = ok(cli, "vm-install", "template=Other install media", "new-name-label=netty")
    vif = ok(cli, "vif-create", f"vm-uuid={vm}", f"network-uuid={net}", "device=0",
             "mac=random")
    mac = ok(cli, "vif-param-get", f"uuid={vif}", "param-name=MAC")
    assert int(mac[:2], 16) & 2 and len(mac) == 17
    assert vif in ok(cli, "vm-vif-list", f"vm={vm}")
    ok(cli, "vif-destroy", f"uuid={vif}")
    ok(cli, "vm-uninstall", f"vm={vm}", "--force")
    ok(cli, "network-destroy", f"uuid={net}")
    assert ok(cli, "network-list", f"uuid={net}", "--minimal") == ""
