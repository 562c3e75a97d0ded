"""`lvm` SRs: device_config:device becomes a PV with a VG named after the SR uuid
(VG_XenStorage-<uuid>); each VDI is a raw LV named LV-<vdi uuid>.

Without device-mapper in the kernel (containers, some CI hosts) lvm2 can still keep
metadata: we pass --driverloaded n so create/resize/remove work, and refuse clearly
what needs the kernel (activation, snapshots) instead of letting lvm2 silently do
nothing. Snapshots are LVM snapshots sized like their origin, so they never fill up;
an origin cannot be removed while it has snapshots.
"""
from __future__ import annotations

import asyncio
import os
import stat

from . import qcow
from .base import (UUID_RE, VDI_CAPABILITIES, DeviceInUse, Driver, Full, Refused, Stats,
                   Volume)
from .run import StorageError, run

VG_PREFIX = "VG_XenStorage-"
LV_PREFIX = "LV-"


def dm_available() -> bool:
    try:
        with open("/proc/misc") as f:
            return any(line.split()[-1] == "device-mapper" for line in f if line.strip())
    except OSError:
        return False


class LVMDriver(Driver):
    type = "lvm"
    name = "Local LVM"
    description = "raw logical volumes in a volume group on device_config:device"
    disk_format = "raw"
    configuration = {"device": "block device to turn into the SR's physical volume"}
    capabilities = VDI_CAPABILITIES

    def __init__(self, sr_uuid, device_config):
        super().__init__(sr_uuid, device_config)
        self.device = self.require("device")
        if not os.path.isabs(self.device):
            raise Refused("device_config:device must be an absolute device path")
        self.vg = VG_PREFIX + sr_uuid
        self.dm = dm_available()

    async def lvm(self, command: str, *args: str) -> str:
        extra = () if self.dm else ("--driverloaded", "n")
        return await run(command, *extra, *args)

    def lv(self, location: str) -> str:
        self.check_location(location)
        return f"{self.vg}/{LV_PREFIX}{location}"

    # -- the SR ----------------------------------------------------------------------
    async def create(self, physical_size):
        def is_block():
            try:
                return stat.S_ISBLK(os.stat(self.device).st_mode)
            except OSError:
                return False
        if not await asyncio.to_thread(is_block):
            raise Refused(f"{self.device} is not a block device")
        owner = await self._vg_on_device()
        if owner:
            raise DeviceInUse(f"{self.device} already belongs to volume group {owner}")
        await self.lvm("pvcreate", "-y", self.device)
        try:
            await self.lvm("vgcreate", "-y", self.vg, self.device)
        except StorageError:
            await self.lvm("pvremove", "-y", self.device)
            raise

    async def delete(self):
        await self.attach()
        await self.lvm("vgremove", "-y", "-f", self.vg)
        await self.lvm("pvremove", "-y", self.device)

    async def attach(self):
        if await self._vg_on_device() != self.vg:
            raise Refused(f"{self.device} does not hold volume group {self.vg}")

    async def _vg_on_device(self) -> str:
        try:
            out = await self.lvm("pvs", "--noheadings", "-o", "vg_name", self.device)
        except StorageError:
            return ""  # not a PV at all
        return out.strip()

    @classmethod
    async def probe(cls, device_config):
        vg = await cls("00000000-0000-0000-0000-000000000000", device_config)._vg_on_device()
        uuid = vg[len(VG_PREFIX):] if vg.startswith(VG_PREFIX) else ""
        body = f"\t<SR>\n\t\t<UUID>{uuid}</UUID>\n\t</SR>\n" if UUID_RE.match(uuid) else ""
        return f"<?xml version=\"1.0\" ?>\n<SRlist>\n{body}</SRlist>\n"

    async def stats(self):
        out = await self.lvm("vgs", "--noheadings", "--units", "b", "--nosuffix",
                             "-o", "vg_size,vg_free", self.vg)
        size, free = (int(x) for x in out.split())
        return Stats(size, size - free)

    # -- volumes -----------------------------------------------------------------------
    async def scan(self):
        out = await self.lvm("lvs", "--noheadings", "--units", "b", "--nosuffix",
                             "--separator", "|", "-o", "lv_name,lv_size,origin_size",
                             self.vg)
        found = {}
        for line in out.splitlines():
            parts = [p.strip() for p in line.split("|")]
            if len(parts) < 3 or not parts[0].startswith(LV_PREFIX):
                continue
            loc = parts[0][len(LV_PREFIX):]
            if UUID_RE.match(loc):
                size = int(parts[1])
                virtual = int(parts[2]) if parts[2] else size   # a snapshot: origin's size
                found[loc] = Volume(loc, virtual, size)
        return found

    async def create_volume(self, uuid, size):
        size = await self._extents(size)
        await self._check_space(size)
        if self.dm:
            # Zero the start and wipe old signatures so a guest never sees a previous
            # disk's partition table; that needs the LV active for a moment.
            args = ("-ay", "-Zy", "-Wy")
        else:
            args = ("-an", "-Zn", "-Wn")
        self.check_location(uuid)
        await self.lvm("lvcreate", "-y", *args, "-n", LV_PREFIX + uuid, "-L", f"{size}b",
                       self.vg)
        if self.dm:
            await self.lvm("lvchange", "-an", self.lv(uuid))
        return await self.volume(uuid)

    async def destroy_volume(self, location):
        lv = self.lv(location)
        origins = await self.lvm("lvs", "--noheadings", "-o", "origin", self.vg)
        if LV_PREFIX + location in origins.split():
            raise DeviceInUse(f"{lv} has snapshots; destroy them first")
        await self.volume(location)
        await self.lvm("lvremove", "-y", "-f", lv)

    async def resize_volume(self, location, size):
        vol = await self.volume(location)
        size = await self._extents(size)
        await self._check_space(size - vol.virtual_size)
        await self.lvm("lvresize", "-f", "-L", f"{size}b", self.lv(location))
        return await self.volume(location)

    async def snapshot_volume(self, location, new_uuid, live):
        vol = await self.volume(location)
        await self._check_space(vol.virtual_size)
        if not self.dm:
            raise StorageError("ENOTSUP", "", "LVM snapshots need device-mapper, "
                               "which this kernel does not have")
        await self.lvm("lvcreate", "-y", "-s", "-n", LV_PREFIX + new_uuid,
                       "-L", f"{vol.virtual_size}b", self.lv(location))
        await self.lvm("lvchange", "-an", "-K", self.lv(new_uuid))
        return await self.volume(new_uuid)

    async def clone_volume(self, location, new_uuid, live):
        """A full, independent copy (an LVM snapshot would tie it to its origin)."""
        vol = await self.volume(location)
        await self.create_volume(new_uuid, vol.virtual_size)
        try:
            src = await self.activate(location)
            try:
                dst = await self.activate(new_uuid)
                try:
                    await qcow.convert(src, "raw", dst, "raw", existing=True, share=live)
                finally:
                    await self.deactivate(new_uuid)
            finally:
                if not live:
                    await self.deactivate(location)
        except BaseException:
            await self.lvm("lvremove", "-y", "-f", self.lv(new_uuid))
            raise
        return await self.volume(new_uuid)

    def path(self, location):
        return f"/dev/{self.lv(location)}"

    async def activate(self, location):
        if not self.dm:
            raise StorageError("ENOTSUP", "", "activating a logical volume needs "
                               "device-mapper, which this kernel does not have")
        await self.lvm("lvchange", "-ay", "-K", self.lv(location))
        return self.path(location)

    async def deactivate(self, location):
        if self.dm:
            await self.lvm("lvchange", "-an", self.lv(location))

    # -- internals -----------------------------------------------------------------------
    async def _extents(self, size: int) -> int:
        out = await self.lvm("vgs", "--noheadings", "--units", "b", "--nosuffix",
                             "-o", "vg_extent_size", self.vg)
        extent = int(out.strip())
        return -(-size // extent) * extent

    async def _check_space(self, size):
        st = await self.stats()
        free = st.physical_size - st.physical_utilisation
        if size > free:
            raise Full(size, free)
