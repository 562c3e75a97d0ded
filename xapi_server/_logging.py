"""The server's log: one logger tree, `xapi_server`, with a logger per module
(`log = logging.getLogger(__name__)`), so a line names the module that wrote it and a
level can be set for one part of the server. Passwords and session secrets are never
passed to it. The audit log is no part of it (audit.py: its own file, not propagated).
"""
import collections
import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
RECENT_LINES = 5000


class RecentLines(logging.Handler):
    """The last RECENT_LINES lines of the log, for host.get_log (xapi hands out its own
    log there; ours goes to stderr and the journal, which a client cannot read)."""

    def __init__(self):
        super().__init__()
        self.lines: collections.deque = collections.deque(maxlen=RECENT_LINES)
        self.setFormatter(logging.Formatter(FORMAT))

    def emit(self, record):
        try:
            self.lines.append(self.format(record))
        except Exception:   # a record that cannot be formatted is not worth a crash
            self.handleError(record)

    def text(self) -> str:
        return "".join(line + "\n" for line in list(self.lines))


RECENT = RecentLines()


def configure(level: str = "INFO"):
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=FORMAT)
    root = logging.getLogger()
    if RECENT not in root.handlers:
        root.addHandler(RECENT)
