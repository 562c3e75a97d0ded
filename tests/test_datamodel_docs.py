"""The stricter datamodel (issue 13 item 7): docs on messages, fields and parameters,
the common-field helpers, and @implements checking an implementation's parameters."""
import json
import os

import pytest

from xapi_server import schemas
from xapi_server.cli.testing import Harness
from xapi_server.datamodel import CLASSES, METHODS, _dsl
from xapi_server.dispatch import registry

# The classes people use every day: their non-obvious fields carry a doc.
DAILY = ("VM", "VDI", "SR", "VBD", "VIF", "network", "host", "pool", "task", "session")


def test_every_class_specific_message_has_a_doc():
    missing = sorted(n for n, m in METHODS.items() if m.kind == "custom" and not m.doc.strip())
    assert not missing, f"class-specific messages without doc=: {missing}"


@pytest.mark.parametrize("cls", DAILY)
def test_daily_classes_document_their_fields(cls):
    fields = CLASSES[cls].fields
    documented = [f for f in fields if f.doc]
    assert fields[0].name == "uuid" and fields[0].doc   # identity() gives every class one
    assert len(documented) >= 5, [f.name for f in fields if not f.doc]


def test_common_field_helpers_keep_xapi_facts():
    uuid = _dsl.identity()
    assert (uuid.name, uuid.type_text, uuid.qualifier, uuid.has_default) == (
        "uuid", "string", _dsl.RO, False)
    label, description = _dsl.names(_dsl.RC, setter="vm-admin")
    assert (label.name, label.qualifier, label.default, label.setter) == (
        "name_label", _dsl.RC, "", "vm-admin")
    assert description.name == "name_description"
    assert not _dsl.names(default=_dsl.NO_DEFAULT)[0].has_default
    allowed, current = _dsl.operations("vm_operations")
    assert (allowed.type_text, allowed.default) == ("enum vm_operations set", [])
    assert (current.type_text, current.default) == ("(string -> enum vm_operations) map", {})
    a, b = _dsl.other_config(default={}), _dsl.other_config(default={})
    assert a.default == {} and a.default is not b.default      # never one shared dict
    assert not _dsl.other_config().has_default
    assert (_dsl.tags().role, _dsl.tags().default) == ("vm-operator", [])


def test_param_docs_name_declared_params():
    m = _dsl.msg("m", "VM ref vm, bool force", params_doc={"force": "skip checks"})
    assert [p.doc for p in m.params] == ["", "skip checks"]
    with pytest.raises(ValueError, match="no parameter forse"):
        _dsl.msg("m", "VM ref vm, bool force", params_doc={"forse": "typo"})


def test_generated_accessors_carry_the_field_doc():
    doc = CLASSES["VM"].field_map["power_state"].doc
    assert METHODS["VM.get_power_state"].result_doc == doc
    value = METHODS["VM.set_VCPUs_params"].params[1]
    assert value.name == "value" and value.doc == CLASSES["VM"].field_map["VCPUs_params"].doc


def test_schemas_carry_the_docs():
    with open(os.path.join(schemas.SCHEMA_DIR, "VM.json")) as f:
        vm = json.load(f)
    assert vm["properties"]["power_state"]["description"] == \
        CLASSES["VM"].field_map["power_state"].doc
    with open(os.path.join(schemas.SCHEMA_DIR, "openrpc.json")) as f:
        methods = {m["name"]: m for m in json.load(f)["methods"]}
    start = {p["name"]: p for p in methods["VM.start"]["params"]}
    assert start["force"]["description"] and "description" not in start["vm"]
    assert methods["VM.get_power_state"]["result"]["description"]
    assert methods["VM.get_allowed_VBD_devices"]["summary"] != "custom (VM)"


def test_implements_checks_the_parameter_count():
    async def too_few(ctx, vm):            # VM.start has vm, start_paused, force
        pass

    with pytest.raises(TypeError) as err:
        registry._check_arity(too_few, "VM.start")
    text = str(err.value)
    assert "VM.start" in text and "too_few" in text and "ctx, vm, start_paused, force" in text

    async def too_many(ctx, vm, start_paused, force, extra):
        pass

    with pytest.raises(TypeError):
        registry._check_arity(too_many, "VM.start")

    async def exact(ctx, vm, start_paused, force):
        pass

    async def rest(ctx, self, *args):      # one body for several setters
        pass

    async def optional_extra(ctx, vm, start_paused, force, trace=None):
        pass

    for fn in (exact, rest, optional_extra):
        registry._check_arity(fn, "VM.start")


def test_every_registered_implementation_passes_the_check():
    from xapi_server import api  # noqa: F401  registers implementations
    for name, fn in registry.IMPLEMENTATIONS.items():
        registry._check_arity(fn, name)


def test_xe_help_describes_fields(tmp_path):
    h = Harness(str(tmp_path))
    try:
        code, out, _ = h.run("help", "vm-param-get", "param-name=power-state,nope")
        assert code == 0 and out.startswith("command name       : vm-param-get\n")
        assert CLASSES["VM"].field_map["power_state"].doc in out
        assert "VM.power_state" in out and "Unknown parameter 'nope'" in out
        # without param-name, help is as before
        _, plain, _ = h.run("help", "vm-param-get")
        assert "description" in plain and "VM.power_state" not in plain
    finally:
        h.close()


def test_every_key_setter_is_a_declared_message():
    """A map set key by key (Field.key_setter, used by xe's param-set) names a message
    of the datamodel that takes (self, key, value)."""
    setters = [(c.name, f.name, f.key_setter) for c in CLASSES.values() for f in c.fields
               if f.key_setter]
    assert setters, "PIF.properties is set through PIF.set_property"
    for cls, name, setter in setters:
        assert setter in METHODS, (cls, name, setter)
        assert len(METHODS[setter].params) == 3, (cls, name, setter)
