"""Before libvirt sees a domain or device XML: can QEMU's user open every file it
names? The driver (backends/hypervisor/qemu_access) finds the blocking folder and
grants search permission where the settings allow; this says no in XenAPI's terms."""
from __future__ import annotations

from ...backends.hypervisor.qemu_access import explain, files_in_domain, folders_above, unreachable
from ...errors import ApiError


async def ensure_reachable(server, hv, xml: str) -> None:
    """Refuse (or fix) a domain or device XML naming files QEMU's user cannot reach."""
    files = files_in_domain(xml)
    problem = await unreachable(server.settings, hv, list(files))
    if problem is None:
        return
    folder, uid = problem
    path, kind = next((p, k) for p, k in files.items() if folder in folders_above(p))
    message = explain(folder, uid, path)
    if kind == "disk":
        raise ApiError("SR_BACKEND_FAILURE", "EACCES", "", message)
    raise ApiError("INVALID_VALUE", "kernel" if kind == "kernel" else "ramdisk", path, message)
