"""Commands generated from the datamodel for every listable class.

For a view `x` (a class, or vm/template/snapshot over VM): `x-list`, `x-param-list`,
`x-param-get`, and, when some field can be written, `x-param-set`, `x-param-clear`,
`x-param-add`, `x-param-remove`. Writes go through the generated API messages
(set_<f>, add_to_<f>, remove_from_<f>, add_<f>, remove_<f>).
"""
from __future__ import annotations

from ..datamodel import CLASSES, NULL_REF, Enum, Prim, Ref
from ..errors import ApiError
from . import args
from .errors import CliFailure
from .records import FIELDS, field_index
from .select import View, matching, view_for
from .table import Command, register

# Default *-list columns where xe's differ from uuid, name-label, name-description.
DEFAULTS = {
    "vm": ("uuid", "name-label", "power-state"),
    "snapshot": ("uuid", "name-label", "name-description", "is-vmss-snapshot"),
    "pool": ("uuid", "name-label", "name-description", "master", "default-SR"),
    "sr": ("uuid", "name-label", "name-description", "host", "type", "content-type"),
    "pbd": ("uuid", "host-uuid", "sr-uuid", "device-config", "currently-attached"),
    "vdi": ("uuid", "name-label", "name-description", "virtual-size", "read-only", "sharable",
            "sr-uuid"),
    "vbd": ("uuid", "vm-uuid", "vm-name-label", "vdi-uuid", "device", "empty"),
    "network": ("uuid", "name-label", "name-description", "bridge"),
    "vif": ("uuid", "device", "vm-uuid", "network-uuid"),
    "pif": ("uuid", "device", "VLAN", "MAC", "network-uuid", "currently-attached",
            "host-uuid"),
    "task": ("uuid", "name-label", "name-description", "status", "progress"),
    "message": ("uuid", "name", "priority", "class", "obj-uuid", "timestamp", "body"),
    "subject": ("uuid", "subject-identifier", "other-config", "roles"),
    "role": ("uuid", "name", "description"),
    "host-cpu": ("uuid", "number", "vendor", "speed", "utilisation"),
    "console": ("uuid", "vm-uuid", "vm-name-label", "protocol", "location"),
}

# Integer fields that take size suffixes (512MiB) in param-set.
SIZE_FIELDS = {"memory-static-max", "memory-dynamic-max", "memory-dynamic-min",
               "memory-static-min"}


def views() -> list[View]:
    out = []
    for cname, cdef in CLASSES.items():
        if cdef.fields and cdef.get_all:
            out.append(view_for(cname))
    out += [View("template", "VM", builtin={"is-a-template": "true", "is-a-snapshot": "false"}),
            View("snapshot", "VM", builtin={"is-a-snapshot": "true"})]
    for v in out:
        v.defaults = DEFAULTS.get(v.name, v.defaults)
        if v.name == "vm":
            v.builtin = {"is-a-template": "false"}
        if v.name == "role":
            v.keep = lambda rec: bool(rec["subroles"])
    return out


VIEWS = {v.name: v for v in views()}


def pairs(ctx, fields, rec, expensive_ok=True):
    return [(f.label, f.value(rec, ctx)) for f in fields]


def _needs(fields) -> set:
    return set().union(*(f.needs for f in fields)) if fields else set()


def _chosen(view: View, spec: str | None):
    shown = [f for f in FIELDS[view.cls] if not f.hidden]
    if spec == "all":
        return shown
    wanted = set(spec.split(",")) if spec is not None else set(view.defaults)
    return [f for f in shown if f.name in wanted]   # record order, unknown names ignored


async def list_cmd(ctx, view: View):
    fields = _chosen(view, ctx.param("params"))
    filters = ctx.extra("params")
    found = await matching(ctx, view, {} if ctx.flag("all") else filters,
                           use_builtin=not ctx.flag("all"))
    await ctx.prefetch(_needs(fields))
    await ctx.table([pairs(ctx, fields, rec) for _, rec in found])


async def _target(ctx, view: View) -> tuple[str, dict]:
    ref = await ctx.by_uuid(view.cls, ctx.reqd("uuid"))
    rec = await ctx.call(f"{view.cls}.get_record", ref)
    return ref, rec


def _field(view: View, name: str):
    field = field_index(view.cls).get(name)
    if field is None:
        raise ApiError("Missing parameter", name)  # what xapi shows for an unknown field
    return field


async def param_list(ctx, view: View):
    _, rec = await _target(ctx, view)
    fields = [f for f in FIELDS[view.cls] if not f.hidden]
    await ctx.prefetch(_needs(fields))
    await ctx.table([pairs(ctx, fields, rec)])


async def param_get(ctx, view: View):
    _, rec = await _target(ctx, view)
    field = _field(view, ctx.reqd("param-name"))
    await ctx.prefetch(field.needs)
    key = ctx.param("param-key")
    if key is not None and field.kind == "M":
        values = field.map_value(rec, ctx) or {}
        if key not in values:
            raise CliFailure(f"Key {key} not found in map")
        return await ctx.items([values[key]])
    await ctx.items([field.value(rec, ctx)])


async def parse_value(ctx, ftype, text: str, name: str):
    """A typed API value from what the user wrote."""
    if isinstance(ftype, Ref):
        if text in ("", NULL_REF):
            return NULL_REF
        return text if text.startswith("OpaqueRef:") else await ctx.by_uuid(ftype.cls, text)
    if isinstance(ftype, Prim) and ftype.name in ("int", "float"):
        if name in SIZE_FIELDS:
            return args.size(text, name)
        try:
            return int(text) if ftype.name == "int" else float(text)
        except ValueError:
            what = "an integer" if ftype.name == "int" else "a number"
            raise CliFailure(f"Failed to parse field '{name}': expecting {what}, "
                             f"got '{text}'") from None
    if isinstance(ftype, Prim) and ftype.name == "bool":
        return args.boolean(text, name)
    if isinstance(ftype, Enum) or isinstance(ftype, Prim):
        return text
    raise CliFailure(f"Field '{name}' cannot be set from the command line")


