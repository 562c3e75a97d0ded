"""The server's log: one logger tree, `xapi_server`, with a logger per module
(`log = logging.getLogger(__name__)`), so a line names the module that wrote it and a
level can be set for one part of the server. Passwords and session secrets are never
passed to it. The audit log is no part of it (audit.py: its own file, not propagated).
"""
import logging


def configure(level: str = "INFO"):
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
