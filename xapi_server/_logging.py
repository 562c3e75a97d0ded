"""The server's logger. Passwords and session secrets are never passed to it."""
import logging

log = logging.getLogger("xapi_server")


def configure(level: str = "INFO"):
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
