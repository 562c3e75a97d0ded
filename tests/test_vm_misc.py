"""The rest of the VM/VDI messages (issue 15) through a real server on libvirt's test
driver: host BIOS strings read from (fake) DMI files and copied into a VM, VM.import
of an XVA served over HTTP, device-model restarts, disaster-recovery checks, plugins
on the VM's host, and xapi's answers where a feature (UEFI, sysprep, WLB, conversion,
metadata VDIs) cannot exist here."""
import http.server
import re
import ssl
import stat
import struct
import threading
import time
import xmlrpc.client

import pytest

from serverproc import ServerProcess
from xva_server import export, make_vm, network, sid, sr, x  # noqa: F401 (fixtures)
from sdk_failures import failure

MiB = 1 << 20
NULL = "OpaqueRef:NULL"
DMI = {"bios_vendor": "SeaBIOS\n", "bios_version": "1.16.2-debian\n",
       "sys_vendor": "Example Computers Inc.\n", "product_name": "Model 7\n",
       "product_version": "Not Specified\n", "product_serial": "SN-\x01424242\n",
       "board_vendor": "Example Boards\n", "board_name": "B-1\n"}


def oem_structure(*strings: str) -> bytes:
    """An SMBIOS type 11 structure: its 5-byte formatted area, then its strings."""
    body = b"".join(s.encode() + b"\0" for s in strings) + b"\0"
    return struct.pack("<BBHB", 11, 5, 0x2e, len(strings)) + body


@pytest.fixture(scope="module")
def dmi(tmp_path_factory):
    root = tmp_path_factory.mktemp("dmi")
    (root / "id").mkdir()
    for name, text in DMI.items():
        (root / "id" / name).write_text(text)
    (root / "entries" / "11-0").mkdir(parents=True)
    (root / "entries" / "11-0" / "raw").write_bytes(oem_structure("Xen", "", "tenant-17"))
    return root


@pytest.fixture(scope="module")
def srv(tmp_path_factory, dmi):
    plugins = tmp_path_factory.mktemp("plugins")
    echo = plugins / "echo"
    echo.write_text("#!/usr/bin/env python3\n"
                    "import sys, xmlrpc.client\n"
                    "(session, args), fn = xmlrpc.client.loads(sys.argv[1])\n"
                    "value = fn + ':' + ','.join(f'{k}={v}' for k, v in sorted(args.items()))\n"
                    "print(xmlrpc.client.dumps(({'Status': 'Success', 'Value': value},),"
                    " methodresponse=True))\n")
    echo.chmod(echo.stat().st_mode | stat.S_IXUSR)
    proc = ServerProcess(str(tmp_path_factory.mktemp("xapi-vm-misc")),
                         env={"XAPI_DMI_DIR": str(dmi / "id"),
                              "XAPI_DMI_ENTRIES_DIR": str(dmi / "entries"),
                              "XAPI_PLUGINS_DIR": str(plugins)}).start()
    yield proc
    proc.stop()


def new_vm(x, name):
    template = x.VM.get_by_name_label("Other install media")[0]
    vm = x.VM.clone(template, name)
    x.VM.set_is_a_template(vm, False)
    return vm


# -- BIOS strings ------------------------------------------------------------------------

def test_host_bios_strings_come_from_dmi_and_a_vm_copies_them(x):
    host = x.host.get_all()[0]
    strings = x.host.get_bios_strings(host)
    assert strings == {
        "bios-vendor": "SeaBIOS", "bios-version": "1.16.2-debian",
        "system-manufacturer": "Example Computers Inc.", "system-product-name": "Model 7",
        "system-version": "",                  # "Not Specified" is no value, as xapi
        "system-serial-number": "SN-424242",   # invisible characters dropped
        "baseboard-manufacturer": "Example Boards", "baseboard-product-name": "B-1",
        "baseboard-version": "", "baseboard-serial-number": "",   # files absent
        "oem-1": "Xen", "oem-2": "tenant-17",  # the empty OEM string skipped
        "hp-rombios": ""}
    vm = new_vm(x, "bios copy")
    assert x.VM.get_bios_strings(vm) == {}
    x.VM.copy_bios_strings(vm, host)
    assert x.VM.get_bios_strings(vm) == strings
    assert x.VM.get_affinity(vm) == host
    assert failure(x.VM.copy_bios_strings, vm, host) == ["VM_BIOS_STRINGS_ALREADY_SET"]
    assert failure(x.VM.copy_bios_strings, vm, NULL)[0] == "HANDLE_INVALID"


