"""The rest of the VM messages: keys and triggers for a running guest, BIOS strings,
agility, guest plugins, and what xapi itself answers only with an error (removed or
unimplemented messages)."""
from __future__ import annotations

from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.vm.calls import hv_call
from .host_plugins import call_plugin as call_host_plugin_on
from .vm_checks import vm_operation
from .wlb import _assert_enabled as assert_wlb_enabled

# Linux input key codes (linux/input-event-codes.h): what the guest's keyboard sends.
KEY_LEFTALT, KEY_SYSRQ = 56, 99
_KEYS = {**{c: code for c, code in zip("1234567890", range(2, 12))},
         **{c: code for c, code in zip("qwertyuiop", range(16, 26))},
         **{c: code for c, code in zip("asdfghjkl", range(30, 39))},
         **{c: code for c, code in zip("zxcvbnm", range(44, 51))}}

# send_trigger's names (xapi's Xen triggers that have a counterpart under QEMU) and the
# hypervisor call each makes.
_TRIGGERS = {"power": "shutdown", "reset": "reset", "nmi": "inject_nmi",
             "s3resume": "wakeup"}


def _hv(ctx, vm):
    return ctx.server.runtime_of_vm(vm).vms.hv


@implements("VM.send_sysrq")
async def send_sysrq(ctx, vm, key):
    async with vm_operation(ctx, vm, "send_sysrq"):
        code = _KEYS.get(key.lower()) if len(key) == 1 else None
        if code is None:
            raise ApiError("INVALID_VALUE", "key", key)
        uuid = ctx.store.get("VM", vm, "uuid")
        await hv_call(_hv(ctx, vm).send_keys(uuid, [KEY_LEFTALT, KEY_SYSRQ, code]))


@implements("VM.send_trigger")
async def send_trigger(ctx, vm, trigger):
    async with vm_operation(ctx, vm, "send_trigger"):
        method = _TRIGGERS.get(trigger)
        if method is None:
            raise ApiError("INVALID_VALUE", "trigger", trigger)
        uuid = ctx.store.get("VM", vm, "uuid")
        await hv_call(getattr(_hv(ctx, vm), method)(uuid))


@implements("VM.get_cooperative")
def get_cooperative(ctx, self):
    ctx.store.record("VM", self)
    return True   # xapi: deprecated, and true for every VM since ballooning left squeezed


@implements("VM.copy_bios_strings")
def copy_bios_strings(ctx, vm, host):
    store = ctx.store
    store.record("VM", vm)
    store.record("host", host)   # HANDLE_INVALID for NULL too
    if store.get("VM", vm, "bios_strings"):
        raise ApiError("VM_BIOS_STRINGS_ALREADY_SET")
    # As xapi: the VM now prefers the host whose strings it carries.
    store.update("VM", vm, bios_strings=dict(store.get("host", host, "bios_strings")),
                 affinity=host)


# xapi_globs: the keys a client may set, their length limit, and what a VM gets for
# the keys it does not set (xapi's generic strings and its standard OEM strings).
SETTABLE_BIOS_KEYS = ("bios-vendor", "bios-version", "system-manufacturer",
                      "system-product-name", "system-version", "system-serial-number",
                      "baseboard-manufacturer", "baseboard-product-name",
                      "baseboard-version", "baseboard-serial-number", "baseboard-asset-tag",
                      "baseboard-location-in-chassis", "enclosure-asset-tag")
BIOS_STRING_MAX = 512
GENERIC_BIOS_STRINGS = {
    "bios-vendor": "Xen", "bios-version": "", "system-manufacturer": "Xen",
    "system-product-name": "HVM domU", "system-version": "", "system-serial-number": "",
    "baseboard-manufacturer": "", "baseboard-product-name": "", "baseboard-version": "",
    "baseboard-serial-number": "", "baseboard-asset-tag": "",
    "baseboard-location-in-chassis": "", "enclosure-asset-tag": "", "hp-rombios": "",
    "oem-1": "Xen", "oem-2": "MS_VM_CERT/SHA1/bdbeb6e0a816d43fa6d3fe8aaef04c2bad9d3e3d"}


