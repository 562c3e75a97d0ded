"""Domain XML from a VM record, virt-install style: each XenAPI attribute maps to
an element. Storage and network add their devices through device contributors,
which the caller passes to `build` in the order the Server composed them
(server.py, services/vm/composition.py):

    def disk_devices(ctx):           # ctx: BuildContext
        for vbd in ctx.store.record("VM", ctx.vm_ref)["VBDs"]: ...
        return [ET.Element("disk", ...)]

A contributor returns elements for <devices> (it may raise ApiError to refuse the
start, e.g. VM_REQUIRES_SR). They run in the order given, at every start, after the
serial console (and the graphics, video card and balloon of an emulated machine).
The resource controls (services/vm/qos.py) are added last, to the domain and to the
contributed disks and NICs.
"""
from __future__ import annotations

import os
import platform
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Iterable

from ...backends.hypervisor import METADATA_NS, METADATA_PREFIX, Capabilities
from . import qos, smbios

# XenAPI on_crash_behaviour -> libvirt <on_crash>
_ON_CRASH = {"destroy": "destroy", "coredump_and_destroy": "coredump-destroy",
             "restart": "restart", "coredump_and_restart": "coredump-restart",
             "preserve": "preserve", "rename_restart": "rename-restart"}
_BOOT_DEVS = {"c": "hd", "d": "cdrom", "n": "network"}


@dataclass
class BuildContext:
    store: object
    vm_ref: str
    vm: dict                 # the VM record (read only)
    domain_type: str         # kvm | qemu | xen | test
    data_dir: str
    capabilities: Capabilities   # the hypervisor driver's


DeviceContributor = Callable[[BuildContext], Iterable[ET.Element]]


def domain_name(uuid: str) -> str:
    # Stable across renames: libvirt refuses to redefine a uuid under a new name.
    return f"xapi-{uuid}"


def console_log_path(data_dir: str, uuid: str) -> str:
    return os.path.join(os.path.abspath(data_dir), "consoles", f"{uuid}.log")


def _sub(parent, tag, text=None, **attrs):
    el = ET.SubElement(parent, tag, {k: str(v) for k, v in attrs.items()})
    if text is not None:
        el.text = str(text)
    return el


def build(ctx: BuildContext, contributors: Iterable[DeviceContributor] = ()) -> str:
    vm = ctx.vm
    dom = ET.Element("domain", type=ctx.domain_type)
    _sub(dom, "name", domain_name(vm["uuid"]))
    _sub(dom, "uuid", vm["uuid"])
    _sub(dom, "title", vm["name_label"].replace("\n", " "))
    if vm["name_description"]:
        _sub(dom, "description", vm["name_description"])
    meta = _sub(dom, "metadata")
    ours = _sub(meta, f"{{{METADATA_NS}}}vm", ref=ctx.vm_ref)
    _sub(ours, f"{{{METADATA_NS}}}uuid", vm["uuid"])

    _sub(dom, "memory", vm["memory_static_max"], unit="b")
    # What the balloon leaves the guest (services/vm/qos.py: the target, in the range).
    _sub(dom, "currentMemory", qos.balloon_target(vm), unit="b")
    _sub(dom, "vcpu", vm["VCPUs_max"], placement="static", current=vm["VCPUs_at_startup"])

    _os(dom, ctx)
    if ctx.capabilities.emulates_machine:
        smbios.decorate(dom, vm["bios_strings"])   # VM.copy_bios_strings' host strings
    features = _sub(dom, "features")
    if vm["platform"].get("acpi", "1") != "0":
        _sub(features, "acpi")
    if vm["platform"].get("apic", "true") != "false":
        _sub(features, "apic")
    if vm["platform"].get("pae", "true") != "false":
        _sub(features, "pae")
    _clock(dom, vm)
    _sub(dom, "on_poweroff", vm["actions_after_shutdown"] or "destroy")
    _sub(dom, "on_reboot", vm["actions_after_reboot"] or "restart")
    _sub(dom, "on_crash", _ON_CRASH.get(vm["actions_after_crash"], "destroy"))

    devices = _sub(dom, "devices")
    # The serial console is a pty that libvirt streams to `xe console` (the vt100
    # console, virDomainOpenConsole), and everything the guest writes on it also goes
    # to a file the API (and tests) can read; append: a restart or restore must not
    # truncate it.
    serial = _sub(devices, "serial", type="pty")
    _sub(serial, "log", file=console_log_path(ctx.data_dir, vm["uuid"]), append="on")
    _sub(serial, "target", port=0)
    if ctx.capabilities.emulates_machine:
        # The rfb console: QEMU's VNC server on a UNIX socket only (no TCP port on any
        # address; http/console.py proxies it), showing a VGA card's screen. libvirt
        # picks the socket's path, in the domain's private folder (root and QEMU's user
        # only), made afresh at every start or restore with the right owner: nothing
        # of ours to keep reachable. The live XML names it (Hypervisor.graphics_socket).
        graphics = _sub(devices, "graphics", type="vnc")
        _sub(graphics, "listen", type="socket")
        video = _sub(devices, "video")
        _sub(video, "model", type="vga")
        _sub(devices, "memballoon", model="virtio")
    for contribute in contributors:
        devices.extend(contribute(ctx) or ())
    qos.decorate(ctx, dom, ours, devices)   # CPU shares and cap, NIC and disk limits
    ET.register_namespace(METADATA_PREFIX, METADATA_NS)
    return ET.tostring(dom, encoding="unicode")


def _os(dom, ctx):
    vm = ctx.vm
    os_el = _sub(dom, "os")
    arch = platform.machine() or "x86_64"
    if not ctx.capabilities.emulates_machine:
        _sub(os_el, "type", "hvm", arch=arch)
    elif ctx.domain_type == "xen" and vm["PV_kernel"]:
        _sub(os_el, "type", "xen", arch=arch)
    else:
        machine = "pc" if arch in ("x86_64", "i686") else None
        _sub(os_el, "type", "hvm", arch=arch, **({"machine": machine} if machine else {}))
    if vm["PV_kernel"]:
        # Direct kernel boot: the kernel and initrd are files on this host.
        _sub(os_el, "kernel", vm["PV_kernel"])
        if vm["PV_ramdisk"]:
            _sub(os_el, "initrd", vm["PV_ramdisk"])
        args = " ".join(a for a in (vm["PV_legacy_args"], vm["PV_args"]) if a)
        if args:
            _sub(os_el, "cmdline", args)
        return
    order = vm["HVM_boot_params"].get("order", "cd")
    for letter in order:
        if letter in _BOOT_DEVS:
            _sub(os_el, "boot", dev=_BOOT_DEVS[letter])


def _clock(dom, vm):
    offset = vm["platform"].get("timeoffset")
    if offset and offset.lstrip("-").isdigit():
        _sub(dom, "clock", offset="variable", adjustment=offset, basis="utc")
    else:
        _sub(dom, "clock", offset="utc")
