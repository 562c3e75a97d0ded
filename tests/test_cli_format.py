"""Golden output of the xe CLI, in-process: record layout, --minimal, params=, filters,
param-get/-set/-add/-remove/-clear, errors and exit codes."""
import pytest

from xapi_server.cli.testing import Harness

U1 = "11111111-1111-1111-1111-111111111111"
U2 = "22222222-2222-2222-2222-222222222222"
U3 = "33333333-3333-3333-3333-333333333333"


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    h = Harness(str(tmp_path_factory.mktemp("cli-data")))
    s = h.store
    s.create("VM", {"uuid": U1, "name_label": "web", "power_state": "Running",
                    "other_config": {"a": "1", "b": "x"}, "tags": ["prod"]})
    s.create("VM", {"uuid": U2, "name_label": "db,main", "memory_static_max": 1 << 30})
    s.create("VM", {"uuid": U3, "name_label": "tmpl", "is_a_template": True})
    h.flush()
    yield h
    h.close()


def test_vm_list_layout(cli):
    code, out, err = cli.run("vm-list", f"uuid={U1}")
    assert (code, err) == (0, "")
    assert out == (f"uuid ( RO)           : {U1}\n"
                   f"     name-label ( RW): web\n"
                   f"    power-state ( RO): running\n\n\n")


def test_vm_list_hides_templates_unless_all(cli):
    _, out, _ = cli.run("vm-list", "params=uuid", "--minimal")
    assert sorted(out.strip().split(",")) == [U1, U2]
    _, out, _ = cli.run("vm-list", "params=uuid", "--minimal", "--all")
    assert {U1, U2, U3} <= set(out.strip().split(","))
    _, out, _ = cli.run("template-list", "--minimal")
    assert U3 in out.strip().split(",") and U1 not in out


def test_minimal_escapes_commas(cli):
    _, out, _ = cli.run("vm-list", "params=name-label", f"uuid={U2}", "--minimal")
    assert out == "db\\,main\n"


def test_params_keep_record_order_and_ignore_unknown(cli):
    _, out, _ = cli.run("vm-list", f"uuid={U1}", "params=power-state,nonsense,name-label")
    assert out == ("name-label ( RW)     : web\n"
                   "    power-state ( RO): running\n\n\n")


def test_filters_map_set_and_unknown(cli):
    assert cli.run("vm-list", "other-config:a=1", "--minimal")[1] == f"{U1}\n"
    assert cli.run("vm-list", "other-config-b=x", "--minimal")[1] == f"{U1}\n"
    assert cli.run("vm-list", "tags:contains=prod", "--minimal")[1] == f"{U1}\n"
    assert cli.run("vm-list", "power-state=halted", "--minimal")[1] == f"{U2}\n"
    code, out, err = cli.run("vm-list", "colour=blue")
    assert (code, out, err) == (1, "", "Error: Unknown field 'colour'\n")


def test_param_list_annotations(cli):
    code, out, _ = cli.run("vm-param-list", f"uuid={U1}")
    lines = out.split("\n")
    assert code == 0 and lines[0].startswith("uuid ( RO)") and out.endswith("\n\n\n")
    width = lines[0].index(":")
    assert all(line.index(": ") == width for line in lines if line)
    labels = {line.split(":")[0].strip() for line in lines if line}
    for label in ("other-config (MRW)", "tags (SRW)", "allowed-operations (SRO)",
                  "name-label ( RW)", "is-control-domain ( RO)", "current-operations (MRO)"):
        assert label in labels
    assert f"{'other-config (MRW)'.rjust(width)}: a: 1; b: x" in lines


