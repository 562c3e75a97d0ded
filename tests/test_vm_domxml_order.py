"""The order of the devices in a VM's domain XML (issue 13 item 4): the Server composes
what storage and network add to a domain in one explicit order (server.py), so the XML
never depends on which module was imported first. Built on the in-process server
(libvirt's test driver): the XML VM.start defines is captured and its <devices> read."""
import xml.etree.ElementTree as ET

import pytest

MiB = 1 << 20
VIF_BASE = {"MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
            "qos_algorithm_params": {}}


def _vbd(vm, vdi, userdevice, kind="Disk", empty=False):
    return {"VM": vm, "VDI": vdi, "userdevice": userdevice, "bootable": kind == "Disk",
            "mode": "RO" if kind == "CD" else "RW", "type": kind, "empty": empty,
            "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}


@pytest.fixture
def defined_xml(inprocess, monkeypatch):
    """Every domain XML the hypervisor driver is asked to define, in order."""
    server = inprocess.server
    hv = server.runtime(server.host_ref).vms.hv   # this host's (services/host.py)
    seen = []
    real_define = hv.define

    async def define(uuid, xml):
        seen.append(xml)
        return await real_define(uuid, xml)
    monkeypatch.setattr(hv, "define", define)
    return seen


def test_devices_come_in_one_documented_order(api, defined_xml):
    x = api
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, "order")
    x.VM.set_is_a_template(vm, False)
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    disks = [x.VDI.create({"SR": sr, "virtual_size": str(4 * MiB), "type": "user",
                           "sharable": False, "read_only": False, "other_config": {},
                           "name_label": f"d{i}"}) for i in range(2)]
    # Made out of order: the XML sorts disks by userdevice, VIFs by device.
    x.VBD.create(_vbd(vm, disks[1], "2"))
    x.VBD.create(_vbd(vm, "OpaqueRef:NULL", "3", kind="CD", empty=True))
    x.VBD.create(_vbd(vm, disks[0], "0"))
    net = x.network.create({"name_label": "order-net", "name_description": "",
                            "MTU": "1500", "other_config": {}})
    for device, mac in (("1", "02:00:00:00:00:02"), ("0", "02:00:00:00:00:01")):
        x.VIF.create({**VIF_BASE, "VM": vm, "network": net, "device": device, "MAC": mac})
    try:
        x.VM.start(vm, False, False)
        devices = ET.fromstring(defined_xml[-1]).find("devices")
        order = []
        for el in devices:
            target = el.find("target")
            if el.tag == "interface":
                order.append(("interface", el.find("mac").get("address")))
            elif el.tag == "disk":
                order.append(("disk", target.get("dev")))
            else:
                order.append((el.tag, None))
        # serial console, [balloon on machines that emulate one], disks and CDs by
        # userdevice, then VIFs by device.
        assert order == [("serial", None), ("disk", "vda"), ("disk", "vdc"),
                         ("disk", "hdd"), ("interface", "02:00:00:00:00:01"),
                         ("interface", "02:00:00:00:00:02")]
    finally:
        x.VM.hard_shutdown(vm)
        for vbd in x.VM.get_VBDs(vm):
            x.VBD.destroy(vbd)
        for vif in x.VM.get_VIFs(vm):
            x.VIF.destroy(vif)
        x.VM.destroy(vm)
        for vdi in disks:
            x.VDI.destroy(vdi)
        x.network.destroy(net)
