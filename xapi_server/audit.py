"""The audit log: one JSON line per call that changes something (or tries to).

`<data-dir>/audit.log`, rotated by size. Each line: time, user, originator, address,
method, the object refs among the arguments, and "success" or the error code. Other
arguments (names, passwords, values) are never written.

A full disk must not stop the server nor tear a line: each line goes out in one write
and a partly written one is cut off again; the records that could not be written are
counted and reported in the server log (once when it starts, once when it ends).
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
from datetime import datetime, timezone

from ._logging import log


class Audit:
    def __init__(self, data_dir: str, max_bytes: int, backups: int):
        self.path = os.path.join(data_dir, "audit.log")
        self._log = logging.getLogger(f"xapi_server.audit.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        handler = _WholeLines(self.path, maxBytes=max_bytes, backupCount=backups)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._log.addHandler(handler)

    def record(self, store, ctx, args, outcome: str):
        user, originator = "", ""
        if ctx.session and store.exists("session", ctx.session):
            session = store.record("session", ctx.session)
            user, originator = session["auth_user_name"], session["originator"]
        elif ctx.message.name.startswith(("login", "slave_local")) and args:
            user = args[0]  # the user name; the password is never logged
        refs = _refs(args)
        self._log.info(json.dumps({
            "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "user": user, "originator": originator, "address": ctx.peer,
            "method": ctx.message.wire_name, "task": ctx.task or "",
            "refs": refs, "result": outcome}, ensure_ascii=False))

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""


class _WholeLines(logging.handlers.RotatingFileHandler):
    """A rotating file whose lines are written whole or not at all."""
    lost = 0   # records not written since the last one that was

    def emit(self, record):
        try:
            data = (self.format(record) + "\n").encode("utf-8")
            if self.shouldRollover(record):
                self.doRollover()
            if self.stream is None:
                self.stream = self._open()
            fd = self.stream.fileno()   # the text layer is bypassed: its buffer stays empty
            size = os.fstat(fd).st_size
            written = os.write(fd, data)   # O_APPEND: the end, even after a rotation
            if written < len(data):
                os.ftruncate(fd, size)
                raise OSError(f"short write ({written} of {len(data)} bytes)")
        except OSError as exc:
            if not self.lost:
                log.error("audit log %s cannot be written (%s): audit records are lost "
                          "until it can", self.baseFilename, exc)
            self.lost += 1
            return
        except Exception:
            self.handleError(record)
            return
        if self.lost:
            log.warning("audit log %s written again; %d audit records were lost",
                        self.baseFilename, self.lost)
            self.lost = 0


def _refs(args) -> list[str]:
    found = []
    for value in args:
        if isinstance(value, str) and value.startswith("OpaqueRef:"):
            found.append(value)
        elif isinstance(value, list):
            found.extend(_refs(value))
    return found
