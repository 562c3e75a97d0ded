"""Glue between the drivers and the store: which driver serves an SR, per-SR locks,
driver errors as XenAPI errors, SR sizes, and reconciling VDI records with what is
really on the device (SR.scan).

The rule everywhere: the driver acts first, the store records what the driver
reports afterwards; if the driver fails nothing is recorded.
"""
from __future__ import annotations

import asyncio
import contextlib
import errno
from datetime import datetime, timezone

from ...backends.storage import DRIVERS
from ...backends.storage.base import (UUID_RE, DeviceInUse, Full, Missing, NotSupported,
                                      SmFailure)
from ...backends.storage.run import StorageError
from ...errors import ApiError
from ...messages import PRIORITY_WARNING, raise_message

NULL = "OpaqueRef:NULL"


class StorageState:
    """A host's storage bookkeeping (`HostRuntime.storage`, services/host.py), owned by
    the Server so two servers in one process never share a lock, a count or a warning."""

    def __init__(self):
        self.locks: dict[str, asyncio.Lock] = {}   # SR ref -> its structural lock
        self.active: dict[str, int] = {}           # VDI ref -> how many users activated it
        self.warned: set[str] = set()              # SRs told nearly full, not re-armed yet


def lock(server, sr: str) -> asyncio.Lock:
    """Structural changes to one SR (create, destroy, snapshot, scan) go one at a
    time, so a scan never sees half a snapshot."""
    return server.runtime_of_sr(sr).storage.locks.setdefault(sr, asyncio.Lock())


@contextlib.contextmanager
def errors(sr: str = "", vdi: str = ""):
    try:
        yield
    except Full as e:
        raise ApiError("SR_FULL", e.requested, e.maximum) from None
    except NotSupported:
        raise ApiError("SR_OPERATION_NOT_SUPPORTED", sr) from None
    except Missing as e:
        raise ApiError("VDI_MISSING", sr, vdi or e.location) from None
    except SmFailure as e:   # xapi's numbered SM failures: ["", description, stderr]
        if e.code == 73:
            raise ApiError("SR_BACKEND_FAILURE_73", "", e.description, e.stderr) from None
        if e.code == 101:
            raise ApiError("SR_BACKEND_FAILURE_101", "", e.description, e.stderr) from None
        raise ApiError("SR_BACKEND_FAILURE_102", "", e.description, e.stderr) from None
    except DeviceInUse as e:
        raise ApiError("SR_BACKEND_FAILURE", "SR_DEVICE_IN_USE", e.stdout, e.stderr) from None
    except StorageError as e:
        raise ApiError("SR_BACKEND_FAILURE", e.status, e.stdout, e.stderr) from None
    except OSError as e:   # the device itself failed: a full disk, an I/O error
        raise ApiError("SR_BACKEND_FAILURE", errno.errorcode.get(e.errno, "EIO"), "",
                       str(e)) from None


def driver_class(sr_type: str):
    cls = DRIVERS.get(sr_type)
    if cls is None:
        raise ApiError("SR_UNKNOWN_DRIVER", sr_type)
    return cls


def make_driver(sr_type: str, sr_uuid: str, device_config: dict, sr: str = ""):
    cls = driver_class(sr_type)
    with errors(sr):
        return cls(sr_uuid, device_config)


def host_pbd(store, sr: str, host: str) -> str | None:
    found = store.find("PBD", SR=sr, host=host)
    return found[0] if found else None


def driver_for(server, sr: str, attached: bool = True):
    """The driver of `sr` as this host reaches it (through its PBD)."""
    store = server.store
    rec = store.record("SR", sr)
    pbd = host_pbd(store, sr, server.host_ref)
    if pbd is None:
        raise ApiError("SR_HAS_NO_PBDS", sr)
    if attached and not store.get("PBD", pbd, "currently_attached"):
        raise ApiError("SR_NOT_ATTACHED", sr)
    return make_driver(rec["type"], rec["uuid"], store.get("PBD", pbd, "device_config"), sr)


async def refresh(server, sr: str, drv) -> None:
    """Keep physical_size, physical_utilisation and virtual_allocation true."""
    store = server.store
    with errors(sr):
        st = await drv.stats()
    alloc = sum(store.get("VDI", v, "virtual_size") for v in store.get("SR", sr, "VDIs"))
    rec = store.record("SR", sr)
    changes = {"physical_size": st.physical_size,
               "physical_utilisation": st.physical_utilisation, "virtual_allocation": alloc}
    if any(rec[k] != v for k, v in changes.items()):
        store.update("SR", sr, **changes)
    _warn_if_nearly_full(server, sr, st.physical_size, st.physical_utilisation)


