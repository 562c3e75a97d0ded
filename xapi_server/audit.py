"""The audit log: one JSON line per call that changes something (or tries to).

`<data-dir>/audit.log`, rotated by size into `audit_backups` older files. Each line: time,
user, originator, address, method, the object refs among the arguments, and "success" or
the error code. Other arguments (names, passwords, values) are never written.

Nobody without an account may push the history out of the rotation: failed logins are
the only lines anonymous clients cause, every field of a line is bounded (a line is at
most `MAX_LINE` bytes), and a flood of failed logins is summarised (`_FailedLogins`).

The files are private (0600), or 0640 and owned by the group `audit_group` names.

A full disk must not stop the server nor tear a line: each line goes out in one write
and a partly written one is cut off again; the records that could not be written are
counted and reported in the server log (once when it starts, once when it ends).
"""
from __future__ import annotations

import asyncio
import grp
import json
import logging
import logging.handlers
import os
import time
from collections import Counter
from datetime import datetime, timezone

from .bounds import USER_NAME_MAX, bounded

log = logging.getLogger(__name__)

MAX_LINE = 4096              # bytes of one audit line, at most
MAX_REFS = 32                # object refs listed in one line; the rest are counted
FAILED_LOGINS_LISTED = 20    # failed logins written one by one per window
MAX_WINDOW = 3600.0          # seconds a window grows to while a flood goes on
SUMMARY_ADDRESSES = 10       # addresses named, with their counts, in a summary line
MAX_ADDRESSES_COUNTED = 10_000


