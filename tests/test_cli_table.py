"""The command table against the datamodel, argument parsing, sizes, wire framing,
record layout: no server needed."""
import pytest

from xapi_server.cli import args
from xapi_server.cli.errors import CliFailure, SyntaxFailure
from xapi_server.cli.generic import VIEWS
from xapi_server.cli.records import FIELDS, cli_class, cli_name, field_index, layout
from xapi_server.cli.table import COMMANDS
from xapi_server.datamodel import CLASSES
from xe_cli import proto

# Classes the CLI cannot list: no get_all in the API (event, session, user, and
# data_source, the record type get_data_sources answers), as in xapi, where they have no
# *-list command either.
UNLISTABLE = {"event", "session", "user", "data_source"}


def test_every_class_has_list_and_param_commands():
    listable = {c for c, d in CLASSES.items() if d.fields and d.get_all}
    assert set(CLASSES) - listable == UNLISTABLE
    for cname in listable:
        name = cli_class(cname)
        for suffix in ("list", "param-list", "param-get"):
            assert f"{name}-{suffix}" in COMMANDS, (cname, suffix)
        writable = [f for f in FIELDS[cname] if f.writable]
        for suffix in ("param-set", "param-clear"):
            assert (f"{name}-{suffix}" in COMMANDS) == bool(writable), (cname, suffix)
        has_collections = any(f.kind in ("S", "M") for f in writable)
        for suffix in ("param-add", "param-remove"):
            assert (f"{name}-{suffix}" in COMMANDS) == has_collections, (cname, suffix)


def test_every_field_is_shown_or_gettable():
    for cname, fields in FIELDS.items():
        apis = {f.api for f in fields if f.cls == cname}
        assert apis == {f.name for f in CLASSES[cname].fields}, cname
        names = [f.name for f in fields]
        assert len(names) == len(set(names)), cname
        if CLASSES[cname].get_all:
            assert fields[0].name == "uuid", cname  # --minimal prints the first field


def test_names_follow_xe():
    assert cli_name("VM", "name_label") == "name-label"
    assert cli_name("VM", "HVM_boot_policy") == "HVM-boot-policy"
    assert cli_name("VM", "suspend_VDI") == "suspend-VDI-uuid"
    assert cli_name("task", "error_info") == "error_info"
    assert cli_name("VBD", "qos_algorithm_type") == "qos_algorithm_type"
    vbd = field_index("VBD")
    assert {"vm-uuid", "vm-name-label", "vdi-uuid", "vdi-name-label"} <= set(vbd)
    assert {"sr-uuid", "sr-name-label"} <= set(field_index("VDI"))
    assert {"memory-actual", "os-version", "power-state"} <= set(field_index("VM"))
    assert {"name", "description"} <= set(field_index("role"))
    assert {"memory-total", "host-metrics-live", "cpu_info"} <= set(field_index("host"))


def test_views():
    assert VIEWS["vm"].builtin == {"is-a-template": "false"}
    assert VIEWS["template"].cls == VIEWS["snapshot"].cls == "VM"
    assert COMMANDS["vm-list"].std and not COMMANDS["host-list"].std


def test_layout_pads_first_right_others_left():
    text = layout([("uuid ( RO)", "u"), ("name-label ( RW)", "n"), ("power-state ( RO)", "p")])
    assert text == ("uuid ( RO)           : u\n"
                    "     name-label ( RW): n\n"
                    "    power-state ( RO): p\n")


def test_parse_params():
    assert args.parse(["vm-list", "a=b=c", "--minimal", "bare", "-u", "bob"]) == (
        "vm-list", {"a": "b=c", "minimal": "true", "bare": "", "username": "bob"})
    with pytest.raises(SyntaxFailure):
        args.parse(["x=y"])
    with pytest.raises(SyntaxFailure):
        args.parse(["vm-list", "-z"])


@pytest.mark.parametrize("text,value", [("0", 0), ("512", 512), ("1k", 1024),
                                        ("2 MiB", 2 << 20), ("3GB", 3 << 30),
                                        ("1TiB", 1 << 40), ("7b", 7), ("4bytes", 4)])
def test_sizes(text, value):
    assert args.size(text) == value


@pytest.mark.parametrize("text", ["1.5GiB", "-1", "1 PiB", "", "GiB"])
def test_bad_sizes(text):
    with pytest.raises(CliFailure):
        args.size(text, "disk-size")


def test_booleans():
    assert all(args.boolean(t) for t in ("true", "T", "yes", "Y", "1"))
    assert not any(args.boolean(t) for t in ("false", "F", "no", "n", "0"))
    with pytest.raises(CliFailure):
        args.boolean("maybe")


def test_wire_examples():
    assert proto.command(proto.PRINT, "hi") == bytes.fromhex(
        "0e000000" "09000000" "00000000" "02000000") + b"hi"
    assert proto.command(proto.EXIT, 0) == bytes.fromhex("0c000000090000000400000000000000")
    for message in (proto.command(proto.ERROR, "CODE", ["a", "b"]),
                    proto.command(proto.HTTP_GET, "f", "/export?x"),
                    proto.command(proto.PROMPT), proto.response(proto.OK),
                    proto.chunk_header(10), proto.end_header()):
        assert int.from_bytes(message[:4], "little") == len(message) - 4
        proto.parse(message[4:])
    assert proto.parse(proto.command(proto.ERROR, "C", ["p"])[4:]) == (
        proto.COMMAND, proto.ERROR, ["C", ["p"]])