def test_set_bios_strings_as_xapi(x):
    vm = new_vm(x, "bios set")
    x.VM.set_bios_strings(vm, {"system-manufacturer": "ACME", "enclosure-asset-tag": "A-1"})
    strings = x.VM.get_bios_strings(vm)
    assert strings["system-manufacturer"] == "ACME" and strings["enclosure-asset-tag"] == "A-1"
    assert strings["bios-vendor"] == "Xen" and strings["system-product-name"] == "HVM domU"
    assert failure(x.VM.set_bios_strings, vm, {"bios-vendor": "B"}) == \
        ["VM_BIOS_STRINGS_ALREADY_SET"]
    other = new_vm(x, "bios refused")
    for value, why in [({"oem-1": "x"}, "Unknown key"), ({"bios-version": ""},
                                                        "Value provided is empty"),
                       ({"bios-version": "v" * 513}, "has length more than 512 characters"),
                       ({"bios-version": "caf\u00e9"}, "has non-printable ASCII characters")]:
        details = failure(x.VM.set_bios_strings, other, value)
        assert details[:2] == ["INVALID_VALUE", next(iter(value))] and why in details[2]
    assert x.VM.get_bios_strings(other) == {}


# -- VM.import from a URL ----------------------------------------------------------------

class _Serve(http.server.BaseHTTPRequestHandler):
    files: dict = {}

    def do_GET(self):
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if self.path.endswith("-sized.xva"):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()   # else HTTP/1.0 without a length: the body ends at close
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Serve)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.mark.parametrize("name", ["exported-sized.xva", "exported-streamed.xva"])
def test_import_from_a_url(x, srv, sid, sr, network, web, name):  # noqa: F811
    vm = make_vm(x, sr, network, f"to serve {name}", [(2 * MiB, ["write -P 0x5a 0 1M"])])
    _Serve.files["/" + name], _ = export(x, srv, sid, vm)
    before = set(x.VM.get_all())
    imported = getattr(x.VM, "import")(f"{web}/{name}", sr[0], False, False)
    assert len(imported) == 1 and imported[0] not in before
    new = imported[0]
    assert x.VM.get_name_label(new) == f"to serve {name}"
    assert x.VM.get_uuid(new) != x.VM.get_uuid(vm)   # not a full restore
    vdis = [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(new) if x.VBD.get_type(v) == "Disk"]
    assert [x.VDI.get_virtual_size(v) for v in vdis] == [str(2 * MiB)]
    tasks = [t for t in x.task.get_all() if x.task.get_name_label(t).startswith("VM.import")]
    assert tasks == []   # the import's own task is gone


def test_import_from_a_url_with_full_restore(x, srv, sid, sr, network, web):  # noqa: F811
    vm = make_vm(x, sr, network, "restored", [(MiB, [])])
    uuid = x.VM.get_uuid(vm)
    _Serve.files["/restore-sized.xva"], _ = export(x, srv, sid, vm)
    for vdi in [x.VBD.get_VDI(v) for v in x.VM.get_VBDs(vm)]:
        x.VDI.destroy(vdi)
    x.VM.destroy(vm)
    task = getattr(x.Async.VM, "import")(f"{web}/restore-sized.xva", sr[0], True, False)
    deadline = time.monotonic() + 60
    while x.task.get_status(task) == "pending" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert x.task.get_status(task) == "success", x.task.get_error_info(task)
    (new,) = re.findall(r"OpaqueRef:[0-9a-f-]+", x.task.get_result(task))
    assert x.VM.get_uuid(new) == uuid   # the VM's own uuid back


def test_import_from_a_bad_url(x, sr, web):  # noqa: F811
    vm_import = getattr(x.VM, "import")
    details = failure(vm_import, f"{web}/missing.xva", sr[0], False, False)
    assert details[0] == "IMPORT_ERROR" and "404" in details[1]
    details = failure(vm_import, "ftp://example.invalid/a.xva", sr[0], False, False)
    assert details[0] == "IMPORT_ERROR" and "not an http(s) URL" in details[1]
    _Serve.files["/garbage-sized.xva"] = b"this is no tar archive" * 100
    details = failure(vm_import, f"{web}/garbage-sized.xva", sr[0], False, False)
    assert details[0].startswith("IMPORT_ERROR"), details
    assert failure(vm_import, f"{web}/x.xva", NULL, False, False)[0] == "HANDLE_INVALID"


# -- the device model, plugins, recovery -------------------------------------------------

