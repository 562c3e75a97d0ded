"""The XenAPI error a refused network command becomes. Here, below api/, so network,
PIF, VLAN and VIF code share it without importing one another."""
from __future__ import annotations

from ...errors import ApiError


def kernel_error(exc: Exception) -> ApiError:
    """A refused iproute2 command reaches the client with the kernel's words."""
    return ApiError("INTERNAL_ERROR", f"network: {exc}")
