"""Storage backends: SR drivers behind one small interface (`base.Driver`).

`DRIVERS` maps an SR type to its driver class; adding NFS or iSCSI means adding a
class here. Drivers know nothing of XenAPI records: services/storage glues them to
the store (locks, errors, sizes) and puts disks into guests.
"""
from __future__ import annotations

from .base import Driver, Stats, Volume
from .filesr import ExtDriver, FileDriver
from .iso import ISODriver
from .lvm import LVMDriver
from .nfs import NFSDriver
from .run import StorageError

DRIVERS: dict[str, type[Driver]] = {d.type: d for d in (FileDriver, ExtDriver, LVMDriver,
                                                        ISODriver, NFSDriver)}

__all__ = ["DRIVERS", "Driver", "Stats", "Volume", "StorageError"]
