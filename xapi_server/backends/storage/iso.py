"""`iso` SRs: a directory of *.iso files, read-only; each file is a VDI whose
location is its file name. We never write into the directory (it is often a
read-only share), not even a marker."""
from __future__ import annotations

import asyncio
import os
import stat

from .base import Driver, Missing, Refused, Stats, Volume


class ISODriver(Driver):
    type = "iso"
    name = "ISO library"
    description = "*.iso files in a directory (device_config:location), read-only"
    content_type = "iso"
    read_only = True
    disk_format = "raw"
    configuration = {"location": "absolute path of the directory holding *.iso files"}
    capabilities = ("SR_SCAN", "VDI_ATTACH", "VDI_DETACH", "VDI_INTRODUCE")

    def __init__(self, sr_uuid, device_config):
        super().__init__(sr_uuid, device_config)
        location = self.require("location")
        if not os.path.isabs(location):
            raise Refused("device_config:location must be an absolute directory path")
        self.root = os.path.realpath(location)

    async def create(self, physical_size):
        await self.attach()

    async def delete(self):
        pass  # the ISOs are the owner's files: forgetting the SR is all we do

    async def attach(self):
        if not await asyncio.to_thread(os.path.isdir, self.root):
            raise Refused(f"{self.root} is not a directory")

    async def stats(self):
        st = await asyncio.to_thread(os.statvfs, self.root)
        size = st.f_blocks * st.f_frsize
        return Stats(size, size - st.f_bfree * st.f_frsize)

    def check_location(self, location):
        if (not location or "/" in location or location.startswith(".")
                or not location.endswith(".iso") or "\0" in location):
            raise Refused(f"location {location!r} is not an ISO file name in this SR")

    def path(self, location):
        self.check_location(location)
        return os.path.join(self.root, location)

    def _volume(self, location):
        path = self.path(location)
        try:
            st = os.stat(path)  # a symlink is fine if it stays inside the SR
        except FileNotFoundError:
            raise Missing(location) from None
        if os.path.dirname(os.path.realpath(path)) != self.root:
            raise Refused(f"{location} points outside the SR")
        if not stat.S_ISREG(st.st_mode):
            raise Missing(location)
        return Volume(location, st.st_size, st.st_blocks * 512, read_only=True, name=location)

    async def volume(self, location):
        return await asyncio.to_thread(self._volume, location)

    async def scan(self):
        def scan():
            found = {}
            for name in os.listdir(self.root):
                try:
                    found[name] = self._volume(name)
                except (Refused, Missing, OSError):
                    continue
            return found
        return await asyncio.to_thread(scan)

    async def activate(self, location):
        await self.volume(location)  # exists, and stays inside the SR
        return self.path(location)
