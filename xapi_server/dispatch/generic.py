"""Behaviour of the messages the datamodel generates for every class.

Each function takes the call context, the message and the unmarshalled arguments.
Class-specific code overrides one by registering an implementation of the same wire
name (see `registry.py`); everything else lands here.
"""
from __future__ import annotations

import asyncio

from ..datamodel import CLASSES, NULL_REF, Ref, Set
from ..errors import ApiError
from .filter import compile_expr
from .unmarshal import unmarshal_field

SLICE_SECONDS = 0.002   # the longest a filter evaluation holds the event loop at a time


def check_ref(ctx, cname: str, ref: str):
    """Refs to stored classes must exist; NULL is allowed; refs to classes we do not
    store (e.g. VUSB) cannot be checked and are refused unless NULL."""
    if ref == NULL_REF:
        return
    if cname not in CLASSES or not ctx.store.exists(cname, ref):
        raise ApiError("HANDLE_INVALID", cname, ref)


def check_refs_in(ctx, ftype, value):
    if isinstance(ftype, Ref):
        check_ref(ctx, ftype.cls, value)
    elif isinstance(ftype, Set) and isinstance(ftype.elem, Ref):
        for item in value:
            check_ref(ctx, ftype.elem.cls, item)


def _db_string(cdef):
    fields = cdef.field_map
    return lambda name, value: fields[name].type.db_string(value)


def get_record(ctx, m, ref):
    return ctx.store.record(m.cls, ref)


def get_by_uuid(ctx, m, uuid):
    return ctx.store.by_uuid(m.cls, uuid)


def get_by_name_label(ctx, m, label):
    return ctx.store.find(m.cls, name_label=label)


def get_all(ctx, m):
    return ctx.store.refs(m.cls)


def get_all_records(ctx, m):
    return dict(ctx.store.tables[m.cls])


async def get_all_records_where(ctx, m, expr):
    """Evaluated in slices of at most SLICE_SECONDS, giving the event loop back between
    them: a long expression over many objects must not stall every other caller."""
    predicate = compile_expr(expr)
    fmt = _db_string(CLASSES[m.cls])
    table = ctx.store.tables[m.cls]
    loop = asyncio.get_running_loop()
    found, slice_end = [], loop.time() + SLICE_SECONDS
    for i, (ref, rec) in enumerate(list(table.items())):
        if predicate(rec, fmt):
            found.append(ref)
        if i % 16 == 15 and loop.time() > slice_end:
            await asyncio.sleep(0)
            slice_end = loop.time() + SLICE_SECONDS
    return {ref: table[ref] for ref in found if ref in table}   # not those deleted meanwhile


async def get_all_where(ctx, m, expr):
    return list(await get_all_records_where(ctx, m, expr))


def get_field(ctx, m, ref):
    return ctx.store.record(m.cls, ref)[m.field]


def set_field(ctx, m, ref, value):
    ctx.store.record(m.cls, ref)
    check_refs_in(ctx, CLASSES[m.cls].field_map[m.field].type, value)
    ctx.store.update(m.cls, ref, **{m.field: value})


def add_to_map(ctx, m, ref, key, value):
    current = ctx.store.record(m.cls, ref)[m.field]
    if key in current:
        raise ApiError("MAP_DUPLICATE_KEY", m.cls, m.field, ref, key)
    ctx.store.update(m.cls, ref, **{m.field: {**current, key: value}})


def remove_from_map(ctx, m, ref, key):
    current = ctx.store.record(m.cls, ref)[m.field]
    if key in current:
        ctx.store.update(m.cls, ref, **{m.field: {k: v for k, v in current.items() if k != key}})


def add_to_set(ctx, m, ref, value):
    current = ctx.store.record(m.cls, ref)[m.field]
    check_refs_in(ctx, CLASSES[m.cls].field_map[m.field].type.elem, value)
    if value not in current:
        ctx.store.update(m.cls, ref, **{m.field: current + [value]})


def remove_from_set(ctx, m, ref, value):
    current = ctx.store.record(m.cls, ref)[m.field]
    if value in current:
        ctx.store.update(m.cls, ref, **{m.field: [v for v in current if v != value]})


def constructor_fields(ctx, cname: str, args: dict) -> dict:
    """Check a create() struct against the class: RW and RO/constructor fields only,
    those without a default are required, each value must fit its field's type."""
    cdef = CLASSES[cname]
    fields = {}
    for f in cdef.fields:
        if not f.in_constructor or f.derived_from:
            continue
        if f.name in args:
            value = unmarshal_field(f, args[f.name])
            check_refs_in(ctx, f.type, value)
            fields[f.name] = value
        elif not f.has_default:
            raise ApiError("FIELD_TYPE_ERROR", f.name)
    return fields


def create(ctx, m, args):
    return ctx.store.create(m.cls, constructor_fields(ctx, m.cls, args))


def destroy(ctx, m, ref):
    ctx.store.delete(m.cls, ref)


GENERIC = {name: fn for name, fn in globals().items()
           if name in ("get_record", "get_by_uuid", "get_by_name_label", "get_all",
                       "get_all_records", "get_all_records_where", "get_all_where", "get_field",
                       "set_field", "add_to_map", "remove_from_map", "add_to_set",
                       "remove_from_set", "create", "destroy")}