def _writable(field, name: str):
    if not field.writable or field.via or field.attr:
        raise CliFailure(f"Field '{name}' is read-only.")
    return field


async def param_set(ctx, view: View):
    ref, _ = await _target(ctx, view)
    fields = field_index(view.cls)
    for key, text in ctx.extra("uuid").items():
        name, colon, mkey = key.partition(":")
        field = fields.get(name if colon else key)
        if field is None:
            raise CliFailure(f"Unknown field '{key}'")
        # A map the datamodel sets key by key through a message (PIF.properties).
        setter = CLASSES[field.cls].field_map[field.api].key_setter
        if colon and setter:
            await ctx.call(setter, ref, mkey, text)
            continue
        _writable(field, name)
        ftype = field.ftype
        if colon:
            if field.kind != "M":
                raise CliFailure(f"Field '{name}' is not a map")
            k = await parse_value(ctx, ftype.key, mkey, name)
            v = await parse_value(ctx, ftype.value, text, name)
            await ctx.call(f"{view.cls}.remove_from_{field.api}", ref, k)
            await ctx.call(f"{view.cls}.add_to_{field.api}", ref, k, v)
        elif field.kind == "S":
            raise CliFailure("Cannot param-set on set fields")
        elif field.kind == "M":
            raise CliFailure(f"Cannot param-set on map fields: use {key}:<key>=<value>")
        else:
            value = await parse_value(ctx, ftype, text, key)
            await ctx.call(f"{view.cls}.set_{field.api}", ref, value)


async def param_clear(ctx, view: View):
    ref, _ = await _target(ctx, view)
    name = ctx.reqd("param-name")
    field = _writable(_field(view, name), name)
    empty = {"S": [], "M": {}}.get(field.kind)
    if empty is None:
        empty = await parse_value(ctx, field.ftype, "", name)
    await ctx.call(f"{view.cls}.set_{field.api}", ref, empty)


async def param_add(ctx, view: View):
    ref, _ = await _target(ctx, view)
    name = ctx.reqd("param-name")
    field = _writable(_field(view, name), name)
    ftype = field.ftype
    if field.kind == "S":
        item = await parse_value(ctx, ftype.elem, ctx.reqd("param-key"), name)
        return await ctx.call(f"{view.cls}.add_{field.api}", ref, item)
    if field.kind != "M":
        raise CliFailure(f"Field '{name}' is not a set or map")
    for k, v in ctx.extra("uuid", "param-name", "param-key").items():
        await ctx.call(f"{view.cls}.add_to_{field.api}", ref,
                       await parse_value(ctx, ftype.key, k, name),
                       await parse_value(ctx, ftype.value, v, name))


async def param_remove(ctx, view: View):
    ref, _ = await _target(ctx, view)
    name = ctx.reqd("param-name")
    field = _writable(_field(view, name), name)
    if field.kind not in ("S", "M"):
        raise CliFailure(f"Field '{name}' is not a set or map")
    ftype = field.ftype
    elem = ftype.elem if field.kind == "S" else ftype.key
    item = await parse_value(ctx, elem, ctx.reqd("param-key"), name)
    method = "remove" if field.kind == "S" else "remove_from"
    await ctx.call(f"{view.cls}.{method}_{field.api}", ref, item)


def _bind(fn, view):
    async def run(ctx):
        await fn(ctx, view)
    return run


def generate():
    for view in VIEWS.values():
        fields = [f for f in FIELDS[view.cls] if f.writable and not f.via and not f.attr]
        what = f"the {view.name} objects" if view.name != "vm" else "the VMs"
        register(Command(f"{view.name}-list", _bind(list_cmd, view),
                         optional=("params",), cls=view.cls, std=view.name in
                         ("vm", "network", "sr"),
                         help=f"Lists {what}, with the fields given by params= (or "
                              f"params=all); other name=value pairs filter. --all "
                              f"shows every object."))
        register(Command(f"{view.name}-param-list", _bind(param_list, view), ("uuid",),
                         cls=view.cls, help=f"Show all the parameters of a {view.name}."))
        register(Command(f"{view.name}-param-get", _bind(param_get, view),
                         ("uuid", "param-name"), ("param-key",), cls=view.cls,
                         help=f"Print one parameter of a {view.name} (param-key: one key "
                              f"of a map)."))
        if not fields:
            continue
        names = tuple(f.name for f in fields if f.kind != "S")
        register(Command(f"{view.name}-param-set", _bind(param_set, view), ("uuid",),
                         names, cls=view.cls,
                         help=f"Set parameters of a {view.name} (map:key=value for maps)."))
        register(Command(f"{view.name}-param-clear", _bind(param_clear, view),
                         ("uuid", "param-name"), cls=view.cls,
                         help=f"Empty a set or map of a {view.name}, or set a field to "
                              f"\"\"."))
        if any(f.kind in ("S", "M") for f in fields):
            register(Command(f"{view.name}-param-add", _bind(param_add, view),
                             ("uuid", "param-name"), ("param-key",), cls=view.cls,
                             help=f"Add to a set (param-key=item) or a map (key=value "
                                  f"...) of a {view.name}."))
            register(Command(f"{view.name}-param-remove", _bind(param_remove, view),
                             ("uuid", "param-name", "param-key"), cls=view.cls,
                             help=f"Remove an item of a set or a key of a map of a "
                                  f"{view.name}."))
