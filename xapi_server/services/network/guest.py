"""VIFs in guests: the libvirt <interface> of a VIF, the device contributor that puts
every VIF of a VM in its domain XML at VM.start (`interface_devices`, in the Server's
VmComposition), and live attach/detach.

    <interface type='bridge'>
      <source bridge='xapi0'/> <mac address='..'/> <model type='virtio'/>
      <target dev='xvif0123456789'/> <mtu size='1500'/> [<link state='down'/>]
    </interface>

The tap name is ours (`tap_name`), so the kernel can tell us whether a VIF's tap
exists and which bridge it is a port of. locking_mode "disabled" (directly, or via
the network's default) is a link that is down: the guest sees no carrier.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET

from ...backends.hypervisor import HypervisorError
from .runtime import tap_name


def link_disabled(store, vif_rec: dict) -> bool:
    mode = vif_rec["locking_mode"]
    if mode == "network_default":
        net = store.tables["network"].get(vif_rec["network"])
        return bool(net) and net["default_locking_mode"] == "disabled"
    return mode == "disabled"


def interface_element(store, vif: str) -> ET.Element:
    rec = store.record("VIF", vif)
    bridge = store.get("network", rec["network"], "bridge")
    iface = ET.Element("interface", type="bridge")
    ET.SubElement(iface, "source", bridge=bridge)
    ET.SubElement(iface, "mac", address=rec["MAC"].lower())
    ET.SubElement(iface, "model", type="virtio")
    ET.SubElement(iface, "target", dev=tap_name(rec["uuid"]))
    if rec["MTU"]:
        ET.SubElement(iface, "mtu", size=str(rec["MTU"]))
    if link_disabled(store, rec):
        ET.SubElement(iface, "link", state="down")
    return iface


def interface_xml(store, vif: str) -> str:
    return ET.tostring(interface_element(store, vif), encoding="unicode")


def interface_devices(ctx) -> list[ET.Element]:
    """Device contributor (services/vm/domxml.py): the VM's VIFs by device."""
    store = ctx.store
    vifs = sorted(ctx.vm["VIFs"], key=lambda v: int(store.get("VIF", v, "device") or 0))
    return [interface_element(store, v) for v in vifs]


async def hv_device(runtime, op: str, vm_uuid: str, xml: str) -> None:
    """attach / detach / update a device of a running domain.
    Raises RuntimeError with the hypervisor's message."""
    try:
        await getattr(runtime.vms.hv, f"{op}_device")(vm_uuid, xml)
    except HypervisorError as exc:
        raise RuntimeError(str(exc)) from None