def test_param_get_and_keys(cli):
    assert cli.run("vm-param-get", f"uuid={U1}", "param-name=other-config")[1] == "a: 1; b: x\n"
    assert cli.run("vm-param-get", f"uuid={U1}", "param-name=other-config",
                   "param-key=b")[1] == "x\n"
    code, _, err = cli.run("vm-param-get", f"uuid={U1}", "param-name=other-config",
                           "param-key=zz")
    assert (code, err) == (1, "Error: Key zz not found in map\n")
    code, _, err = cli.run("vm-param-get", f"uuid={U1}", "param-name=bogus")
    assert (code, err) == (1, "Error code: Missing parameter\nError parameters: bogus\n")


def test_param_set_add_remove_clear(cli):
    assert cli.run("vm-param-set", f"uuid={U2}", "name-description=hello",
                   "user-version=3", "other-config:k=v")[0] == 0
    get = lambda name: cli.run("vm-param-get", f"uuid={U2}", f"param-name={name}")[1]  # noqa
    assert get("name-description") == "hello\n"
    assert get("user-version") == "3\n"
    assert get("other-config") == "k: v\n"
    assert cli.run("vm-param-add", f"uuid={U2}", "param-name=tags", "param-key=t1")[0] == 0
    assert cli.run("vm-param-add", f"uuid={U2}", "param-name=other-config", "x=1")[0] == 0
    assert get("tags") == "t1\n" and get("other-config") == "k: v; x: 1\n"
    assert cli.run("vm-param-remove", f"uuid={U2}", "param-name=other-config",
                   "param-key=k")[0] == 0
    assert cli.run("vm-param-clear", f"uuid={U2}", "param-name=tags")[0] == 0
    assert get("tags") == "\n" and get("other-config") == "x: 1\n"


def test_param_set_errors(cli):
    assert cli.run("vm-param-set", f"uuid={U2}", "power-state=running")[2] == \
        "Error: Field 'power-state' is read-only.\n"
    assert cli.run("vm-param-set", f"uuid={U2}", "tags=a")[2] == \
        "Error: Cannot param-set on set fields\n"
    code, _, err = cli.run("vm-param-set", f"uuid={U2}", "memory-static-max=1.5GiB")
    assert code == 1 and err.startswith("Error: Failed to parse field 'memory-static-max'")
    code, _, err = cli.run("vm-param-set", f"uuid={U2}", "user-version=two")
    assert (code, err) == (1, "Error: Failed to parse field 'user-version': expecting an "
                              "integer, got 'two'\n")
    code, _, err = cli.run("vm-param-set", f"uuid={U2}", "is-a-template=maybe")
    assert code == 1 and "expecting a boolean" in err


def test_every_registered_error_is_described_with_names(cli):
    """xe prints every code of the error registry as words plus one line a parameter,
    objects by uuid and name (here, an error raised by a real call)."""
    from xapi_server.cli.errors import describe, param_names
    from xapi_server.cli.errors import ERROR_TEXT
    from xapi_server.datamodel.errors import ERRORS, XAPI
    for code, error in ERRORS.items():
        if error.origin != XAPI and code not in ERROR_TEXT:   # xapi's xe: `Error code:`
            assert describe(code, [], lambda cls, ref: None) is None
            continue
        params = [f"v{i}" for i in range(len(param_names(code)))]
        lines = describe(code, params, lambda cls, ref: None)
        assert lines and lines[0].strip(), code
        assert lines[1:] == [f"{n}: v{i}" for i, n in enumerate(param_names(code))], code
    assert describe("NO_SUCH_CODE_AT_ALL", [], lambda cls, ref: None) is None
    net = cli.run("network-create", "name-label=busy-net")[1].strip()
    vif = cli.run("vif-create", f"vm-uuid={U2}", f"network-uuid={net}", "device=0",
                  "mac=")[1].strip()
    code, _, err = cli.run("network-destroy", f"uuid={net}")
    assert (code, err) == (1, f"{ERRORS['NETWORK_CONTAINS_VIF'].doc}\nvifs: {vif}\n")
    cli.run("vif-destroy", f"uuid={vif}")


