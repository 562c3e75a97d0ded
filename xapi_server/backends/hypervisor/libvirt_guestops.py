"""What LibvirtHypervisor does to a running guest beyond its power cycle: memory images
(checkpoints, restarting its device model), keys and triggers, live disk resizes.

A mixin: the methods run through the class's `_run` (libvirt errors become
HypervisorError) and find the domain with its `_domain` (ours only).
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

import libvirt


def _memory_only_snapshot(dom, path) -> str:
    """A snapshot description saving the memory to `path` and no disk (the caller
    copies the disks: they are VDIs, whose copies the storage layer makes)."""
    root = ET.Element("domainsnapshot")
    ET.SubElement(root, "memory", snapshot="external", file=path)
    disks = ET.SubElement(root, "disks")
    for target in ET.fromstring(dom.XMLDesc(0)).iterfind("devices/disk/target"):
        ET.SubElement(disks, "disk", name=target.get("dev"), snapshot="no")
    return ET.tostring(root, encoding="unicode")


class GuestOps:
    async def save_memory(self, uuid: str, path: str) -> None:
        """Write the domain's memory and device state to `path`; the domain stays in
        the state it is in (pause it first for an image consistent with its disks)."""
        def _save(c):
            # NO_METADATA: libvirt keeps no snapshot record; the image is ours.
            dom = self._domain(c, uuid)
            dom.snapshotCreateXML(_memory_only_snapshot(dom, path),
                                  libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
        await self._run(_save)

    async def saved_image_xml(self, path: str) -> str:
        """The domain XML recorded in a memory image."""
        return await self._run(lambda c: c.saveImageGetXMLDesc(path, 0))

    async def restore(self, path: str, xml: str, paused: bool = False) -> None:
        """Run the domain again from a memory image, with `xml` (the image's own,
        its disk sources changed) as its definition."""
        flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if paused else libvirt.VIR_DOMAIN_SAVE_RUNNING

        def _restore(c):
            c.restoreFlags(path, xml, flags)
            self._shaped_again(c, ET.fromstring(xml).findtext("uuid"))
        await self._run(_restore)

    def _shaped_again(self, c, uuid: str) -> None:
        """A restored domain has new taps: the NIC rates go on them again, as after a
        start (LibvirtHypervisor._shape_started; nothing where no tap has a rate)."""
        self._shape_started(self._domain(c, uuid))

    async def restart_device_model(self, uuid: str, path: str) -> None:
        """Replace the domain's QEMU process: its whole state saved to `path` (a file
        that must not exist), then restored from it, running or paused as before."""
        def _restart(c):
            # The image remembers whether the domain ran or was paused; restore
            # brings it back so (no flags: the test driver knows none).
            self._domain(c, uuid).save(path)
            c.restore(path)
            self._shaped_again(c, uuid)
        await self._run(_restart)

    async def send_keys(self, uuid: str, keycodes: list[int]) -> None:
        """Press `keycodes` (Linux input codes) together, as a keyboard would."""
        await self._run(lambda c: self._domain(c, uuid).sendKey(
            libvirt.VIR_KEYCODE_SET_LINUX, 0, keycodes, len(keycodes), 0))

    async def inject_nmi(self, uuid: str) -> None:
        await self._run(lambda c: self._domain(c, uuid).injectNMI(0))

    async def reset(self, uuid: str) -> None:
        """The reset line: the guest restarts at once, its domain stays."""
        await self._run(lambda c: self._domain(c, uuid).reset(0))

    async def wakeup(self, uuid: str) -> None:
        """Wake a guest from ACPI S3 (the 's3resume' trigger)."""
        await self._run(lambda c: self._domain(c, uuid).pMWakeup(0))

    async def resize_disk(self, uuid: str, target: str, size_bytes: int) -> None:
        """Grow a disk of the running domain; the guest sees the new size at once."""
        await self._run(lambda c: self._domain(c, uuid).blockResize(
            target, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES))
