"""`xe help`, `xe help --all`, `xe help <command> ...` (answered without logging in).

`xe help <class>-param-get param-name=<field>[,<field>...]` (any command of a class)
also describes the fields named, from the datamodel's docs."""
from __future__ import annotations

import textwrap

from ...datamodel import CLASSES
from ..records import field_index
from ..table import COMMANDS
from ..errors import CliExit

USAGE = """Usage: xe <command> [-s server] [-p port] ([-u username] [-pw password] or [-pwf <password file>]) <other arguments>

To get help on a specific command: xe help <command>
To get a full listing of commands: xe help --all"""

SELECTOR_TEXT = {
    "vm": "The simplest way to select the VM on which the operation is to be performed "
          "is by supplying the argument 'vm=<name or uuid>'. VMs can also be specified by "
          "filtering the full list of VMs on the values of fields. For example, specifying "
          "'power-state=halted' will select all VMs whose power-state field is equal to "
          "'halted'. Where multiple VMs are matching, the option '--multiple' must be "
          "specified to perform the operation. The full list of fields that can be matched "
          "can be obtained by the command 'xe vm-list params=all'. If no parameters to "
          "select VMs are given, the operation will be performed on all VMs.",
    "host": "Hosts are selected with 'host=<name, hostname or uuid>' or by filtering on "
            "any host field ('xe host-list params=all' lists them); '--multiple' is needed "
            "when several hosts match.",
    "sr": "SRs are selected with 'sr=<name or uuid>' or by filtering on any SR field "
          "('xe sr-list params=all' lists them); '--multiple' is needed when several SRs "
          "match.",
}


def _wrapped(names: list[str]) -> str:
    return "\n".join(textwrap.wrap(", ".join(names), 74, initial_indent="    ",
                                   subsequent_indent="    ", break_on_hyphens=False))


async def _describe_fields(ctx, cls: str, names: list[str]):
    """One record per field xe shows for `cls`: its API name, type and doc."""
    index = field_index(cls)
    for name in names:
        shown = index.get(name)
        if shown is None:
            await ctx.message(f"Unknown parameter '{name}'")
            continue
        f = CLASSES[shown.cls].field_map[shown.api]
        await ctx.table([[("param name", shown.label), ("field", f"{shown.cls}.{f.name}"),
                          ("type", f.type_text),
                          ("description", f.doc or "(not described)")]])


def _visible():
    return sorted(c for c, cmd in COMMANDS.items() if not cmd.hidden)


async def help_cmd(ctx):
    asked = [k for k, v in ctx.params.items() if v == "" and k not in ("all", "minimal")]
    if asked:
        unknown = False
        for name in asked:
            cmd = COMMANDS.get(name)
            if cmd is None:
                # xapi's words, on stdout; but status 1 (xapi: 0), so scripts notice
                await ctx.message(f"Unknown command '{name}'")
                unknown = True
                continue
            optional = list(cmd.optional)
            description = cmd.help
            if cmd.selectors:
                optional.append(f"<{cmd.selectors}-selectors>")
                description += " " + SELECTOR_TEXT.get(cmd.selectors, "")
            await ctx.table([[("command name", cmd.name),
                              ("reqd params", ", ".join(cmd.reqd)),
                              ("optional params", ", ".join(optional)),
                              ("description", description)]])
            if cmd.cls and ctx.params.get("param-name"):
                await _describe_fields(ctx, cmd.cls, ctx.params["param-name"].split(","))
        if unknown:
            raise CliExit(1)
        return
    if ctx.flag("all"):
        names = ["help", *_visible()]
        if ctx.minimal:
            return await ctx.items(names)
        hosts = [n for n in names if n.startswith("host-")]
        vms = [n for n in names if n.startswith("vm-")]
        rest = [n for n in names if n not in hosts and n not in vms]
        text = (f"{USAGE}\n\nFull command list\n-----------------\n{_wrapped(hosts)}\n\n"
                f"{_wrapped(vms)}\n\n{_wrapped(rest)}")
        return await ctx.message(text)
    common = [n for n in _visible() if COMMANDS[n].std]
    if ctx.minimal:
        return await ctx.items(common)
    await ctx.message(f"{USAGE}\n\nCommon command list\n-------------------\n{_wrapped(common)}")
