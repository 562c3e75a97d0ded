"""The VM's bios_strings as the SMBIOS tables its firmware shows the guest (libvirt
<sysinfo type='smbios'> and <os><smbios mode='sysinfo'/>): what xapi hands the
domain builder, so a guest licensed to a machine's BIOS strings (after
VM.copy_bios_strings) sees that machine's vendor, product and serial number.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

# libvirt's sysinfo block and entry name for each of xapi's keys.
_ENTRIES = {
    "bios-vendor": ("bios", "vendor"), "bios-version": ("bios", "version"),
    "system-manufacturer": ("system", "manufacturer"),
    "system-product-name": ("system", "product"), "system-version": ("system", "version"),
    "system-serial-number": ("system", "serial"),
    "baseboard-manufacturer": ("baseBoard", "manufacturer"),
    "baseboard-product-name": ("baseBoard", "product"),
    "baseboard-version": ("baseBoard", "version"),
    "baseboard-serial-number": ("baseBoard", "serial"),
}


def _oem_index(key: str) -> int | None:
    number = key[len("oem-"):]
    return int(number) if key.startswith("oem-") and number.isdigit() else None


def decorate(dom: ET.Element, bios_strings: dict) -> None:
    """Add the sysinfo of `bios_strings` (empty values left out) to the domain `dom`,
    whose <os> is already there; nothing when no string has a value."""
    blocks: dict[str, list] = {}
    for key, (block, name) in _ENTRIES.items():
        if bios_strings.get(key):
            blocks.setdefault(block, []).append((name, bios_strings[key]))
    oem = sorted((i, v) for k, v in bios_strings.items()
                 if (i := _oem_index(k)) is not None and v)
    if not blocks and not oem:
        return
    sysinfo = ET.SubElement(dom, "sysinfo", type="smbios")
    for block in ("bios", "system", "baseBoard"):   # the order libvirt writes them
        if block in blocks:
            parent = ET.SubElement(sysinfo, block)
            for name, value in blocks[block]:
                ET.SubElement(parent, "entry", name=name).text = value
    if oem:
        strings = ET.SubElement(sysinfo, "oemStrings")
        for _, value in oem:
            ET.SubElement(strings, "entry").text = value
    ET.SubElement(dom.find("os"), "smbios", mode="sysinfo")