def _check_bios_string(key: str, value: str) -> None:
    if key not in SETTABLE_BIOS_KEYS:
        raise ApiError("INVALID_VALUE", key, "Unknown key")
    if not value:
        raise ApiError("INVALID_VALUE", key, "Value provided is empty")
    if len(value) > BIOS_STRING_MAX:
        raise ApiError("INVALID_VALUE", key,
                       f"{value} has length more than {BIOS_STRING_MAX} characters")
    if any(not " " <= c <= "~" for c in value):
        raise ApiError("INVALID_VALUE", key, f"{value} has non-printable ASCII characters")


@implements("VM.set_bios_strings")
def set_bios_strings(ctx, self, value):
    """As xapi: only while the VM has none; the given keys over xapi's generic ones."""
    if ctx.store.get("VM", self, "bios_strings"):
        raise ApiError("VM_BIOS_STRINGS_ALREADY_SET")
    for key, text in value.items():
        _check_bios_string(key, text)
    ctx.store.update("VM", self, bios_strings={**GENERIC_BIOS_STRINGS, **value})


@implements("VM.query_services")
def query_services(ctx, self):
    ctx.store.record("VM", self)
    raise ApiError("NOT_IMPLEMENTED", "query_services")   # as xapi


@implements("VM.snapshot_with_quiesce", "VM.get_is_snapshot_from_vmpp", "VBD.get_metrics",
            "VIF.get_metrics")
def removed(ctx, *_args):
    raise ApiError("MESSAGE_REMOVED")   # xapi answers so for a removed message


_GUEST_AGENT_FNS = ("request-rdp-on", "request-rdp-off", "run-script")


@implements("VM.call_plugin")
def call_plugin(ctx, vm, plugin, fn, args):
    """xapi's guest plugin: one plugin, whose functions ask the guest agent; there is
    no agent here, so a known function fails as xapi's does without one."""
    ctx.store.record("VM", vm)
    if plugin != "guest-agent-operation":
        raise ApiError("XENAPI_MISSING_PLUGIN", plugin)
    if fn not in _GUEST_AGENT_FNS:
        text = f'The requested fn "{fn}" could not be found in plugin "{plugin}".'
        raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to find fn", text, text)
    text = (f'The requested fn "{fn}" of plugin "{plugin}" could not be executed for lack '
            "of guest agent control feature.")
    raise ApiError("XENAPI_PLUGIN_FAILURE", "failed to execute fn", text, text)


@implements("VM.assert_agile")
def assert_agile(ctx, self):
    """As xapi: every disk on a shared SR, every network on a PIF of every host."""
    store = ctx.store
    for vbd in store.get("VM", self, "VBDs"):
        rec = store.record("VBD", vbd)
        if rec["empty"] or rec["VDI"] == NULL_REF:
            continue
        sr = store.get("VDI", rec["VDI"], "SR")
        if not store.get("SR", sr, "shared"):
            raise ApiError("VM_REQUIRES_SR", self, sr)
    hosts = set(store.tables["host"])
    for vif in store.get("VM", self, "VIFs"):
        network = store.get("VIF", vif, "network")
        on = {store.get("PIF", p, "host") for p in store.get("network", network, "PIFs")}
        if not hosts <= on:
            raise ApiError("VM_REQUIRES_NETWORK", self, network)


@implements("VM.call_host_plugin")
async def call_host_plugin(ctx, vm, plugin, fn, args):
    """host.call_plugin on the VM's host: where it runs, else this one (xapi forwards
    the call to the VM's resident host)."""
    host = ctx.store.get("VM", vm, "resident_on")
    if host == NULL_REF:
        host = ctx.server.host_ref
    return await call_host_plugin_on(ctx, host, plugin, fn, args)


@implements("VM.retrieve_wlb_recommendations")
def retrieve_wlb_recommendations(ctx, vm):
    ctx.store.record("VM", vm)
    assert_wlb_enabled(ctx)   # WLB_NOT_INITIALIZED / WLB_DISABLED: no appliance here
    return {}


@implements("VM.import_convert")
def import_convert(ctx, type, username, password, sr, remote_config):
    """xapi hands this to a conversion service (XenServer Conversion Manager's vpxd);
    none runs here, so the import fails as xapi's does when it cannot reach one."""
    ctx.store.record("SR", sr)
    raise ApiError("IMPORT_ERROR", f"no conversion service for {type!r} imports runs on "
                                   "this host")
