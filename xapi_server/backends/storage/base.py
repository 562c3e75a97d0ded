"""The storage driver interface: what an SR type must do, nothing about the API.

A driver object is made per call from an SR's uuid and its PBD's device_config; it
keeps no state of its own (the volumes on disk are the state), so the API layer can
build one whenever it needs to. Volumes are named by a `location` the driver chose
(a VDI uuid, an ISO file name) and every path is derived from it inside the SR:
`check_location` refuses anything else. NFS or iSCSI drivers subclass `Driver` too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .run import StorageError

UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


class Full(StorageError):
    def __init__(self, requested: int, maximum: int):
        super().__init__("ENOSPC", "", f"{requested} bytes requested, {maximum} free")
        self.requested, self.maximum = requested, maximum


class NotSupported(StorageError):
    def __init__(self, what: str):
        super().__init__("ENOTSUP", "", what)


class Missing(StorageError):
    def __init__(self, location: str):
        super().__init__("ENOENT", "", f"no volume {location!r}")
        self.location = location


class Refused(StorageError):
    """Bad device_config, a path outside the SR, a foreign backing file..."""
    def __init__(self, reason: str):
        super().__init__("EINVAL", "", reason)


class SmFailure(StorageError):
    """One of xapi's numbered storage-manager failures (SR_BACKEND_FAILURE_<code>),
    for the drivers that follow xapi's SM drivers' device_config (NFS)."""
    def __init__(self, code: int, description: str, stderr: str = ""):
        super().__init__(str(code), description, stderr)
        self.code, self.description = code, description


class DeviceInUse(StorageError):
    def __init__(self, reason: str):
        super().__init__("EBUSY", "", reason)


@dataclass
class Volume:
    location: str
    virtual_size: int
    physical_utilisation: int
    read_only: bool = False
    name: str = ""                  # suggested name_label (ISO file name)


@dataclass
class Stats:
    physical_size: int
    physical_utilisation: int


# What every writable driver can do (SM.capabilities).
VDI_CAPABILITIES = ("SR_PROBE", "SR_UPDATE", "VDI_CREATE", "VDI_DELETE", "VDI_ATTACH",
                    "VDI_DETACH", "VDI_CLONE", "VDI_SNAPSHOT", "VDI_RESIZE", "VDI_INTRODUCE",
                    "VDI_UPDATE")


class Driver:
    type = ""                       # SR.type this driver serves
    name = ""
    description = ""
    content_type = "user"           # default SR.content_type
    read_only = False               # no VDI create/destroy/resize/snapshot
    disk_format = "raw"             # what qemu/libvirt open: "raw" or "qcow2"
    configuration: dict = {}        # device_config keys -> meaning (SM.configuration)
    capabilities: tuple = ()        # SM.capabilities
    max_volume_size = 1 << 46       # 64 TiB: beyond this a request is a mistake

    def __init__(self, sr_uuid: str, device_config: dict):
        self.sr_uuid, self.device_config = sr_uuid, dict(device_config)

    def require(self, key: str) -> str:
        value = self.device_config.get(key, "")
        if not value:
            raise Refused(f"device_config:{key} is required for a {self.type} SR")
        return value

    # -- the SR ----------------------------------------------------------------------
    async def create(self, physical_size: int) -> None:
        """Make a new, empty SR on the device/directory."""
        raise NotSupported("SR.create")

    async def delete(self) -> None:
        """Remove the SR and every volume in it from the device."""
        raise NotSupported("SR.destroy")

    async def attach(self) -> None:
        """Check the SR is reachable and really is this SR (PBD.plug)."""

    async def detach(self) -> None:
        """PBD.unplug."""

    @classmethod
    async def probe(cls, device_config: dict) -> str:
        """SR.probe: XML listing SRs found with this configuration."""
        return "<?xml version=\"1.0\" ?>\n<SRlist/>\n"

    async def stats(self) -> Stats:
        raise NotImplementedError

    # -- volumes -----------------------------------------------------------------------
    def check_location(self, location: str) -> None:
        """Raise Refused unless `location` names a volume inside this SR."""
        if not UUID_RE.match(location or ""):
            raise Refused(f"location {location!r} is not a volume of this SR")

    def path(self, location: str) -> str:
        """Where qemu finds the volume once active (no I/O; checks the location)."""
        raise NotImplementedError

    async def scan(self) -> dict[str, Volume]:
        raise NotImplementedError

    async def volume(self, location: str) -> Volume:
        """One volume's current facts (VDI.update, VDI.introduce); Missing if absent."""
        self.check_location(location)
        found = await self.scan()
        if location not in found:
            raise Missing(location)
        return found[location]

    async def create_volume(self, uuid: str, size: int) -> Volume:
        raise NotSupported("VDI.create")

    async def destroy_volume(self, location: str) -> None:
        raise NotSupported("VDI.destroy")

    async def resize_volume(self, location: str, size: int) -> Volume:
        raise NotSupported("VDI.resize")

    async def snapshot_volume(self, location: str, new_uuid: str, live: bool) -> Volume:
        """A point-in-time copy; `live` when a running guest has it open."""
        raise NotSupported("VDI.snapshot")

    async def clone_volume(self, location: str, new_uuid: str, live: bool) -> Volume:
        raise NotSupported("VDI.clone")

    async def activate(self, location: str) -> str:
        """Make the volume usable by qemu/qemu-img; return its path."""
        raise NotImplementedError

    async def deactivate(self, location: str) -> None:
        """Undo activate (only called once nothing uses the volume)."""