# An SR more than NEARLY_FULL used gets one message; it may get another once it has
# dropped below RE_ARM and filled up again.
NEARLY_FULL, RE_ARM = 0.90, 0.80


def _warn_if_nearly_full(server, sr: str, size: int, used: int):
    if size <= 0:
        return
    store, warned = server.store, server.runtime_of_sr(sr).storage.warned
    fraction = used / size
    if fraction >= NEARLY_FULL and sr not in warned:
        warned.add(sr)
        rec = store.record("SR", sr)
        raise_message(server, "SR_NEARLY_FULL", PRIORITY_WARNING, "SR", rec["uuid"],
                      f"SR {rec['name_label']!r} is {fraction:.0%} full "
                      f"({used} of {size} bytes)")
    elif fraction < RE_ARM:
        warned.discard(sr)


def record_volume(store, sr: str, vol, **fields) -> str:
    """A new VDI record for a volume the driver reports."""
    uuid = vol.location if UUID_RE.match(vol.location) else None
    if uuid and not uuid_free(store, "VDI", uuid):
        uuid = None
    base = {"SR": sr, "location": vol.location, "virtual_size": vol.virtual_size,
            "physical_utilisation": vol.physical_utilisation, "read_only": vol.read_only,
            "name_label": vol.name, "managed": True, "type": "user",
            "snapshot_time": datetime.fromtimestamp(0, timezone.utc)}
    if uuid:
        base["uuid"] = uuid
    base.update(fields)
    return store.create("VDI", base)


def uuid_free(store, cname: str, uuid: str) -> bool:
    try:
        store.by_uuid(cname, uuid)
    except ApiError:
        return True
    return False


def update_volume(store, vdi: str, vol) -> None:
    rec = store.record("VDI", vdi)
    changes = {"virtual_size": vol.virtual_size,
               "physical_utilisation": vol.physical_utilisation, "missing": False}
    if any(rec[k] != v for k, v in changes.items()):
        store.update("VDI", vdi, **changes)


def attached_vbds(store, vdi: str) -> list[str]:
    return [v for v in store.get("VDI", vdi, "VBDs") if store.get("VBD", v, "currently_attached")]


def forget_vdi(store, vdi: str) -> None:
    """Drop a VDI record: its disk drives go, its CD drives become empty."""
    for vbd in list(store.get("VDI", vdi, "VBDs")):
        if store.get("VBD", vbd, "type") == "CD":
            store.update("VBD", vbd, VDI=NULL, empty=True)
        else:
            store.delete("VBD", vbd)
    store.delete("VDI", vdi)


async def sync(server, sr: str, drv) -> None:
    """SR.scan: records follow the device. New volumes become VDIs; vanished ones are
    forgotten (or marked missing while a guest still has them attached)."""
    store = server.store
    with errors(sr):
        volumes = await drv.scan()
    known = {store.get("VDI", v, "location"): v for v in store.get("SR", sr, "VDIs")}
    for location, vdi in known.items():
        vol = volumes.get(location)
        if vol is not None:
            update_volume(store, vdi, vol)
        elif attached_vbds(store, vdi):
            if not store.get("VDI", vdi, "missing"):
                store.update("VDI", vdi, missing=True)
        else:
            forget_vdi(store, vdi)
    for location, vol in volumes.items():
        if location not in known:
            record_volume(store, sr, vol)
    await refresh(server, sr, drv)


async def activate(server, vdi: str) -> str:
    """Make a VDI's volume usable by qemu; counted, so two users need two releases."""
    rec = server.store.record("VDI", vdi)
    drv = driver_for(server, rec["SR"])
    with errors(rec["SR"], vdi):
        path = await drv.activate(rec["location"])
    active = server.runtime_of_sr(rec["SR"]).storage.active
    active[vdi] = active.get(vdi, 0) + 1
    return path


async def deactivate(server, vdi: str) -> None:
    sr = server.store.tables["VDI"].get(vdi, {}).get("SR", NULL)   # the VDI may be gone
    active = server.runtime_of_sr(sr).storage.active
    count = active.get(vdi, 0) - 1
    if count > 0:
        active[vdi] = count
        return
    active.pop(vdi, None)
    store = server.store
    if not store.exists("VDI", vdi):
        return
    rec = store.record("VDI", vdi)
    try:
        drv = driver_for(server, rec["SR"])
        with errors(rec["SR"], vdi):
            await drv.deactivate(rec["location"])
    except ApiError:
        pass  # the SR went away underneath: nothing left to release
