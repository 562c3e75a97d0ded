"""In-process CLI runs for tests (as click.testing): a real Server (store, dispatcher,
auth) in a data dir, driven through `engine.execute` with a recording client end.

    h = Harness(tmp_dir)
    code, out, err = h.run("vm-list", "--minimal")
"""
from __future__ import annotations

import asyncio

from ..config import Settings
from ..server import Server
from .context import Output
from .engine import execute

PASSWORD = "cli-test-password"


class Recording(Output):
    """What a real xe would write: Print -> stdout + newline, PrintStderr as is,
    Error -> the two lines xe prints."""

    def __init__(self, answers=()):
        self.out, self.err, self.answers = [], [], list(answers)

    async def print(self, text):
        self.out.append(text + "\n")

    async def stderr(self, text):
        self.err.append(text)

    async def error(self, code, params):
        self.err.append(f"Error code: {code}\nError parameters: {', '.join(params)}\n")

    async def prompt(self):
        return self.answers.pop(0)

    async def load(self, filename):
        return None

    async def http(self, put, filename, url):
        return False


class Harness:
    def __init__(self, data_dir: str, **settings):
        self.loop = asyncio.new_event_loop()
        self.server = Server(Settings(data_dir=data_dir, auth_failure_delay=0.0, **settings))
        self.loop.run_until_complete(self.server.startup())
        self.server.auth.set_password("root", PASSWORD)
        self.store = self.server.store

    def run(self, *argv, user="root", password=PASSWORD, answers=()):
        """(exit status, stdout, stderr) of `xe <argv>`."""
        io = Recording(answers)
        tokens = [*argv, f"username={user}", f"password={password}"]
        code = self.loop.run_until_complete(execute(self.server, tokens, io, "127.0.0.1"))
        return code, "".join(io.out), "".join(io.err)

    def flush(self):
        self.loop.run_until_complete(self.store.flush())

    def close(self):
        self.loop.run_until_complete(self.server.shutdown())
        self.loop.close()
