"""Live migration of a running domain to another host's libvirt daemon (peer to peer:
this host's libvirtd connects to the destination's itself, with its own credentials,
and QEMU streams the memory straight to the destination's QEMU).

A mixin of LibvirtHypervisor: the methods run through the class's `_run` (libvirt
errors become HypervisorError) and find the domain with its `_domain` (ours only).
The migration call blocks a worker thread until the domain runs on the destination
or the move failed; meanwhile `migration_progress` reads the job's statistics and
`abort_migration` cancels it (the domain then keeps running here, as libvirt leaves
it after any failed migration).
"""
from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import libvirt

from .contract import HypervisorError, MigrationAborted, MigrationPlan


def destination_xml(xml: str, paths: dict[str, str],
                    bridges: dict[str, str] | None = None) -> str:
    """The domain's migratable XML with the files the destination uses instead: every
    `file=` attribute (console log, disk source) found in `paths` is replaced; an
    interface whose MAC `bridges` names joins that bridge there."""
    root = ET.fromstring(xml)
    for el in root.iter():
        if el.get("file") in paths:
            el.set("file", paths[el.get("file")])
    for iface in root.iter("interface"):
        mac, source = iface.find("mac"), iface.find("source")
        if mac is not None and source is not None and source.get("bridge") is not None:
            bridge = (bridges or {}).get((mac.get("address") or "").lower())
            if bridge:
                source.set("bridge", bridge)
    return ET.tostring(root, encoding="unicode")


def _flags(plan: MigrationPlan) -> int:
    flags = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_ABORT_ON_ERROR)
    if plan.tls:
        flags |= libvirt.VIR_MIGRATE_TLS
    if plan.shared_files:
        flags |= libvirt.VIR_MIGRATE_UNSAFE
    if plan.copy_disks:
        flags |= libvirt.VIR_MIGRATE_NON_SHARED_DISK
    return flags


class MigrationCalls:
    async def migrate(self, uuid: str, plan: MigrationPlan) -> None:
        """Move the running domain; raises MigrationAborted or HypervisorError."""
        def _migrate(c):
            dom = self._domain(c, uuid)
            xml = destination_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_MIGRATABLE
                                              | libvirt.VIR_DOMAIN_XML_SECURE), plan.paths,
                                  plan.bridges)
            params = {libvirt.VIR_MIGRATE_PARAM_URI: plan.data_uri,
                      libvirt.VIR_MIGRATE_PARAM_DEST_XML: xml,
                      libvirt.VIR_MIGRATE_PARAM_PERSIST_XML: xml}
            if plan.copy_disks:
                params[libvirt.VIR_MIGRATE_PARAM_MIGRATE_DISKS] = plan.copy_disks
            try:
                dom.migrateToURI3(plan.peer_uri, params, _flags(plan))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_OPERATION_ABORTED:
                    raise MigrationAborted(exc.get_error_message() or str(exc)) from None
                raise
        await self._run(_migrate)

    async def migration_progress(self, uuid: str) -> float | None:
        """The running job's fraction done (its data processed over its total), or
        None when no job runs."""
        def _progress(c):
            try:
                stats = self._domain(c, uuid).jobStats()
            except (libvirt.libvirtError, HypervisorError):   # gone: moved or stopped
                return None
            total = stats.get("data_total") or 0
            if stats.get("type", 0) == libvirt.VIR_DOMAIN_JOB_NONE or total <= 0:
                return None
            return min(1.0, stats.get("data_processed", 0) / total)
        return await self._run(_progress)

    async def abort_migration(self, uuid: str) -> None:
        def _abort(c):
            try:
                self._domain(c, uuid).abortJob()
            except (libvirt.libvirtError, HypervisorError):
                pass   # no job (finished or not started yet): nothing to cancel
        await self._run(_abort)

    async def copy_disk(self, uuid: str, target: str, path: str, fmt: str,
                        progress=None) -> None:
        """Move the running domain's disk `target` (vdb...) to the file `path` (made
        before, format `fmt`): libvirt mirrors it there while the guest runs, then the
        domain switches to the copy (pivot). A failure leaves it on the old file."""
        def _start(c):
            dom = self._domain(c, uuid)
            dest = f"<disk type='file'><source file='{escape(path)}'/>" \
                   f"<driver type='{escape(fmt)}'/></disk>"
            dom.blockCopy(target, dest, {}, libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT
                          | libvirt.VIR_DOMAIN_BLOCK_COPY_TRANSIENT_JOB)

        def _state(c):
            info = self._domain(c, uuid).blockJobInfo(target, 0)
            return (info.get("cur", 0), info.get("end", 0)) if info else None

        await self._run(_start)
        try:
            while True:
                state = await self._run(_state)
                if state is None:
                    raise HypervisorError(f"the copy of {target} stopped")
                cur, end = state
                if progress and end:
                    progress(cur / end)
                if end and cur == end:   # in step: every write now goes to both
                    break
                await asyncio.sleep(0.1)
            await self._run(lambda c: self._domain(c, uuid).blockJobAbort(
                target, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT))
        except BaseException:
            await self._run(lambda c: _cancel(self._domain(c, uuid), target))
            raise


def _cancel(dom, target):
    try:
        dom.blockJobAbort(target, 0)
    except libvirt.libvirtError:
        pass   # no job left
