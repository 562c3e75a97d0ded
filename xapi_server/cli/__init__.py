"""The xe command line, served at POST /cli (xapi's thin-CLI protocol).

    handler.py   the /cli route: protocol on the raw connection (see its docstring)
    engine.py    one request: parse, find the command, log in, run, report errors
    args.py      parameter parsing, booleans, sizes (512MiB)
    table.py     the command table: Command, register(), @command
    generic.py   <class>-list / -param-list/-get/-set/-clear/-add/-remove for every
                 listable class of the datamodel, and the vm/template/snapshot views
    records.py   CLI field names and value rendering, derived from the datamodel
    select.py    filters, selectors (vm=<name or uuid>, --multiple), each()
    context.py   CliContext: params, ctx.call() through the dispatcher, output
    errors.py    CliFailure ("Error: ..."), usage errors, texts for XenAPI errors
    testing.py   Harness: run commands in-process in tests
    commands/    hand-written commands, one module per family

Adding commands (e.g. vm-start): create `commands/vm.py` and import it in
`commands/__init__.py`:

    from ..generic import VIEWS
    from ..select import each, select
    from ..table import command

    @command("vm-start", optional=("force", "on", "paused"), selectors="vm", std=True,
             help="Start the selected VM(s).")
    async def vm_start(ctx):
        vms = await select(ctx, VIEWS["vm"], used=("force", "on", "paused"))
        await each(ctx, "VM", vms, lambda vm: ctx.call(
            "VM.start", vm, ctx.flag("paused"), ctx.flag("force")))

Every API call goes through `ctx.call("Class.message", *args)` (the dispatcher, with the
CLI user's session: roles and validation apply). Print with `ctx.items([uuid])` for
values (honours --minimal), `ctx.table([...])` for records, `ctx.message(text)`;
fail with `raise CliFailure("text")` (printed as "Error: text", exit 1). Size
parameters: `args.size(text, name)`; booleans: `ctx.flag(name)`. Describe new XenAPI
error codes in `errors.ERROR_TEXT`. Test in-process with `testing.Harness` (see tests/test_cli_format.py).
"""
from .generic import generate as _generate
from . import commands  # noqa: F401  (registers the hand-written commands)

_generate()
