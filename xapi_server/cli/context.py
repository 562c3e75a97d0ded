"""What a command gets: its parameters, API calls through the dispatcher, and output.

Output mirrors xapi's printer: `table` prints records (each followed by two blank
lines), `items` one value per line, `message` a line, `warn` a line on stderr. With
--minimal, tables and lists collapse to one line of comma-separated first values
(`,` and `\\` escaped) printed when the command ends, and messages are dropped.
"""
from __future__ import annotations

from ..datamodel import CLASSES
from .args import STANDARD, flag
from .errors import MissingParam
from .records import Lookup, layout

# The user agent xe's calls are counted under by the rate limiter (see Caller).
CLI_USER_AGENT = "xe"


def escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,")


class Output:
    """The client end. WireIO (handler.py) speaks the protocol; tests record."""

    async def print(self, text: str): ...
    async def stderr(self, text: str): ...
    async def error(self, code: str, params: list): ...
    async def prompt(self) -> str: ...
    async def load(self, filename: str) -> bytes | None: ...
    async def http(self, put: bool, filename: str, url: str) -> bool: ...
    async def connect(self, url: str) -> bool: ...   # HttpConnect: attach a console


class CliContext(Lookup):
    def __init__(self, server, params: dict, io: Output, session: str | None, peer: str = ""):
        self.server, self.params, self.io = server, params, io
        self.session, self.peer = session, peer
        self.minimal = flag(params, "minimal")
        self._buffer: list[str] = []
        self._cache: dict[str, dict] = {}

    # -- parameters -----------------------------------------------------------------

    def param(self, name: str, default=None) -> str | None:
        return self.params.get(name, default)

    def reqd(self, name: str) -> str:
        if name not in self.params:
            raise MissingParam(name)
        return self.params[name]

    def flag(self, name: str) -> bool:
        return flag(self.params, name)

    def extra(self, *used: str) -> dict:
        """Parameters that are not standard ones nor in `used` (filters, selectors)."""
        return {k: v for k, v in self.params.items()
                if k not in STANDARD and k not in used and not k.startswith("database:")}

    # -- API ------------------------------------------------------------------------

    async def call(self, method: str, *args):
        """A XenAPI call as this CLI user: the dispatcher checks roles and arguments."""
        return await self.server.dispatcher.call(method, [self.session, *args], self.peer,
                                                 user_agent=CLI_USER_AGENT)

    async def all_records(self, cname: str) -> dict:
        if cname not in self._cache:
            self._cache[cname] = await self.call(f"{cname}.get_all_records")
        return self._cache[cname]

    async def prefetch(self, classes):
        for cname in classes:
            if cname in CLASSES and CLASSES[cname].get_all:
                await self.all_records(cname)

    def record(self, cname: str, ref: str) -> dict | None:
        return self._cache.get(cname, {}).get(ref)

    def forget(self, cname: str):
        """Drop cached records after a change."""
        self._cache.pop(cname, None)

    async def by_uuid(self, cname: str, uuid: str) -> str:
        return await self.call(f"{cname}.get_by_uuid", uuid)

    # -- output ---------------------------------------------------------------------

    async def table(self, records: list[list[tuple[str, str]]]):
        if self.minimal:
            if records and records[0]:
                self._buffer.append(",".join(escape(r[0][1]) for r in records if r))
            return
        for pairs in records:
            await self.io.print(layout(pairs) + "\n")

    async def items(self, values: list[str]):
        if self.minimal:
            self._buffer.append(",".join(escape(v) for v in values))
            return
        for value in values:
            await self.io.print(value)

    async def message(self, text: str):
        if not self.minimal:
            await self.io.print(text)

    async def warn(self, text: str):
        if not self.minimal:
            await self.io.stderr(text + "\n")

    async def finish(self):
        if self.minimal:
            # xapi prepends each chunk and joins without reversing: keep that order.
            await self.io.print(",".join(reversed(self._buffer)))
