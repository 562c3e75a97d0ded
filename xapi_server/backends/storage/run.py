"""Running the storage tools (qemu-img, lvm2) without blocking the event loop.

Always an explicit argument list, never a shell: names and sizes come from API
callers. A non-zero exit becomes a StorageError carrying what the tool said, which
the API layer turns into SR_BACKEND_FAILURE.
"""
from __future__ import annotations

import asyncio
import os

# lvm2 complains loudly about inherited descriptors; asyncio closes them anyway.
_ENV = {**os.environ, "LVM_SUPPRESS_FD_WARNINGS": "1", "LC_ALL": "C"}


class StorageError(Exception):
    """A driver operation failed; `status`, `stdout`, `stderr` as the tool reported."""

    def __init__(self, status, stdout="", stderr=""):
        super().__init__(status, stdout, stderr)
        self.status, self.stdout, self.stderr = str(status), stdout, stderr

    def __str__(self):
        return f"{self.status}: {self.stderr or self.stdout}".strip()


async def run(*argv: str, timeout: float = 600.0, on_output=None,
              env: dict | None = None) -> str:
    """Run argv; return stdout. `on_output(chunk)` sees stdout as it arrives
    (qemu-img -p progress), in which case the returned text is what was read. `env`:
    variables added to the tool's environment."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**_ENV, **env} if env else _ENV)
    try:
        if on_output is None:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        else:
            out, err = await asyncio.wait_for(_stream(proc, on_output), timeout)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        # Cancelled task or hung tool: do not leave the child behind.
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    text, errtext = out.decode(errors="replace"), err.decode(errors="replace")
    if proc.returncode != 0:
        raise StorageError(proc.returncode, text.strip(), f"{argv[0]}: {errtext.strip()}")
    return text


async def _stream(proc, on_output):
    chunks = []
    err_task = asyncio.ensure_future(proc.stderr.read())
    while True:
        chunk = await proc.stdout.read(4096)
        if not chunk:
            break
        chunks.append(chunk)
        on_output(chunk.decode(errors="replace"))
    err = await err_task
    await proc.wait()
    return b"".join(chunks), err
