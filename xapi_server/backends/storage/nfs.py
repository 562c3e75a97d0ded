"""`nfs` SRs: the file SR's qcow2 images in a directory of an NFS export, mounted on
every host of the pool (a shared SR: one PBD per host, the same device_config).

device_config, as xapi's NFS SR: `server` and `serverpath` (the export), `nfsversion`
(3, the default, or 4, 4.0, 4.1) and `options` (more mount options). The SR lives in
`<serverpath>/<sr uuid>` on the export, mounted at `MOUNT_ROOT/<sr uuid>` while a PBD
is plugged (xapi's /var/run/sr-mount). Failures are xapi's numbered ones: 101 no
serverpath, 102 no server, 73 the mount failed.

This needs the kernel's NFS client (`mount -t nfs`, package nfs-common). The
development machines' kernel has none: there only the refusals can be seen
(tests/test_pool_shared_storage.py says so); the mounting is written for real hosts.
"""
from __future__ import annotations

import asyncio
import os
import re
import tempfile

from .base import Refused, SmFailure
from .filesr import FileDriver, _rmdir
from .run import StorageError, run

MOUNT_ROOT = "/run/sr-mount"
VERSIONS = ("3", "4", "4.0", "4.1")
# Mount options we put together ourselves: a server or option text cannot add others.
_SAFE = re.compile(r"^[A-Za-z0-9._:\[\]-]+$")
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+-]*$")


class NFSDriver(FileDriver):
    type = "nfs"
    name = "NFS SR"
    description = "qcow2 images in a directory of an NFS export, shared by the pool"
    configuration = {"server": "the NFS server's name or address",
                     "serverpath": "the exported path on the server",
                     "nfsversion": "3 (default), 4, 4.0 or 4.1",
                     "options": "more mount options, comma-separated"}

    def __init__(self, sr_uuid, device_config):   # not FileDriver's: no device_config:path
        self.sr_uuid, self.device_config = sr_uuid, dict(device_config)
        server = self.device_config.get("server", "")
        if not server:
            raise SmFailure(102, "The request is missing the server parameter")
        path = self.device_config.get("serverpath", "")
        if not path:
            raise SmFailure(101, "The request is missing the serverpath parameter")
        version = self.device_config.get("nfsversion", "3")
        options = self.device_config.get("options", "")
        if not _SAFE.match(server) or not _SAFE_PATH.match(path) or \
                version not in VERSIONS or (options and not all(
                    _SAFE.match(o.replace("=", "")) for o in options.split(","))):
            raise Refused("device_config: server, serverpath, nfsversion or options "
                          "is not valid")
        self.export = f"{server}:{path.rstrip('/') or '/'}"
        self.options = ",".join(["vers=" + version, "proto=tcp", "soft", "timeo=200",
                                 "retrans=2", "acdirmin=0", "acdirmax=0",
                                 *([options] if options else [])])
        self.root = os.path.join(MOUNT_ROOT, sr_uuid or "probe")

    async def _mount(self, source: str, target: str):
        os.makedirs(target, exist_ok=True)
        try:
            await run("mount", "-t", "nfs", "-o", self.options, source, target, timeout=120)
        except StorageError as exc:
            _rmdir(target)
            raise SmFailure(73, "NFS mount error", exc.stderr or exc.stdout) from None

    async def _unmount(self, target: str):
        if os.path.ismount(target):
            await run("umount", target, timeout=120)
        _rmdir(target)

    async def _on_export(self, fn):
        """fn(mounted export root) with the whole export mounted somewhere temporary."""
        os.makedirs(MOUNT_ROOT, exist_ok=True)
        where = tempfile.mkdtemp(prefix=".export-", dir=MOUNT_ROOT)
        await self._mount(self.export, where)
        try:
            return await asyncio.to_thread(fn, where)
        finally:
            await self._unmount(where)

    async def create(self, physical_size):
        await self._on_export(lambda top: os.makedirs(os.path.join(top, self.sr_uuid),
                                                      mode=0o711, exist_ok=True))
        await self.attach_mount()
        try:
            await super().create(physical_size)
        finally:
            await self._unmount(self.root)

    async def attach_mount(self):
        if not os.path.ismount(self.root):
            await self._mount(f"{self.export.rstrip('/')}/{self.sr_uuid}", self.root)

    async def attach(self):
        await self.attach_mount()
        await super().attach()

    async def detach(self):
        await self._unmount(self.root)

    async def delete(self):
        await self.attach_mount()
        try:
            await super().delete()
        finally:
            await self._unmount(self.root)
        await self._on_export(lambda top: _rmdir(os.path.join(top, self.sr_uuid)))

    @classmethod
    async def probe(cls, device_config):
        drv = cls("", device_config)

        def listing(top):
            return [n for n in sorted(os.listdir(top))
                    if os.path.isfile(os.path.join(top, n, ".xapi-sr"))]
        found = await drv._on_export(listing)
        body = "".join(f"\t<SR>\n\t\t<UUID>{u}</UUID>\n\t</SR>\n" for u in found)
        return f"<?xml version=\"1.0\" ?>\n<SRlist>\n{body}</SRlist>\n"

