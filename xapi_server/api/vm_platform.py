"""VM messages about the guest's platform: its device model, firmware (UEFI and secure
boot), shadow memory and Windows sysprep.

What xapi does through Xen and its PV drivers has a QEMU counterpart only for the
device model (restarted by saving and restoring the guest, where xapi migrates it to
its own host). The rest answers as xapi does for a guest that lacks the feature:
every domain here boots the machine's BIOS (services/vm/domxml.py writes no UEFI
loader), QEMU keeps no shadow page tables, and no guest has the Xen PV drivers that
sysprep talks to.
"""
from __future__ import annotations

import os
import shutil

from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.vm.calls import hv_call
from .vm_checks import vm_operation
from .vm_image import scratch_dir

MAX_UNATTEND = 32 * 1024   # xapi refuses a larger unattend.xml


@implements("VM.restart_device_models")
async def restart_device_models(ctx, self):
    # xapi restarts them with a local VM.pool_migrate: that operation's checks apply.
    async with vm_operation(ctx, self, "pool_migrate"):
        runtime = ctx.server.runtime_of_vm(self).vms
        work = scratch_dir(ctx.server)
        uuid = ctx.store.get("VM", self, "uuid")
        try:
            async with runtime.held(uuid):   # the stop in between is not a shutdown
                await hv_call(runtime.hv.restart_device_model(uuid,
                                                              os.path.join(work, "state")))
        finally:
            shutil.rmtree(work, ignore_errors=True)


@implements("VM.set_shadow_multiplier_live")
async def set_shadow_multiplier_live(ctx, self, multiplier):
    async with vm_operation(ctx, self, "changing_shadow_memory_live"):
        if not multiplier >= 1.0:   # also NaN
            raise ApiError("INVALID_VALUE", "multiplier", str(multiplier))
        # xapi ignores a domain without shadow memory (xenopsd: Unimplemented) and
        # keeps the value; so here, where no QEMU domain has any.
        ctx.store.update("VM", self, HVM_shadow_multiplier=float(multiplier))


@implements("VM.sysprep")
async def sysprep(ctx, self, unattend, timeout):
    rec = ctx.store.record("VM", self)
    if rec["power_state"] != "Running":
        raise ApiError("SYSPREP", rec["uuid"], "VM is not running")
    if len(unattend.encode()) > MAX_UNATTEND:
        raise ApiError("SYSPREP", rec["uuid"], "unattend.xml file too large")
    # xapi asks the guest's PV drivers (xenstore control/feature-sysprep); a QEMU
    # guest has no such drivers.
    raise ApiError("SYSPREP", rec["uuid"], "VM driver does not support sysprep")


@implements("VM.get_secureboot_readiness")
def get_secureboot_readiness(ctx, self):
    ctx.store.record("VM", self)
    # xapi's answer for a VM whose firmware is BIOS, as every domain here boots
    # (whatever HVM_boot_params['firmware'] asks for).
    return "not_supported"


@implements("VM.set_uefi_mode")
def set_uefi_mode(ctx, self, mode):
    uuid = ctx.store.get("VM", self, "uuid")
    raise ApiError("OPERATION_NOT_ALLOWED",
                   f"VM {uuid} does not boot with UEFI firmware: it has no UEFI variable "
                   f"store to put in {mode} mode")


@implements("VM.update_secureboot_certificates_on_boot")
def update_secureboot_certificates_on_boot(ctx, self, mark):
    """The mark moves secureboot_certificates_state between update_available and
    update_on_boot; nothing else has an update to mark (without UEFI firmware no
    VM here ever has one available)."""
    state = ctx.store.get("VM", self, "secureboot_certificates_state")
    if mark and state in ("update_available", "update_on_boot"):
        ctx.store.update("VM", self, secureboot_certificates_state="update_on_boot")
    elif not mark and state in ("update_on_boot", "update_available"):
        ctx.store.update("VM", self, secureboot_certificates_state="update_available")
    elif mark:
        raise ApiError("OPERATION_NOT_ALLOWED",
                       "no secure boot certificate update is available for this VM")
