"""A call to the hypervisor driver as the API reports its failure: INTERNAL_ERROR with
libvirt's text. Here, below api/, so every VM module can use it without importing
api/vm.py (which imports them)."""
from __future__ import annotations

from ...backends.hypervisor import HypervisorError
from ...errors import ApiError


async def hv_call(coro):
    """Await a driver call; a HypervisorError becomes INTERNAL_ERROR "hypervisor: ..."."""
    try:
        return await coro
    except HypervisorError as exc:
        raise ApiError("INTERNAL_ERROR", f"hypervisor: {exc}") from None
