"""The Hypervisor protocol on libvirt (QEMU/KVM, TCG, the test driver; Xen is just
another URI).

Domains are persistent (defined) so that `virsh start` behind our back and managed
save both work; we redefine the XML at every start from the VM record. A domain is
ours only when it carries our metadata element: everything else is left alone.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import xml.etree.ElementTree as ET

import libvirt

from .contract import (HALTED, METADATA_NS, Capabilities, DomainState, DomainStats,
                       HypervisorError)
from .libvirt_conn import Connection, Unreachable, kvm_usable
from .libvirt_console import LibvirtConsole
from .libvirt_guestops import GuestOps
from .libvirt_migrate import MigrationCalls
from .libvirt_qos import QosCalls, kernel_shapes_like_libvirt

log = logging.getLogger(__name__)

_RUNNING = {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED,
            libvirt.VIR_DOMAIN_NOSTATE, libvirt.VIR_DOMAIN_SHUTDOWN}
# A crashed domain kept for inspection (on_crash=preserve) and a guest in ACPI S3
# are both "not running but still there": XenAPI calls that Paused.
_PAUSED = {libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_CRASHED,
           libvirt.VIR_DOMAIN_PMSUSPENDED}


def _ours(dom) -> bool:
    try:
        dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
        return True
    except libvirt.libvirtError:
        return False


def _state_of(dom) -> DomainState:
    state, reason = dom.state()
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        if dom.hasManagedSaveImage():
            return DomainState("Suspended")
        if reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED:
            return DomainState("Halted", crashed=True)
        return HALTED
    info = dom.info()  # [state, maxMem KiB, memory KiB, nrVirtCpu, cpuTime ns]
    power = "Paused" if state in _PAUSED else "Running"
    return DomainState(power, dom.ID(), info[2] * 1024, info[3], info[4],
                       crashed=state == libvirt.VIR_DOMAIN_CRASHED)


def _find(conn, uuid):
    """Our domain with this uuid, or None."""
    try:
        dom = conn.lookupByUUIDString(uuid)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise
    return dom if _ours(dom) else None


def _need(conn, uuid):
    dom = _find(conn, uuid)
    if dom is None:
        raise HypervisorError(f"no domain {uuid}")
    return dom


# QEMU/KVM (or Xen) guests do everything; libvirt's test driver runs no guest and
# completes every operation at once.
GUEST_CAPABILITIES = Capabilities()
TEST_DRIVER_CAPABILITIES = Capabilities(
    reads_boot_files=False, uses_host_memory=False, reboot_reported_by_event=False,
    nics_are_host_taps=False, guest_releases_devices=False, needs_qemu_access_check=False,
    emulates_machine=False, tunes_resources=False, nic_bandwidth_in_xml=False)


class LibvirtHypervisor(QosCalls, GuestOps, MigrationCalls):
    def __init__(self, settings):
        self.settings = settings
        self.conn = Connection(settings.libvirt_uri, settings.data_dir)
        self._handler = None
        self.domain_type = "qemu"
        self._test_driver = False   # libvirt's test:///: the driver's own quirks below
        # (uri, domain type) -> (uid, gid) QEMU runs as, or None: read once from the
        # capabilities of the libvirt this connection reaches (qemu_access.qemu_identity).
        self.qemu_identities: dict[tuple[str, str], tuple[int, int] | None] = {}
        # Can libvirt's NIC bandwidth recipe run on this kernel? (probed once, libvirt_qos)
        self.shapes_like_libvirt: bool | None = None

    @property
    def uri(self) -> str:
        return self.conn.uri

    @property
    def capabilities(self) -> Capabilities:
        if self._test_driver:
            return TEST_DRIVER_CAPABILITIES
        return dataclasses.replace(GUEST_CAPABILITIES,
                                   nic_bandwidth_in_xml=self.shapes_like_libvirt is not False)

    async def open(self):
        """Connect (the connection keeps reconnecting by itself from then on: events
        are registered on every new connection, and one made after a loss or a failed
        first attempt asks for a full re-read)."""
        if self.conn.on_connect is None:
            self.conn.on_connect = self._connected
            self.conn.add_event_callback(libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                         self._on_lifecycle)
            self.conn.add_event_callback(libvirt.VIR_DOMAIN_EVENT_ID_REBOOT,
                                         self._on_reboot)
        await self.conn.open()

    def _connected(self, conn, missed: bool):
        """Runs in a worker thread after each new connection."""
        driver = conn.getType().lower()
        self._test_driver = driver == "test"
        if self._test_driver:
            self.domain_type = "test"
        elif driver == "xen":
            self.domain_type = "xen"
        else:
            wanted = self.settings.domain_type
            self.domain_type = wanted if wanted != "auto" else (
                "kvm" if kvm_usable() else "qemu")
        if self.shapes_like_libvirt is None and not self._test_driver:
            self.shapes_like_libvirt = kernel_shapes_like_libvirt()
        if missed:
            self._emit("*", "resync")

    async def close(self):
        await self.conn.close()

    def set_event_handler(self, handler):
        self._handler = handler

    # libvirt calls these in its event thread.
    def _on_lifecycle(self, _conn, dom, _event, _detail, _opaque):
        self._emit(dom.UUIDString(), "lifecycle")

    def _on_reboot(self, _conn, dom, _opaque):
        self._emit(dom.UUIDString(), "reboot")

    def _emit(self, uuid, kind):
        if self._handler is not None:
            try:
                self._handler(uuid, kind)
            except Exception:
                log.exception("event handler failed")

    # -- operations -------------------------------------------------------------------

    async def _run(self, fn, *args):
        try:
            return await self.conn.call(fn, *args)
        except libvirt.libvirtError as exc:
            raise HypervisorError(exc.get_error_message() or str(exc)) from None
        except Unreachable as exc:
            raise HypervisorError(str(exc)) from None

    async def define(self, uuid, xml):
        def _define(c):
            dom = c.lookupByUUIDString(uuid) if _exists(c, uuid) else None
            if dom is not None and not _ours(dom):
                raise HypervisorError(f"a domain we did not create has uuid {uuid}")
            c.defineXML(xml)
        await self._run(_define)

    async def undefine(self, uuid):
        def _undefine(c):
            dom = _find(c, uuid)
            if dom is None:
                return
            if dom.isActive():
                dom.destroy()
            flags = libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | \
                libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
            try:
                dom.undefineFlags(flags | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                dom.undefineFlags(flags)  # drivers without NVRAM support refuse the flag
        await self._run(_undefine)

    async def start(self, uuid, paused=False):
        def _start(c):
            dom = _need(c, uuid)
            # A stale suspend image would be restored instead of booting: drop it
            # (FORCE_BOOT does the same, but not every driver knows the flag).
            if dom.hasManagedSaveImage():
                dom.managedSaveRemove()
            self._create(dom, paused)
        await self._run(_start)

    async def resume(self, uuid, paused=False):
        # With a managed save image, create() restores it instead of booting.
        await self._run(lambda c: self._create(_need(c, uuid), paused))

    def _create(self, dom, paused):
        if paused and self._test_driver:  # the test driver knows no START_PAUSED
            dom.createWithFlags(0)
            dom.suspend()
        else:
            dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED if paused else 0)
            self._shape_started(dom)

    @staticmethod
    def _domain(c, uuid):
        """Our domain with this uuid, on connection `c` (GuestOps)."""
        return _need(c, uuid)

    async def _on_domain(self, uuid, fn):
        """fn(our domain with this uuid) in a worker thread (QosCalls)."""
        return await self._run(lambda c: fn(_need(c, uuid)))

    async def shutdown(self, uuid):
        flag = 0 if self._test_driver else libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN
        await self._run(lambda c: _need(c, uuid).shutdownFlags(flag))

    async def reboot(self, uuid):
        flag = 0 if self._test_driver else libvirt.VIR_DOMAIN_REBOOT_ACPI_POWER_BTN
        await self._run(lambda c: _need(c, uuid).reboot(flag))

    async def destroy(self, uuid):
        def _destroy(c):
            dom = _find(c, uuid)
            if dom is None:
                return
            if dom.isActive():
                dom.destroy()
            if dom.hasManagedSaveImage():
                dom.managedSaveRemove()
        await self._run(_destroy)

    async def suspend(self, uuid):
        await self._run(lambda c: _need(c, uuid).managedSave(0))

    async def pause(self, uuid):
        await self._run(lambda c: _need(c, uuid).suspend())

    async def unpause(self, uuid):
        await self._run(lambda c: _need(c, uuid).resume())

    # Devices of a running domain (disks, CDs, NICs): live only; the persistent
    # definition is rebuilt from the records at the next start anyway.
    async def attach_device(self, uuid, xml):
        await self._device(uuid, "attachDeviceFlags", xml)

    async def detach_device(self, uuid, xml):
        await self._device(uuid, "detachDeviceFlags", xml)

    async def update_device(self, uuid, xml):
        await self._device(uuid, "updateDeviceFlags", xml)

    async def device_targets(self, uuid):
        # libvirt's own error when the domain is gone, as when the storage service
        # read the XML itself (hot-unplug fails with it).
        def targets(conn):
            xml = conn.lookupByUUIDString(uuid).XMLDesc(0)
            return {t.get("dev") for t in ET.fromstring(xml).iter("target")}
        return await self.conn.call(targets)

    async def _device(self, uuid, method, xml):
        await self._run(lambda c: getattr(_need(c, uuid), method)(
            xml, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    async def set_vcpus(self, uuid, count):
        await self._run(lambda c: _need(c, uuid).setVcpusFlags(
            count, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    async def set_memory(self, uuid, size_bytes):
        await self._run(lambda c: _need(c, uuid).setMemoryFlags(
            size_bytes // 1024, libvirt.VIR_DOMAIN_AFFECT_LIVE))

    async def state(self, uuid) -> DomainState:
        def _state(c):
            dom = _find(c, uuid)
            return HALTED if dom is None else _state_of(dom)
        return await self._run(_state)

    async def list(self) -> dict[str, DomainState]:
        def _list(c):
            out = {}
            for dom in c.listAllDomains(0):
                try:
                    if _ours(dom):
                        out[dom.UUIDString()] = _state_of(dom)
                except libvirt.libvirtError:  # vanished while we looked
                    continue
            return out
        return await self._run(_list)

    # -- consoles (http/console.py) ---------------------------------------------------

    async def graphics_socket(self, uuid):
        def _socket(c):
            dom = _find(c, uuid)
            if dom is None or not dom.isActive():
                return None
            for graphics in ET.fromstring(dom.XMLDesc(0)).iter("graphics"):
                if graphics.get("type") != "vnc":
                    continue
                listen = graphics.find("listen[@type='socket']")
                path = graphics.get("socket") or (listen.get("socket") if listen is not None
                                                  else None)
                if path:
                    return path
            return None
        return await self._run(_socket)

    async def open_console(self, uuid):
        loop = asyncio.get_running_loop()
        return await self._run(lambda c: LibvirtConsole.open(c, _need(c, uuid), loop))

    async def screenshot(self, uuid):
        def _shot(c):
            stream = c.newStream(0)
            try:
                mime = _need(c, uuid).screenshot(stream, 0, 0)
                chunks = []
                while data := stream.recv(1 << 20):
                    chunks.append(data)
                stream.finish()
            except BaseException:
                try:
                    stream.abort()
                except libvirt.libvirtError:
                    pass
                raise
            return mime or "application/octet-stream", b"".join(chunks)
        return await self._run(_shot)

    # -- metrics (services/metrics) ---------------------------------------------------

    async def domain_stats(self) -> dict[str, DomainStats]:
        def _stats(c):
            # NOWAIT: a domain busy with a long job (a save) is reported without the
            # counters that need its monitor rather than stalling the whole sample.
            found = c.getAllDomainStats(
                _STATS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE |
                libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT)
            out = {}
            for dom, values in found:
                try:
                    if _ours(dom):
                        out[dom.UUIDString()] = _domain_stats(values)
                except libvirt.libvirtError:   # vanished while we looked
                    continue
            return out
        return await self._run(_stats)

    async def report_memory_stats(self, uuid, period):
        await self._run(lambda c: _need(c, uuid).setMemoryStatsPeriod(
            period, libvirt.VIR_DOMAIN_AFFECT_LIVE))


_STATS = (libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_VCPU |
          libvirt.VIR_DOMAIN_STATS_BALLOON | libvirt.VIR_DOMAIN_STATS_INTERFACE |
          libvirt.VIR_DOMAIN_STATS_BLOCK)


def _domain_stats(v: dict) -> DomainStats:
    """libvirt's flat bulk-stats keys (cpu.time, vcpu.0.time, net.1.rx.bytes ...)."""
    vcpus = tuple(v.get(f"vcpu.{i}.time", 0) for i in range(v.get("vcpu.current", 0)))
    nets = tuple((v.get(f"net.{i}.name", ""), v.get(f"net.{i}.rx.bytes", 0),
                  v.get(f"net.{i}.tx.bytes", 0), v.get(f"net.{i}.rx.errs", 0),
                  v.get(f"net.{i}.tx.errs", 0)) for i in range(v.get("net.count", 0)))
    disks = tuple((v.get(f"block.{i}.name", ""), v.get(f"block.{i}.rd.bytes", 0),
                   v.get(f"block.{i}.wr.bytes", 0), v.get(f"block.{i}.rd.reqs", 0),
                   v.get(f"block.{i}.wr.reqs", 0)) for i in range(v.get("block.count", 0)))
    return DomainStats(cpu_time_ns=v.get("cpu.time", 0), vcpu_time_ns=vcpus,
                       # QEMU's balloon can go unreported for a moment (a restore
                       # in progress): the domain's maximum is then what it holds
                       memory_kib=v.get("balloon.current") or v.get("balloon.maximum", 0),
                       memory_max_kib=v.get("balloon.maximum", 0),
                       memory_free_kib=v.get("balloon.unused"), nets=nets, disks=disks)


def _exists(conn, uuid) -> bool:
    try:
        conn.lookupByUUIDString(uuid)
        return True
    except libvirt.libvirtError:
        return False
