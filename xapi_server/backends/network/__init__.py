"""Host networking drivers: the contract they fulfil (contract.py) and the factory that
opens one. Drivers import the contract module, never this package, so the factory
imports them at module level without an import cycle."""
from __future__ import annotations

from .contract import (IFNAMSIZ, Link, NetworkBackend, NetworkError, NicInfo, Route,
                       valid_name)
from .iproute import IpRoute

__all__ = ["IFNAMSIZ", "Link", "NetworkBackend", "NetworkError", "NicInfo", "Route",
           "valid_name", "open_backend"]


def open_backend(netns: str | None = None) -> NetworkBackend:
    return IpRoute(netns)
