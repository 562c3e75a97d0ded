"""Metrics of a real guest (QEMU under libvirt): its vCPU's figure follows what it does.

The tiny guest boots with a shell on its serial port and stays idle; the test then types
a busy loop into that shell (through the server's vt100 console), and the guest spins one
vCPU. Its `cpu0` in /rrd_updates is low first and rises above 0.5 once the loop runs
(under TCG a spinning vCPU takes a whole host CPU; on a host loaded by other work, less:
the test waits for it). The same server then answers the VM's data-source messages, xe,
/vm_rrd, and keeps the archive once the VM is halted."""
import json
import re
import ssl
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from guest.harness import (guest, make_vm, run_in_guest, wait_booted,  # noqa: F401
                           wait_for, URI)
from serverproc import ServerProcess
from test_metrics import xe

pytestmark = pytest.mark.slow   # boots a real guest under QEMU; -m 'not slow' skips

TLS = ssl._create_unverified_context()


@pytest.fixture(scope="module")
def busy(guest, tmp_path_factory):
    """(server, vm): a running guest with a disk, a NIC and a shell on its serial port."""
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-metrics-guest")), libvirt_uri=URI,
                         env={"XAPI_METRICS_INTERVAL": "1"}).start()
    session = proc.session()
    x = session.xenapi
    vm = make_vm(x, guest, "metrics-busy")
    x.VM.set_PV_args(vm, f"{x.VM.get_PV_args(vm)} guestshell")
    sr = x.pool.get_default_SR(x.pool.get_all()[0])
    vdi = x.VDI.create({"SR": sr, "virtual_size": str(16 << 20), "type": "user",
                        "sharable": False, "read_only": False, "other_config": {},
                        "name_label": "metrics disk"})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": False, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    net = x.network.create({"name_label": "metrics lan", "other_config": {}})
    x.VIF.create({"VM": vm, "network": net, "device": "0", "MAC": "", "MTU": "1500",
                  "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}})
    x.VM.start(vm, False, False)
    wait_booted(proc, x, vm, timeout=120)
    yield proc, vm
    proc.remove_vms_and_kill()


@pytest.fixture
def session(busy):
    """A session of the test's own: the SDK does not reconnect a connection the server
    closed while another test ran (keep_alive_timeout)."""
    s = busy[0].session()
    yield s
    try:
        s.xenapi.session.logout()
    except OSError:   # idle past keep_alive_timeout while the test polled over HTTP
        pass


def updates(proc, session, query):
    url = f"{proc.url}/rrd_updates?session_id={session._session}&{query}"
    with urllib.request.urlopen(url, context=TLS, timeout=30) as r:
        return r.read()


def newest_cpu0(proc, session, uuid) -> float:
    """The VM's cpu0 in the newest 5 s row, read as XenCenter does (XML, vm_uuid=)."""
    root = ET.fromstring(updates(proc, session, f"start=-10&cf=AVERAGE&interval=5"
                                                f"&vm_uuid={uuid}"))
    legend = [e.text for e in root.find("meta/legend")]
    row = root.find("data/row")
    return float(row.findall("v")[legend.index(f"AVERAGE:vm:{uuid}:cpu0")].text)


def test_cpu0_rises_above_half_when_the_guest_spins(busy, session):
    proc, vm = busy
    uuid = session.xenapi.VM.get_uuid(vm)
    # Idle: booted, its boot's own work over (a 5 s row of it at under half a vCPU).
    idle = []
    wait_for(lambda: idle.append(newest_cpu0(proc, session, uuid)) or 0.0 <= idle[-1] < 0.5,
             90, "the booted guest idle")
    run_in_guest(proc, session.xenapi, session._session, vm,
                  "(while :; do :; done) & echo SPIN-$((6*7))", "SPIN-42")
    seen = []
    wait_for(lambda: seen.append(newest_cpu0(proc, session, uuid)) or seen[-1] > 0.5,
             90, "cpu0 above 0.5")
    assert seen[-1] <= 1.0


def test_vm_data_sources_have_xapi_names_and_units(busy, session):
    proc, vm = busy
    x = session.xenapi
    sources = {d["name_label"]: d for d in x.VM.get_data_sources(vm)}
    # The disk is VBD.device (vda: a virtio disk here), the NIC VIF.device.
    assert x.VBD.get_device(x.VM.get_VBDs(vm)[0]) == "vda"
    for name in ("cpu0", "cpu_usage", "memory", "memory_target", "vbd_vda_read",
                 "vbd_vda_write", "vif_0_rx", "vif_0_tx"):
        assert sources[name]["enabled"] and sources[name]["standard"], name
    assert sources["memory"]["units"] == "B" and sources["vif_0_rx"]["units"] == "B/s"
    # Its disk's SR: the host's per-SR sources (xapi's <first 8 chars of the SR uuid>).
    sr = x.VDI.get_SR(x.VBD.get_VDI(x.VM.get_VBDs(vm)[0]))
    host_sources = {d["name_label"] for d in x.host.get_data_sources(x.host.get_all()[0])}
    sr8 = x.SR.get_uuid(sr)[:8]
    assert {f"read_{sr8}", f"write_{sr8}", f"io_throughput_total_{sr8}",
            f"iops_read_{sr8}"} <= host_sources
    assert {"read", "write"} <= {d["name_label"] for d in x.SR.get_data_sources(sr)}
    assert x.VM.query_data_source(vm, "memory") == 128 * 2**20
    assert 0.0 <= x.VM.query_data_source(vm, "cpu0") <= 1.0
    # xapi's older per-vCPU view of the same archive
    used = x.VM_metrics.get_VCPUs_utilisation(x.VM.get_metrics(vm))
    assert list(used) == ["0"] and 0.0 <= used["0"] <= 1.0
    # The guest reads its disk at boot: bytes were read, as a rate of the first seconds.
    doc = json.loads(updates(proc, session, f"start=-300&json&vm_uuid={x.VM.get_uuid(vm)}"))
    column = [e.split(":")[-1] for e in doc["meta"]["legend"]].index("vbd_vda_read")
    assert any(float(r["values"][column]) > 0 for r in doc["data"]
               if r["values"][column] != "NaN")


def test_xe_vm_data_source_query(busy, session, tmp_path):
    proc, vm = busy
    uuid = session.xenapi.VM.get_uuid(vm)
    r = xe(proc, tmp_path, "vm-data-source-query", f"uuid={uuid}", "data-source=memory")
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 128 * 2**20
    r = xe(proc, tmp_path, "vm-data-source-list", f"uuid={uuid}")
    assert re.search(r"name_label *: vif_0_tx\n", r.stdout)


def test_halted_vm_keeps_its_archive(busy, session):
    proc, vm = busy
    x = session.xenapi
    uuid = x.VM.get_uuid(vm)
    x.VM.hard_shutdown(vm)
    with urllib.request.urlopen(f"{proc.url}/vm_rrd?session_id={session._session}"
                                f"&uuid={uuid}", context=TLS, timeout=30) as r:
        root = ET.fromstring(r.read())
    names = [ds.findtext("name") for ds in root.findall("ds")]
    assert "cpu0" in names and "vif_0_rx" in names
    cpu = names.index("cpu0")
    rows = root.find("rra/database").findall("row")
    assert max(float(v) for v in (row.findall("v")[cpu].text for row in rows)
               if v != "NaN") > 0.5
    # The messages answer from the archive now that nothing samples it.
    assert "cpu0" in {d["name_label"] for d in x.VM.get_data_sources(vm)}
    assert x.VM.query_data_source(vm, "memory") == 128 * 2**20
