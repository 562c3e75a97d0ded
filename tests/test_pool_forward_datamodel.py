"""Forwarding in a pool is declared in the datamodel (`msg(..., forward="vm")`, as
xapi's message_forwarding follows its datamodel) and run by one dispatcher step.
These tests need no pool: they show that the declaration is checked when the
datamodel is built and that the dispatcher consults the pool for the declared
messages only (the pool itself: tests/test_pool_forward.py)."""
import os
import sys

import pytest
import XenAPI

sys.path.insert(0, os.path.dirname(__file__))
from xapi_server.datamodel import CLASSES, METHODS, forward_target, msg  # noqa: E402
from xapi_server.datamodel import _check_forward, parse_type  # noqa: E402
from xapi_server.datamodel._dsl import FORWARD_OWNERS  # noqa: E402


def test_every_declaration_names_a_ref_to_an_owned_object():
    forwarded = {name: m for name, m in METHODS.items() if m.forward}
    assert len(forwarded) > 50
    for name, m in forwarded.items():
        index, field, ref_type = forward_target(m)
        assert ref_type.cls in FORWARD_OWNERS, name
        assert m.params[index].name == m.forward.partition(".")[0]
    assert forward_target(METHODS["VM.suspend"])[2].cls == "VM"
    assert forward_target(METHODS["VDI.create"])[1:] == ("SR", parse_type("SR ref"))
    assert forward_target(METHODS["VM.resume_on"])[2].cls == "host"
    # the generated ones too, from the class's table
    assert CLASSES["VDI"].forward == {"create": "args.SR", "destroy": "self"}
    assert METHODS["VDI.destroy"].forward == "self"
    # and what runs on the coordinator declares nothing
    for name in ("VM.set_name_label", "VM.get_record", "VM.clone", "pool.join", "host.destroy"):
        assert METHODS[name].forward is None, name


@pytest.mark.parametrize("params, forward", [
    ("string name", "name"),          # not a ref
    ("VM ref vm", "v"),               # no such parameter
    ("network ref n", "n"),           # a network is on every host
    ("VDI record args", "args.name_label"),
])
def test_a_bad_declaration_fails_when_the_datamodel_is_built(params, forward):
    m = msg("x", params, doc="x", forward=forward)
    m.cls = "VM"
    for p in m.params:
        p.type = parse_type(p.type_text)
    with pytest.raises(ValueError, match="forward"):
        _check_forward(m, CLASSES)


def test_the_dispatcher_asks_the_pool_for_declared_messages_only(inprocess, api):
    """The step is the dispatcher's: replaced by a recorder, it sees every declared
    message (and answers for it) and none of the others."""
    dispatcher = inprocess.server.dispatcher
    seen = []

    async def elsewhere(ctx, args):
        seen.append((ctx.message.wire_name, list(args)))
        return ("done elsewhere",) if ctx.message.result_text != "void" else (None,)

    vm = api.VM.clone(api.VM.get_by_name_label("Other install media")[0], "fwd")
    api.VM.set_is_a_template(vm, False)
    sr = api.pool.get_default_SR(api.pool.get_all()[0])
    real = dispatcher.forward
    dispatcher.forward = elsewhere
    try:
        api.VM.suspend(vm)                 # halted: here it would be VM_BAD_POWER_STATE
        api.VM.set_name_label(vm, "renamed")
        assert api.VDI.create({"SR": sr, "virtual_size": "1048576", "type": "user",
                               "sharable": False, "read_only": False, "other_config": {},
                               "name_label": "d"}) == "done elsewhere"
        assert api.host.dmesg(api.host.get_all()[0]) == "done elsewhere"
    finally:
        dispatcher.forward = real
    assert [name for name, _ in seen] == ["VM.suspend", "VDI.create", "host.dmesg"]
    assert seen[0][1] == [vm]
    assert seen[1][1][0]["SR"] == sr
    assert api.VM.get_name_label(vm) == "renamed"
    # the real step on a host alone: no pool, the host runs it (and refuses it)
    with pytest.raises(XenAPI.Failure) as info:
        api.VM.suspend(vm)
    assert info.value.details[0] == "VM_BAD_POWER_STATE"
    api.VM.destroy(vm)