def test_uuid_invalid_is_described(cli):
    code, out, err = cli.run("vm-param-list", "uuid=nope")
    assert (code, out) == (1, "")
    assert err == "The uuid you supplied was invalid.\ntype: VM\nuuid: nope\n"


def test_usage_errors(cli):
    assert cli.run("no-such-command") == (1, "", "Unknown command: no-such-command\n"
                                                 "For usage run: 'xe help'\n")
    assert cli.run("vm-param-list") == (1, "", "Required parameter not found: uuid\n"
                                                "For usage run: 'xe help'\n")
    assert cli.run("vm-list", "-q") == (1, "", "Syntax error: \nFor usage run: 'xe help'\n")
    assert cli.run("vm-list", password="wrong") == (
        1, "", "Authentication failed\nFor usage run: 'xe help'\n")


def test_help(cli):
    code, out, _ = cli.run("help", password="wrong")   # no login needed
    assert code == 0 and "Common command list" in out and "vm-list" in out
    _, out, _ = cli.run("help", "--all", "--minimal")
    names = out.strip().split(",")
    assert "vm-param-set" in names and "task-cancel" in names and "help" in names
    _, out, _ = cli.run("help", "vm-param-get")
    assert out.startswith("command name       : vm-param-get\n")
    assert "        reqd params: uuid, param-name\n" in out
    # xapi's words on stdout; unlike xapi (0), the status says it failed
    assert cli.run("help", "nope")[:2] == (1, "Unknown command 'nope'\n")


def test_pool_and_host(cli):
    code, out, _ = cli.run("pool-list", "params=master", "--minimal")
    host_uuid = cli.run("host-list", "--minimal")[1].strip()
    assert code == 0 and out.strip() == host_uuid
    pool = cli.run("pool-list", "--minimal")[1].strip()
    assert cli.run("pool-param-set", f"uuid={pool}", "name-label=lab")[0] == 0
    assert cli.run("pool-param-get", f"uuid={pool}", "param-name=name-label")[1] == "lab\n"
    assert cli.run("host-param-get", f"uuid={host_uuid}", "param-name=memory-total")[0] == 0


def test_rbac_applies(cli):
    """The CLI logs in as the user and calls through the dispatcher: a read-only
    local account may list but not write."""
    roles = [r for r, rec in cli.store.tables["role"].items() if rec["name_label"] == "read-only"]
    if not roles:
        pytest.skip("no RBAC roles in this build")
    cli.store.create("subject", {"subject_identifier": "local:viewer", "roles": roles})
    cli.server.auth.set_password("viewer", "pw")
    cli.flush()
    assert cli.run("vm-list", "--minimal", user="viewer", password="pw")[0] == 0
    code, out, err = cli.run("vm-param-set", f"uuid={U1}", "name-label=x", user="viewer",
                             password="pw")
    assert code == 1 and err.startswith("You do not have the required permissions")
    assert "permission: vm.set_name_label" in err


def test_event_wait(cli):
    import asyncio
    from xapi_server.cli.engine import execute
    from xapi_server.cli.testing import PASSWORD, Recording

    assert cli.run("event-wait", "class=vm", f"uuid={U1}", "name-label=web")[0] == 0
    assert cli.run("event-wait", "class=vm", "colour=red") == (1, "", "Error: key missing: "
                                                                      "colour\n")

    async def wait_then_change():
        io = Recording()
        waiter = asyncio.ensure_future(execute(cli.server, [
            "event-wait", "class=vm", f"uuid={U2}", "name-label=/=db,main",
            "username=root", f"password={PASSWORD}"], io))
        await asyncio.sleep(0.3)
        assert not waiter.done()
        ref = cli.store.by_uuid("VM", U2)
        cli.store.update("VM", ref, name_label="renamed")
        await cli.store.flush()
        return await asyncio.wait_for(waiter, 10)

    cli.store.update("VM", cli.store.by_uuid("VM", U2), name_label="db,main")
    assert cli.loop.run_until_complete(wait_then_change()) == 0
