"""Choosing objects: `*-list` filters and the selectors of vm-*/host-*/sr-* commands.

A filter `name=value` compares the printed value exactly; `map:key=value` one key of
a map field (also the legacy `map-key=value`); `set:contains=value` membership. For
selector commands, `vm=` (or `host=`, `sr=`) matches the uuid or the name-label
(hosts also the hostname). Use `select()` in hand-written commands:

    vms = await select(ctx, VIEWS["vm"], used=("force", "on", "paused"))
    await each(ctx, "VM", vms, lambda vm: ctx.call("VM.clean_shutdown", vm))
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from typing import Callable

from ..errors import ApiError
from .errors import CliExit, CliFailure
from .records import FIELDS, cli_class, field_index


@dataclass
class View:
    """A class as the CLI lists it (vm, template and snapshot are views of VM)."""
    name: str
    cls: str
    defaults: tuple = ("uuid", "name-label", "name-description")
    builtin: dict = dc_field(default_factory=dict)    # filters --all switches off
    keep: Callable | None = None                      # extra record predicate (role)


def _resolve(cname: str, key: str):
    fields = field_index(cname)
    if key in fields:
        return fields[key], None, "eq"
    name, colon, sub = key.partition(":")
    if colon and name in fields:
        kind = fields[name].kind
        if kind == "M":
            return fields[name], sub, "map"
        if kind == "S" and sub == "contains":
            return fields[name], None, "contains"
    maps = [f for f in FIELDS[cname] if f.kind == "M" and key.startswith(f.name + "-")]
    if maps:  # legacy other-config-foo=bar: the longest map name wins
        best = max(maps, key=lambda f: len(f.name))
        return best, key[len(best.name) + 1:], "map"
    return None, None, None


def _matcher(ctx, cname: str, key: str, wanted: str):
    field, sub, how = _resolve(cname, key)
    if field is None:
        raise CliFailure(f"Unknown field '{key}'")
    if how == "eq":
        return field, lambda rec: field.value(rec, ctx) == wanted
    if how == "map":
        return field, lambda rec: (field.map_value(rec, ctx) or {}).get(sub) == wanted
    return field, lambda rec: wanted in field.value(rec, ctx).split("; ")


async def matching(ctx, view: View, filters: dict, use_builtin=True) -> list[tuple[str, dict]]:
    """(ref, record) pairs of `view` matching all filters, in a stable order."""
    records = await ctx.all_records(view.cls)
    if not records:
        return []
    tests = []
    for key, wanted in ({**view.builtin, **filters} if use_builtin else filters).items():
        if key == view.name and view.name in ("vm", "host", "sr"):
            tests.append(_pseudo(ctx, view, wanted))
            continue
        field, test = _matcher(ctx, view.cls, key, wanted)
        await ctx.prefetch(field.needs)
        tests.append(test)
    out = [(ref, rec) for ref, rec in records.items()
           if all(t(rec) for t in tests) and (view.keep is None or view.keep(rec))]
    return out


def _pseudo(ctx, view: View, wanted: str):
    names = ("uuid", "name_label", "hostname") if view.cls == "host" else ("uuid", "name_label")
    return lambda rec: any(rec.get(n) == wanted for n in names)


_WORDS = {"VM": ("No matching VMs found", "Multiple matches VMs found"),
          "host": ("No matching hosts found", "Multiple matching hosts found"),
          "SR": ("No matching hosts found", "Multiple matching SRs found")}


async def select(ctx, view: View, used=(), single=False) -> list[str]:
    """Refs chosen by the command's selector parameters; errors as xe when none match
    or several match without --multiple. Parameters in `used` are not filters."""
    filters = ctx.extra(*used)
    found = [ref for ref, _ in await matching(ctx, view, filters)]
    none, many = _WORDS.get(view.cls, (f"No matching {view.name}s found",
                                       f"Multiple matching {view.name}s found"))
    if not found:
        raise CliFailure(none)
    if len(found) > 1:
        if single:
            raise CliFailure(f"{many}. Operation can only be performed on one "
                             f"{view.name.upper() if view.cls == 'VM' else view.name} at a time")
        if not ctx.flag("multiple"):
            raise CliFailure(f"{many}. --multiple required to complete the operation")
    return found


async def each(ctx, cname: str, refs: list[str], op):
    """Run `await op(ref)` on each; with several objects, failures are collected and
    printed on stdout as `operation failed on <uuid>: ...` (exit status 1), as xe."""
    if len(refs) == 1:
        return await op(refs[0])
    failed = False
    for ref in refs:
        try:
            await op(ref)
        except (ApiError, CliFailure) as exc:
            failed = True
            uuid = (ctx.record(cname, ref) or {}).get("uuid", ref)
            detail = exc.description if isinstance(exc, ApiError) else [str(exc)]
            await ctx.io.print(f"operation failed on {uuid}: {detail[0]}")
            for line in detail[1:]:
                await ctx.io.print(line)
    if failed:
        raise CliExit(1)


def view_for(cname: str) -> View:
    return View(cli_class(cname), cname)
