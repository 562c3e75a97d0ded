"""psycopg, imported the first time something asks for it.

Only a pool database on PostgreSQL needs it, yet the modules that speak to one are
imported by every server: loading psycopg and its C extension there cost 0.2-0.5 s of
every start, SQLite or not. `psycopg` here stands for the module: its first attribute
looked up imports it, so call sites read as they would with the module itself
(`psycopg.connect`, `except psycopg.Error`: an except clause looks its class up only
when an exception reaches it)."""
from __future__ import annotations

import importlib


class _LazyModule:
    def __init__(self, name: str, submodules: tuple = ()):
        self._name, self._submodules = name, submodules

    def __getattr__(self, attr: str):
        module = importlib.import_module(self._name)
        for sub in self._submodules:
            importlib.import_module(f"{self._name}.{sub}")
        value = getattr(module, attr)
        setattr(self, attr, value)      # asked once: later lookups skip __getattr__
        return value


psycopg = _LazyModule("psycopg", ("conninfo", "errors"))


def conninfo_to_dict(conninfo: str, **kwargs) -> dict:
    return psycopg.conninfo.conninfo_to_dict(conninfo, **kwargs)
