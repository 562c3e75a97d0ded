"""The datamodel: the single source of truth for classes, fields and messages.

Class declarations live in `classes/`. This module parses their types, wires up the
one-to-many relations, and adds the messages xapi generates for every class
(getters, setters, get_all*, create/destroy ...). The dispatcher, the store, the
schemas and the CLI all read `CLASSES` and `METHODS` and nothing else.
"""
from __future__ import annotations

from . import types
from ._dsl import (ANY_ROLE, FORWARD_OWNERS, RC, RO, ROLES, RW, ClassDef, Field, Message, Param,
                   msg, role_allows)
from .types import NULL_REF, Enum, Map, Prim, Record, Ref, Set
from . import costs
from .classes import auth, event, metrics, pool, network, ratelimit, storage, task, vm
from .classes import blob, pool_host_features, vm_more
from .enums import ENUMS

__all__ = ["CLASSES", "METHODS", "RELATIONS", "ENUMS", "ROLES", "ClassDef", "Field", "Message",
           "Param", "NULL_REF", "RW", "RC", "RO", "role_allows", "parse_type", "lookup_method",
           "forward_target"]

_MODULES = (pool, vm, storage, network, auth, task, event, ratelimit, metrics, blob,
            pool_host_features, vm_more)

# One-to-many relations: the "many" side is a ref set the store keeps in step with the
# ref field on the other side (VBD.VM = v  <=>  VBD in v.VBDs). Never written directly.
RELATIONS = {
    ("VM", "VBDs"): ("VBD", "VM"),
    ("VM", "VIFs"): ("VIF", "VM"),
    ("VM", "consoles"): ("console", "VM"),
    ("VM", "snapshots"): ("VM", "snapshot_of"),
    ("VM", "children"): ("VM", "parent"),
    ("host", "resident_VMs"): ("VM", "resident_on"),
    ("host", "PBDs"): ("PBD", "host"),
    ("host", "PIFs"): ("PIF", "host"),
    ("host", "host_CPUs"): ("host_cpu", "host"),
    ("host", "certificates"): ("Certificate", "host"),
    ("SR", "VDIs"): ("VDI", "SR"),
    ("SR", "PBDs"): ("PBD", "SR"),
    ("VDI", "VBDs"): ("VBD", "VDI"),
    ("VDI", "snapshots"): ("VDI", "snapshot_of"),
    ("network", "VIFs"): ("VIF", "network"),
    ("network", "PIFs"): ("PIF", "network"),
    ("PIF", "VLAN_slave_of"): ("VLAN", "tagged_PIF"),
    ("task", "subtasks"): ("task", "subtask_of"),
    ("Rate_limit", "callers"): ("Caller", "rate_limit"),
}


def parse_type(text: str):
    return types.parse(text, ENUMS)


def _generated(c: ClassDef) -> list:
    """The messages xapi generates for a class from its fields and flags."""
    ref = f"{c.name} ref"
    out = []

    def gen(name, params, result="void", kind=None, field=None, **flags):
        m = msg(name, params, result, **flags)
        m.kind, m.field = kind or name, field
        out.append(m)

    read = dict(role=ANY_ROLE, asynchronous=False, mutates=False)
    gen("get_record", f"{ref} self", f"{c.name} record", **read)
    gen("get_by_uuid", "string uuid", ref, **read)
    if c.has_name_label:
        gen("get_by_name_label", "string label", f"{ref} set", **read)
    if c.get_all:
        gen("get_all", "", f"{ref} set", **read)
        gen("get_all_records", "", f"({ref} -> {c.name} record) map", **read)
        gen("get_all_records_where", "string expr", f"({ref} -> {c.name} record) map", **read)
        gen("get_all_where", "string expr", f"{ref} set", **read)
    for f in c.fields:
        gen(f"get_{f.name}", f"{ref} self", f.type_text, "get_field", f.name,
            result_doc=f.doc, **read)
        if not f.writable:
            continue
        write = dict(role=f.setter or f.role or c.write_role, asynchronous=False)
        gen(f"set_{f.name}", f"{ref} self, {f.type_text} value", "void", "set_field", f.name,
            params_doc={"value": f.doc} if f.doc else None, **write)
        if isinstance(f.type, Map):
            gen(f"add_to_{f.name}", f"{ref} self, {f.type.key} key, {f.type.value} value",
                "void", "add_to_map", f.name, **write)
            gen(f"remove_from_{f.name}", f"{ref} self, {f.type.key} key", "void",
                "remove_from_map", f.name, **write)
            for m in out[-3:]:
                m.key_roles = f.key_roles
        elif isinstance(f.type, Set):
            gen(f"add_{f.name}", f"{ref} self, {f.type.elem} value", "void", "add_to_set",
                f.name, **write)
            gen(f"remove_{f.name}", f"{ref} self, {f.type.elem} value", "void",
                "remove_from_set", f.name, **write)
    if c.ctor:
        gen("create", f"{c.name} record args", ref, role=c.write_role)
        gen("destroy", f"{ref} self", role=c.write_role)
    return out


def _build():
    classes = {}
    for module in _MODULES:
        for value in vars(module).values():
            if isinstance(value, ClassDef):
                classes[value.name] = value
    for c in classes.values():
        for f in c.fields:
            f.type = parse_type(f.type_text)
            c.field_map[f.name] = f
    for (owner, many), (child, ref_field) in RELATIONS.items():
        if owner in classes and child in classes:
            classes[owner].field_map[many].derived_from = (child, ref_field)
    methods = {}
    for c in classes.values():
        declared = {m.name for m in c.messages}
        if c.stored:  # classes with no objects (event) have no generated messages
            c.messages = [m for m in _generated(c) if m.name not in declared] + c.messages
        for m in c.messages:
            m.cls = c.name
            for p in m.params:
                p.type = parse_type(p.type_text)
            m.result = parse_type(m.result_text)
            m.forward = c.forward.get(m.name, m.forward)
            _check_forward(m, classes)
            c.message_map[m.name] = m
            methods[m.wire_name] = m
        unknown = set(c.forward) - set(c.message_map)
        if unknown:
            raise ValueError(f"{c.name}.forward names no message: {', '.join(unknown)}")
    costs.apply(methods)
    return classes, methods


def _forward_target(m: Message, classes: dict):
    """(parameter index, record field or None, Ref type) of m.forward; None if it names
    no ref to a class whose objects belong to a host."""
    name, _, fname = m.forward.partition(".")
    names = [p.name for p in m.params]
    if name not in names:
        return None
    index = names.index(name)
    ptype = m.params[index].type
    if fname:
        field = classes[ptype.cls].field_map.get(fname) if isinstance(ptype, Record) else None
        ptype = field.type if field is not None else None
    if not isinstance(ptype, Ref) or ptype.cls not in FORWARD_OWNERS:
        return None
    return index, fname or None, ptype


def _check_forward(m: Message, classes: dict) -> None:
    if m.forward is not None and _forward_target(m, classes) is None:
        raise ValueError(f"{m.cls}.{m.name}: forward={m.forward!r} names no ref to one of "
                         f"{', '.join(FORWARD_OWNERS)}")


CLASSES, METHODS = _build()


def forward_target(m: Message) -> tuple[int, str | None, Ref]:
    """Where a forwarded message's owner is named: (parameter index, the record
    parameter's field or None, the ref type)."""
    return _forward_target(m, CLASSES)
# xapi also accepts Class_message for Class.message.
_ALIASES = {f"{m.cls}_{m.name}": m for m in METHODS.values()}


def lookup_method(name: str) -> Message | None:
    return METHODS.get(name) or _ALIASES.get(name)
