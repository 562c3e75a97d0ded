"""Interface names that come from API clients (a network's bridge, a PIF's device),
refused in XenAPI's terms before any driver sees them."""
from __future__ import annotations

from ...backends.network import valid_name
from ...errors import ApiError


def check_name(field_name: str, name: str) -> str:
    if not valid_name(name):
        raise ApiError("INVALID_VALUE", field_name, name)
    return name