class Audit:
    def __init__(self, settings):
        self.path = os.path.join(settings.data_dir, "audit.log")
        self._log = logging.getLogger(f"xapi_server.audit.{id(self)}")
        self._log.propagate = False
        self._log.setLevel(logging.INFO)
        mode, gid = _file_access(settings.audit_group)
        handler = _WholeLines(self.path, maxBytes=settings.audit_max_bytes,
                              backupCount=settings.audit_backups, mode=mode, gid=gid)
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._log.addHandler(handler)
        self._failed_logins = _FailedLogins(self._write, settings.audit_flood_window)

    def record(self, store, ctx, args, outcome: str):
        user, originator = "", ""
        if ctx.session and store.exists("session", ctx.session):
            session = store.record("session", ctx.session)
            user, originator = session["auth_user_name"], session["originator"]
        elif ctx.message.name.startswith(("login", "slave_local")) and args:
            user = args[0]  # the user name; the password is never logged
            originator = args[3] if len(args) > 3 else ""
        refs = _refs(args)
        entry = {
            "time": _now(), "user": bounded(user, USER_NAME_MAX),
            "originator": bounded(originator), "address": bounded(ctx.peer),
            "method": ctx.message.wire_name, "task": ctx.task or "",
            "refs": refs[:MAX_REFS], "result": outcome}
        if len(refs) > MAX_REFS:
            entry["refs_not_listed"] = len(refs) - MAX_REFS
        if not ctx.session and outcome != "success":
            self._failed_logins.add(entry)
        else:
            self._write(entry)

    def record_http(self, store, session: str, peer: str, action: str, task: str | None,
                    outcome: str):
        """One request to an HTTP handler (`http/get_export`...), as a call's line."""
        user = originator = ""
        if store.exists("session", session):
            record = store.record("session", session)
            user, originator = record["auth_user_name"], record["originator"]
        self._write({"time": _now(), "user": bounded(user, USER_NAME_MAX),
                     "originator": bounded(originator), "address": bounded(peer),
                     "method": action, "task": task or "", "refs": [], "result": outcome})

    def _write(self, entry: dict):
        # ASCII only: a name's control characters or lone surrogates are escaped.
        line = json.dumps(entry)
        if len(line) > MAX_LINE:  # many long refs, or names of escaped characters
            unlisted = len(entry["refs"]) + entry.get("refs_not_listed", 0)
            short = {key: bounded(entry[key], 64) for key in ("user", "originator", "address")}
            line = json.dumps({**entry, **short, "refs": [], "refs_not_listed": unlisted})
        self._log.info(line)

    def read(self) -> bytes:
        try:
            with open(self.path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            return b""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class _FailedLogins:
    """Failed logins (the only lines anonymous clients cause) are written one by one up
    to FAILED_LOGINS_LISTED per window (`audit_flood_window` seconds); the rest are
    counted per address and summarised in one line when the window ends. While a flood
    goes on, nothing more is listed and each window is twice as long as the last (up to
    MAX_WINDOW): a flood that lasts costs a few lines an hour, so it cannot rotate the
    admins' history out of the log."""

    def __init__(self, write, window: float):
        self._write, self._window = write, window
        self._start, self._length, self._flooding = -MAX_WINDOW, window, False
        self._listed = 0
        self._unlisted: Counter[str] = Counter()
        self._since = ""

    def add(self, entry: dict):
        now = time.monotonic()
        if now >= self._start + self._length:
            self._next_window(self._start, now)
        if not self._flooding and self._listed < FAILED_LOGINS_LISTED:
            self._listed += 1
            self._write(entry)
            return
        if not self._unlisted:
            self._since = entry["time"]
            try:  # the summary is written when the window ends, even if all is quiet then
                asyncio.get_running_loop().call_later(self._start + self._length - now,
                                                      self._next_window, self._start, None)
            except RuntimeError:  # no event loop: the next failed login writes it
                pass
        address = entry["address"]
        if address in self._unlisted or len(self._unlisted) < MAX_ADDRESSES_COUNTED:
            self._unlisted[address] += 1
        else:
            self._unlisted["(other addresses)"] += 1

    def _next_window(self, ending: float, now: float | None):
        if ending != self._start:  # a timer for a window that has already ended
            return
        self._flooding = bool(self._unlisted)
        if self._flooding:
            self._write({
                "time": _now(), "user": "", "originator": "", "address": "",
                "method": "session.login_with_password", "task": "", "refs": [],
                "result": "FAILED_LOGINS_SUMMARISED",
                "failed_logins": sum(self._unlisted.values()), "since": self._since,
                "addresses": dict(self._unlisted.most_common(SUMMARY_ADDRESSES))})
            self._unlisted.clear()
        self._length = (min(self._length * 2, MAX_WINDOW) if self._flooding
                        else self._window)
        self._start = time.monotonic() if now is None else now
        self._listed = 0


def _file_access(group: str) -> tuple[int, int | None]:
    """The audit files' mode and group: 0600, or 0640 for the group the admin named."""
    if not group:
        return 0o600, None
    try:
        return 0o640, grp.getgrnam(group).gr_gid
    except KeyError:
        log.error("audit_group %r is no group: the audit log stays readable by root only",
                  group)
        return 0o600, None


class _WholeLines(logging.handlers.RotatingFileHandler):
    """A rotating file whose lines are written whole or not at all, created with the
    audit files' mode and group (rotation renames files, so older ones keep both)."""
    lost = 0   # records not written since the last one that was

    def __init__(self, path, maxBytes, backupCount, mode, gid):
        self._file_mode, self._gid = mode, gid
        super().__init__(path, maxBytes=maxBytes, backupCount=backupCount)
        for name in [path] + [f"{path}.{i}" for i in range(1, backupCount + 1)]:
            self._restrict(name)  # files an older version left readable by everyone

    def _restrict(self, name, fd=None):
        try:
            if fd is None:
                if not os.path.exists(name):
                    return
                os.chmod(name, self._file_mode)
                if self._gid is not None:
                    os.chown(name, -1, self._gid)
            else:
                os.fchmod(fd, self._file_mode)
                if self._gid is not None:
                    os.fchown(fd, -1, self._gid)
        except OSError as exc:
            log.error("cannot restrict access to audit log %s: %s", name, exc)

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, self._file_mode)
        self._restrict(self.baseFilename, fd)  # the umask may have taken bits away
        return os.fdopen(fd, "a", encoding="utf-8")

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
            found.append(bounded(value, 100))
        elif isinstance(value, list):
            found.extend(_refs(value))
    return found
