"""The built-in VM templates, created at first start (and any missing one added on
later starts), like xapi's default templates.

Each is a halted VM record with is_a_template and is_default_template set, the
recommended memory and vCPUs, and xapi's other_config keys:
- `disks`: `<provision><disk device="0" size="BYTES" sr="" bootable="true"
  type="system"/></provision>` — what VM.provision creates (sr="" = pool default);
- `install-methods`, `default_template`, `linux_template` / `base_template_name`.
Templates are found again by `reference_label`, so renaming one does not duplicate it.
"""
from __future__ import annotations

from .api.vm_config import new_vm

GIB = 1024 ** 3
MIB = 1024 ** 2

# reference_label, name, vCPUs, memory (min, recommended), disk size (0: none), kind
_TEMPLATES = [
    ("other-install-media", "Other install media", 1, 128 * MIB, 1 * GIB, 0, "other"),
    ("debian-12", "Debian Bookworm 12", 2, 512 * MIB, 2 * GIB, 10 * GIB, "linux"),
    ("debian-13", "Debian Trixie 13", 2, 512 * MIB, 2 * GIB, 10 * GIB, "linux"),
    ("ubuntu-22.04", "Ubuntu Jammy Jellyfish 22.04", 2, 1 * GIB, 2 * GIB, 10 * GIB, "linux"),
    ("ubuntu-24.04", "Ubuntu Noble Numbat 24.04", 2, 1 * GIB, 2 * GIB, 10 * GIB, "linux"),
    ("rhel-9", "Red Hat Enterprise Linux 9", 2, 1 * GIB, 2 * GIB, 10 * GIB, "linux"),
    ("rocky-9", "Rocky Linux 9", 2, 1 * GIB, 2 * GIB, 10 * GIB, "linux"),
    ("alpine-3", "Alpine Linux 3", 1, 256 * MIB, 512 * MIB, 4 * GIB, "linux"),
    ("windows-10-64bit", "Windows 10 (64-bit)", 2, 2 * GIB, 4 * GIB, 32 * GIB, "windows"),
    ("windows-server-2022-64bit", "Windows Server 2022 (64-bit)", 2, 2 * GIB, 4 * GIB,
     32 * GIB, "windows"),
]

_RECOMMENDATIONS = (
    '<restrictions><restriction field="memory-static-max" max="137438953472"/>'
    '<restriction field="vcpus-max" max="32"/>'
    '<restriction property="number-of-vbds" max="16"/>'
    '<restriction property="number-of-vifs" max="7"/>'
    '<restriction field="has-vendor-device" value="false"/></restrictions>')


def disks_xml(size: int) -> str:
    if not size:
        return ""
    return (f'<provision><disk device="0" size="{size}" sr="" bootable="true" '
            f'type="system"/></provision>')


def template_fields(label, name, vcpus, mem_min, mem, disk, kind) -> dict:
    platform = {"acpi": "1", "apic": "true", "pae": "true", "nx": "true"}
    other = {"default_template": "true", "install-methods": "cdrom", "base_template_name": name}
    if disk:
        other["disks"] = disks_xml(disk)
    if kind == "linux":
        other["install-methods"] = "cdrom,nfs,http,ftp"
        other["linux_template"] = "true"
    if kind == "windows":
        platform.update(viridian="true", device_id="0002")
    return {
        "name_label": name, "reference_label": label,
        "name_description": "Template that allows VM installation from install media"
                            if kind == "other" else f"Template for installing {name}",
        "is_a_template": True, "is_default_template": True, "user_version": 1,
        "memory_static_min": mem_min, "memory_dynamic_min": mem,
        "memory_dynamic_max": mem, "memory_static_max": mem,
        "VCPUs_max": vcpus, "VCPUs_at_startup": vcpus, "VCPUs_params": {},
        "actions_after_shutdown": "destroy", "actions_after_reboot": "restart",
        "actions_after_crash": "restart", "HVM_boot_policy": "BIOS order",
        "HVM_boot_params": {"order": "cdn"}, "platform": platform,
        "other_config": other, "recommendations": _RECOMMENDATIONS,
        "domain_type": "hvm", "hardware_platform_version": 0, "has_vendor_device": False,
    }


def ensure(store):
    """Create any built-in template that is missing."""
    present = {rec["reference_label"] for rec in store.tables["VM"].values()
               if rec["is_default_template"]}
    for spec in _TEMPLATES:
        if spec[0] not in present:
            new_vm(store, template_fields(*spec))
