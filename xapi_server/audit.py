"""The audit log: one JSON line per call that changes something (or tries to).

`<data-dir>/audit.log`, rotated by size. Each line: time, user, originator, address,
method, the object refs among the arguments, and "success" or the error code. Other
arguments (names, passwords, values) are never written.
"""
from __future__ import annotations

import json
import logging
import logging.handlers
import os
from datetime import datetime, timezone


class Audit:
    def __init__(self, data_dir: str, max_bytes: int, backups: int):
        self.path = os.path.join(data_dir, "audit.log")
        self._log = logging.getLogger(f"xapi_server.audit.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        handler = logging.handlers.RotatingFileHandler(self.path, maxBytes=max_bytes,
                                                       backupCount=backups)
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


def _refs(args) -> list[str]:
    found = []
    for value in args:
        if isinstance(value, str) and value.startswith("OpaqueRef:"):
            found.append(value)
        elif isinstance(value, list):
            found.extend(_refs(value))
    return found
