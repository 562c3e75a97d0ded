"""Per-host runtimes (issue 13 item 2): what acts on a host is reached through that
host. A call on a VM reaches the runtime of the host the VM runs on (its resident_on),
a halted VM the host that would start it (today this server's own).

The second host is a host record and a HostRuntime whose `vms` is a small stand-in
holding boot records: enough to see which runtime VM.get_boot_record reads."""
import pytest

from xapi_server.services.host import HostRuntime

NULL = "OpaqueRef:NULL"


class BootRecordsOnly:
    """Stands in for a second host's VmRuntime (api/vm_sync.py): its boot records."""

    def __init__(self):
        self.boot_records: dict[str, dict] = {}

    async def shutdown(self):
        pass


@pytest.fixture
def second_host(inprocess):
    server = inprocess.server
    host = server.store.create("host", {"name_label": "second host"})
    runtime = HostRuntime(host, server)
    runtime.vms = BootRecordsOnly()
    server.runtimes[host] = runtime
    yield host, runtime
    del server.runtimes[host]
    server.store.delete("host", host)


@pytest.fixture
def vm(api):
    template = next(ref for ref, rec in api.VM.get_all_records().items()
                    if rec["is_a_template"])
    ref = api.VM.clone(template, "runtime-test")
    api.VM.set_is_a_template(ref, False)
    yield ref
    api.VM.destroy(ref)


def test_a_vm_call_reaches_the_runtime_of_its_resident_host(inprocess, api, vm,
                                                             second_host):
    server = inprocess.server
    host, runtime = second_host
    booted = dict(server.store.record("VM", vm), name_label="as booted on the second host")
    runtime.vms.boot_records[vm] = booted
    server.store.update("VM", vm, resident_on=host)
    try:
        assert server.runtime_of_vm(vm) is runtime
        assert api.VM.get_boot_record(vm)["name_label"] == "as booted on the second host"
    finally:
        server.store.update("VM", vm, resident_on=NULL)


def test_a_halted_vm_is_acted_on_by_this_host(inprocess, api, vm, second_host):
    server = inprocess.server
    _, runtime = second_host
    runtime.vms.boot_records[vm] = dict(server.store.record("VM", vm), name_label="other")
    local = server.runtime(server.host_ref)
    assert server.runtime_of_vm(vm) is local
    assert api.VM.get_boot_record(vm)["name_label"] == "runtime-test"


def test_srs_networks_and_pifs_are_reached_through_their_host(inprocess, api):
    server = inprocess.server
    local = server.runtime(server.host_ref)
    assert list(server.runtimes) == [server.host_ref]
    for sr in api.SR.get_all():
        assert server.runtime_of_sr(sr) is local
    for pif in api.PIF.get_all():
        assert server.runtime_of_pif(pif) is local
    for network in api.network.get_all():
        assert server.runtime_of_network(network) is local