def test_restart_device_models(x):
    vm = new_vm(x, "device model")
    assert failure(x.VM.restart_device_models, vm) == ["VM_BAD_POWER_STATE", vm, "running",
                                                      "halted"]
    x.VM.start(vm, False, False)
    domid = x.VM.get_domid(vm)
    x.VM.restart_device_models(vm)
    assert x.VM.get_power_state(vm) == "Running"
    assert x.VM.get_domid(vm) != domid   # a new domain: the test driver's save + restore
    assert x.VM.get_current_operations(vm) == {}
    x.VM.set_shadow_multiplier_live(vm, 2.5)
    assert x.VM.get_HVM_shadow_multiplier(vm) == 2.5
    assert failure(x.VM.set_shadow_multiplier_live, vm, 0.5) == ["INVALID_VALUE",
                                                                 "multiplier", "0.5"]
    x.VM.hard_shutdown(vm)
    assert failure(x.VM.set_shadow_multiplier_live, vm, 2.0)[0] == "VM_BAD_POWER_STATE"


def test_call_host_plugin(x):
    vm = new_vm(x, "plugin caller")
    assert x.VM.call_host_plugin(vm, "echo", "hello", {"b": "2", "a": "1"}) == "hello:a=1,b=2"
    assert failure(x.VM.call_host_plugin, vm, "nope", "fn", {}) == ["XENAPI_MISSING_PLUGIN",
                                                                   "nope"]


def test_recovery_checks(x, srv, sr, sid):  # noqa: F811
    vm = new_vm(x, "to recover")
    vdi = x.VDI.create({"SR": sr[0], "virtual_size": str(MiB), "type": "user",
                        "name_label": "recovery disk", "sharable": False, "read_only": False,
                        "other_config": {}})
    x.VBD.create({"VM": vm, "VDI": vdi, "userdevice": "0", "bootable": True, "mode": "RW",
                  "type": "Disk", "empty": False, "other_config": {},
                  "qos_algorithm_type": "", "qos_algorithm_params": {}})
    me = sid   # a session of the pool to recover into: this one
    assert x.VM.get_SRs_required_for_recovery(vm, me) == []
    x.VM.assert_can_be_recovered(vm, me)
    x.VM.recover(vm, me, False)
    assert x.VM.get_name_label(vm) == "to recover"
    # (the SDK logs in again on SESSION_INVALID: ask without it)
    raw = xmlrpc.client.ServerProxy(srv.url, context=ssl._create_unverified_context())
    assert raw.VM.assert_can_be_recovered(sid, vm, "OpaqueRef:nope") == {
        "Status": "Failure", "ErrorDescription": ["SESSION_INVALID", "OpaqueRef:nope"]}
    # an SR whose PBD is unplugged must be attached first
    pbd = x.SR.get_PBDs(sr[0])[0]
    x.PBD.unplug(pbd)
    try:
        assert x.VM.get_SRs_required_for_recovery(vm, me) == [sr[0]]
        assert failure(x.VM.assert_can_be_recovered, vm, me) == ["VM_REQUIRES_SR", vm, sr[0]]
        assert failure(x.VM.recover, vm, me, True) == ["VM_REQUIRES_SR", vm, sr[0]]
    finally:
        x.PBD.plug(pbd)
    assert x.VDI.read_database_pool_uuid(vdi) == ""
    assert failure(x.VDI.open_database, vdi) == ["VDI_INCOMPATIBLE_TYPE", vdi, "user"]


# -- features that cannot exist here -----------------------------------------------------

def test_what_xapi_answers_without_the_feature(x, sr):  # noqa: F811
    vm = new_vm(x, "no features")
    uuid = x.VM.get_uuid(vm)
    assert x.VM.get_secureboot_readiness(vm) == "not_supported"
    details = failure(x.VM.set_uefi_mode, vm, "setup")
    assert details[0] == "OPERATION_NOT_ALLOWED" and "UEFI" in details[1]
    assert failure(x.VM.update_secureboot_certificates_on_boot, vm, True)[0] == \
        "OPERATION_NOT_ALLOWED"
    x.VM.update_secureboot_certificates_on_boot(vm, False)   # nothing marked: nothing to do
    assert x.VM.get_secureboot_certificates_state(vm) == "ok"
    assert failure(x.VM.sysprep, vm, "<unattend/>", 60.0) == ["SYSPREP", uuid,
                                                             "VM is not running"]
    x.VM.start(vm, False, False)
    try:
        assert failure(x.VM.sysprep, vm, "x" * (32 * 1024 + 1), 60.0) == \
            ["SYSPREP", uuid, "unattend.xml file too large"]
        assert failure(x.VM.sysprep, vm, "<unattend/>", 60.0) == \
            ["SYSPREP", uuid, "VM driver does not support sysprep"]
    finally:
        x.VM.hard_shutdown(vm)
    assert failure(x.VM.retrieve_wlb_recommendations, vm) == ["WLB_NOT_INITIALIZED"]
    details = failure(x.VM.import_convert, "vmware", "u", "p", sr[0], {})
    assert details[0] == "IMPORT_ERROR"
