"""The command table: commands as data (name, parameters, help, flags, action).

    from ..table import command

    @command("vm-start", optional=("force", "on", "paused"), selectors="vm", std=True,
             help="Start the selected VM(s).")
    async def vm_start(ctx):
        for vm in await select(ctx, "VM", ...):
            await ctx.call("VM.start", vm, False, ctx.flag("force"))

`reqd` parameters are checked before the action runs (`Required parameter not
found`); `optional` ones appear in help; `selectors` ("vm", "host", "sr") adds
`<vm-selectors>` to help and the standard selector text; `std` lists the command in
plain `xe help`; `hidden` keeps it out of help.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable


@dataclass
class Command:
    name: str
    run: Callable[..., Awaitable[None]]
    reqd: tuple = ()
    optional: tuple = ()
    help: str = ""
    selectors: str | None = None
    std: bool = False
    hidden: bool = False
    cls: str | None = None        # the API class of a generated command
    # xapi's {neverforward} emergency commands: the one login a pool member takes
    # (session.slave_local_login_with_password), never a cached session
    local: bool = False


COMMANDS: dict[str, Command] = {}


def register(cmd: Command) -> Command:
    if cmd.name in COMMANDS:
        raise ValueError(f"CLI command {cmd.name} defined twice")
    COMMANDS[cmd.name] = cmd
    return cmd


def command(name: str, reqd=(), optional=(), help="", selectors=None, std=False,
            hidden=False, local=False):
    """Decorator: register an `async def action(ctx)` as a CLI command."""
    def wrap(fn):
        register(Command(name, fn, tuple(reqd), tuple(optional), help, selectors, std, hidden,
                         local=local))
        return fn
    return wrap
