"""`file` / `ext` SRs: a directory of qcow2 images, one per VDI.

Layout inside device_config:path:
    <vdi-uuid>.qcow2        a VDI (its location is the uuid)
    .base-<uuid>.qcow2      a hidden, read-only parent shared by snapshots/clones
    .xapi-sr                the SR uuid, so one directory is never two SRs
Snapshot and clone of an idle disk turn its image into a hidden base and put two new
thin leaves over it (as xapi does with VHD chains); a disk a running guest has open
is copied instead, since its image cannot be renamed under the guest.
"""
from __future__ import annotations

import asyncio
import os
import uuid as uuidlib

from . import qcow
from .base import (UUID_RE, VDI_CAPABILITIES, DeviceInUse, Driver, Full, Missing, Refused,
                   Stats, Volume)

MARKER = ".xapi-sr"
BASE_PREFIX = ".base-"
SUFFIX = ".qcow2"


class FileDriver(Driver):
    type = "file"
    name = "Local file SR"
    description = "qcow2 images in a directory (device_config:path)"
    disk_format = "qcow2"
    configuration = {"path": "absolute path of the directory holding the images"}
    capabilities = VDI_CAPABILITIES + ("THIN_PROVISIONING",)

    def __init__(self, sr_uuid, device_config):
        super().__init__(sr_uuid, device_config)
        if "path" not in self.device_config and "device" in self.device_config:
            raise Refused("an ext SR on a raw device (mkfs + mount) is not supported; "
                          "give device_config:path of a mounted directory")
        path = self.require("path")
        if not os.path.isabs(path):
            raise Refused("device_config:path must be absolute")
        self.root = os.path.realpath(path)

    # -- the SR ----------------------------------------------------------------------
    async def create(self, physical_size):
        def make():
            made = not os.path.exists(self.root)
            # Searchable, not listable: QEMU (libvirt-qemu under qemu:///system) opens
            # the images by name; the images themselves are 0600 (qcow.create).
            os.makedirs(self.root, mode=0o711, exist_ok=True)
            owner = self._marker()
            if owner and owner != self.sr_uuid:
                raise DeviceInUse(f"{self.root} already holds SR {owner}")
            try:
                self._write_marker()
            except OSError:   # a full disk: leave nothing half made behind
                _unlink(os.path.join(self.root, MARKER))
                if made:
                    _rmdir(self.root)
                raise
        await asyncio.to_thread(make)

    async def delete(self):
        def remove():
            self._check_marker()
            for name in os.listdir(self.root):
                if name.endswith(SUFFIX) and _uuid_of(name):
                    os.unlink(os.path.join(self.root, name))
            os.unlink(os.path.join(self.root, MARKER))
            _rmdir(self.root)   # fails when the owner keeps other files there: fine
        await asyncio.to_thread(remove)

    async def attach(self):
        def check():
            if not os.path.isdir(self.root):
                raise Refused(f"{self.root} is not a directory")
            if self._marker() is None:
                self._write_marker()  # SR.introduce of a directory made elsewhere
            self._check_marker()
        await asyncio.to_thread(check)

    @classmethod
    async def probe(cls, device_config):
        drv = cls("", device_config)
        owner = await asyncio.to_thread(drv._marker)
        body = f"\t<SR>\n\t\t<UUID>{owner}</UUID>\n\t</SR>\n" if owner else ""
        return f"<?xml version=\"1.0\" ?>\n<SRlist>\n{body}</SRlist>\n"

    async def stats(self):
        st = await asyncio.to_thread(os.statvfs, self.root)
        size = st.f_blocks * st.f_frsize
        return Stats(size, size - st.f_bfree * st.f_frsize)

    # -- volumes -----------------------------------------------------------------------
    def path(self, location: str) -> str:
        self.check_location(location)
        return os.path.join(self.root, location + SUFFIX)

    async def scan(self):
        return await asyncio.to_thread(self._scan)

    def _scan(self):
        found = {}
        for entry in os.scandir(self.root):
            loc = entry.name[:-len(SUFFIX)] if entry.name.endswith(SUFFIX) else ""
            if not UUID_RE.match(loc) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                found[loc] = self._volume(loc)
            except (Refused, OSError):
                continue  # refused images never become VDIs
        return found

    def _volume(self, location):
        path = self.path(location)
        if not os.path.isfile(path) or os.path.islink(path):
            raise Missing(location)
        size = qcow.check_chain(path, self.root)
        return Volume(location, size, qcow.allocated(path))

    async def volume(self, location):
        return await asyncio.to_thread(self._volume, location)

    async def create_volume(self, uuid, size):
        path = self.path(uuid)
        await self._check_space(size)
        try:
            await qcow.create(path, size)
            return await self.volume(uuid)
        except BaseException:
            _unlink(path)
            raise

    async def destroy_volume(self, location):
        path = self.path(location)
        if not os.path.exists(path):
            raise Missing(location)
        await asyncio.to_thread(os.unlink, path)
        await asyncio.to_thread(self._collect_bases)

    async def resize_volume(self, location, size):
        vol = await self.volume(location)
        await self._check_space(size - vol.virtual_size)
        await qcow.resize(self.path(location), size)
        return await self.volume(location)

    async def snapshot_volume(self, location, new_uuid, live):
        src, dst = self.path(location), self.path(new_uuid)
        vol = await self.volume(location)
        if live:
            await self._check_space(vol.virtual_size)
            try:
                await qcow.convert(src, "qcow2", dst, "qcow2", share=True)
            except BaseException:
                _unlink(dst)
                raise
            return await self.volume(new_uuid)
        base = os.path.join(self.root, f"{BASE_PREFIX}{uuidlib.uuid4()}{SUFFIX}")
        await asyncio.to_thread(os.rename, src, base)
        try:
            await qcow.create(src, vol.virtual_size, backing=base)
        except BaseException:
            _unlink(src)
            os.rename(base, src)   # the original data is back where its VDI says
            raise
        try:
            await qcow.create(dst, vol.virtual_size, backing=base)
        except BaseException:
            _unlink(dst)
            raise
        return await self.volume(new_uuid)

    clone_volume = snapshot_volume

    async def activate(self, location):
        # The whole chain is checked again right before qemu opens it: the file may
        # have been replaced since the scan (a data file, a chain leaving the SR).
        await self.volume(location)
        return self.path(location)

    async def deactivate(self, location):
        pass

    # -- internals -----------------------------------------------------------------------
    async def _check_space(self, size):
        """Thin provisioning: a disk may not be bigger than the space still free."""
        st = await self.stats()
        free = st.physical_size - st.physical_utilisation
        if size > free:
            raise Full(size, free)

    def _collect_bases(self):
        """Delete hidden bases no image points at any more (repeat: chains)."""
        while True:
            names = [n for n in os.listdir(self.root) if n.endswith(SUFFIX)]
            used = set()
            for name in names:
                try:
                    _, backing, _ = qcow.read_header(os.path.join(self.root, name))
                except (Refused, OSError):
                    continue
                if backing:
                    used.add(os.path.basename(backing))
            unused = [n for n in names if n.startswith(BASE_PREFIX) and n not in used]
            if not unused:
                return
            for name in unused:
                _unlink(os.path.join(self.root, name))

    def _marker(self):
        try:
            with open(os.path.join(self.root, MARKER)) as f:
                return f.read().strip() or None
        except FileNotFoundError:
            return None

    def _write_marker(self):
        with open(os.path.join(self.root, MARKER), "w") as f:
            f.write(self.sr_uuid + "\n")

    def _check_marker(self):
        owner = self._marker()
        if owner != self.sr_uuid:
            raise DeviceInUse(f"{self.root} holds SR {owner}, not {self.sr_uuid}")


class ExtDriver(FileDriver):
    type = "ext"
    name = "Local ext SR"
    description = "qcow2 images in a directory of a mounted filesystem (device_config:path)"


def _uuid_of(name: str) -> str | None:
    stem = name[:-len(SUFFIX)]
    if stem.startswith(BASE_PREFIX):
        stem = stem[len(BASE_PREFIX):]
    return stem if UUID_RE.match(stem) else None


def _rmdir(path):
    try:
        os.rmdir(path)
    except OSError:
        pass


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
