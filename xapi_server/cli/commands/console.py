"""`xe console`: attach the terminal to a VM's text (vt100) console, as xapi's cli
`console` command does: pick the VM's vt100 console, order the thin client to CONNECT
to it with the CLI user's session (HttpConnect), and wait while the user is attached.

The order carries the console location's path and query, not its host: the client
connects to the server it is already talking to, as it does for HttpGet/HttpPut
(xe_cli/transfer.py), because the host address in a location (host.address) need not
be the address the client reached us by (a loopback-only listener, NAT). xapi's own xe
accepts a path there as well.
"""
from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import CliFailure
from ..generic import VIEWS
from ..select import select
from ..table import command


@command("console", selectors="vm",
         help="Attach to the text console of the selected VM (Ctrl-] leaves).")
async def console(ctx):
    vm = (await select(ctx, VIEWS["vm"], single=True))[0]
    text = [c for c in await ctx.call("VM.get_consoles", vm)
            if await ctx.call("console.get_protocol", c) == "vt100"]
    if not text:
        raise CliFailure("No text console available")
    name = await ctx.call("VM.get_name_label", vm)
    location = urlsplit(await ctx.call("console.get_location", text[0]))
    await ctx.io.stderr(f"Connecting to the console of VM {name}. "
                        f"Press Ctrl + ']' to quit.\n")
    if not await ctx.io.connect(f"{location.path}?{location.query}"
                                f"&session_id={ctx.session}"):
        raise CliFailure("Failed to connect to console.")
