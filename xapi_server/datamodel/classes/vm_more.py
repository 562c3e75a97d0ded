"""Messages: VM checkpoints, keys and triggers, and the rest of xapi's VM, VDI, VBD and VIF
messages (issue 15). Params, results, errors and roles as xapi declares them; kept apart
from the class declarations (vm.py, storage.py, network.py), which they extend."""
from .._dsl import msg
from .network import VIF
from .storage import VBD, VDI
from .vm import VM

_READ = dict(role="read-only", mutates=False)
_MAP = "(string -> string) map"

VM.messages.extend([
    msg("checkpoint", "VM ref vm, string new_name", "VM ref",
        "Snapshots the VM with its memory: the snapshot is Suspended, its memory image in "
        "its suspend_VDI; a running VM runs on.",
        result_doc="the checkpoint",
        errors=["VM_BAD_POWER_STATE", "SR_FULL", "OPERATION_NOT_ALLOWED",
                "VM_CHECKPOINT_SUSPEND_FAILED", "VM_CHECKPOINT_RESUME_FAILED",
                "VM_REQUIRES_SR"], role="vm-power-admin", forward="vm"),
    msg("snapshot_with_quiesce", "VM ref vm, string new_name", "VM ref",
        "Removed from xapi (needs a VSS agent in the guest): MESSAGE_REMOVED.",
        errors=["MESSAGE_REMOVED"], role="vm-power-admin"),
    msg("get_is_snapshot_from_vmpp", "VM ref self", "bool",
        "Removed from xapi with protection policies: MESSAGE_REMOVED.",
        errors=["MESSAGE_REMOVED"], **_READ),
    msg("send_sysrq", "VM ref vm, string key", "void",
        "Presses Alt+SysRq+key on the running guest's keyboard.",
        params_doc={"key": "one character: a letter or digit"},
        errors=["VM_BAD_POWER_STATE", "INVALID_VALUE"], role="pool-admin", forward="vm"),
    msg("send_trigger", "VM ref vm, string trigger", "void",
        "Sends a hardware event to the running guest: power (the ACPI power button), "
        "reset, nmi or s3resume.",
        errors=["VM_BAD_POWER_STATE", "INVALID_VALUE"], role="pool-admin", forward="vm"),
    msg("get_cooperative", "VM ref self", "bool",
        "Deprecated in xapi, which always answers true.", **_READ),
    msg("copy_bios_strings", "VM ref vm, host ref host", "void",
        "Gives the VM the host's BIOS strings (and the host as its affinity).",
        errors=["VM_BIOS_STRINGS_ALREADY_SET"], role="vm-admin"),
    msg("query_services", "VM ref self", _MAP,
        "Not implemented in xapi either: NOT_IMPLEMENTED.",
        errors=["NOT_IMPLEMENTED"], role="pool-admin"),
    msg("call_plugin", f"VM ref vm, string plugin, string fn, {_MAP} args", "string",
        "Calls a guest plugin: only guest-agent-operation exists, whose functions need a "
        "guest agent.",
        errors=["XENAPI_MISSING_PLUGIN", "XENAPI_PLUGIN_FAILURE"], role="vm-operator",
        forward="vm"),
    msg("assert_agile", "VM ref self", "void",
        "Fails if the VM is tied to this host: a disk on an unshared SR, a network "
        "without a PIF on every host.",
        errors=["VM_REQUIRES_SR", "VM_REQUIRES_NETWORK"], **_READ),
    msg("restart_device_models", "VM ref self", "void",
        "Replaces the running guest's device model (its QEMU process) by a fresh one: "
        "the guest is saved and restored on this host, as xapi's local migration.",
        errors=["VM_BAD_POWER_STATE", "OTHER_OPERATION_IN_PROGRESS", "VM_IS_TEMPLATE",
                "OPERATION_NOT_ALLOWED"], role="vm-power-admin", forward="self"),
    msg("set_shadow_multiplier_live", "VM ref self, float multiplier", "void",
        "Sets the shadow memory multiplier of a running VM (at least 1.0); QEMU has no "
        "shadow page tables to resize, so it is recorded only, as xapi does where the "
        "domain has none.",
        errors=["VM_BAD_POWER_STATE", "INVALID_VALUE"], role="vm-power-admin", forward="self"),
    msg("sysprep", "VM ref self, string unattend, float timeout", "void",
        "Hands unattend.xml to Windows sysprep through the guest's PV drivers: none "
        "exist under QEMU, so SYSPREP says why it cannot run.",
        errors=["SYSPREP", "VM_BAD_POWER_STATE"], role="vm-admin"),
    msg("get_secureboot_readiness", "VM ref self", "enum vm_secureboot_readiness",
        "Whether the VM can boot with secure boot: not_supported for a VM that boots "
        "BIOS firmware, as every VM does here.", role="pool-admin", mutates=False),
    msg("set_uefi_mode", "VM ref self, enum vm_uefi_mode mode", "string",
        "Puts the VM's UEFI variable store in setup or user mode; refused for a VM "
        "without UEFI firmware.", errors=["OPERATION_NOT_ALLOWED"], role="pool-admin"),
    msg("update_secureboot_certificates_on_boot", "VM ref self, bool mark", "void",
        "Marks (or unmarks) an available secure boot certificate update for the next "
        "boot.", errors=["OPERATION_NOT_ALLOWED"], role="vm-admin"),
    msg("call_host_plugin", f"VM ref vm, string plugin, string fn, {_MAP} args", "string",
        "Calls a plugin (as host.call_plugin) on the host the VM runs on.",
        errors=["XENAPI_MISSING_PLUGIN", "XENAPI_PLUGIN_FAILURE"], role="vm-operator"),
    msg("retrieve_wlb_recommendations", "VM ref vm", "(host ref -> string set) map",
        "Where workload balancing would start the VM: WLB_NOT_INITIALIZED or "
        "WLB_DISABLED without a WLB appliance, as here.",
        errors=["WLB_NOT_INITIALIZED", "WLB_DISABLED"], **_READ),
    msg("import", "string url, SR ref sr, bool full_restore, bool force", "VM ref set",
        "Imports an XVA the server downloads from an http(s) URL.",
        errors=["IMPORT_ERROR"], role="pool-operator", session=True),
    msg("import_convert", "string type, string username, string password, SR ref sr, "
        f"{_MAP} remote_config", "void",
        "Imports through a conversion service; there is none here: IMPORT_ERROR.",
        errors=["IMPORT_ERROR"], role="vm-admin"),
    msg("get_SRs_required_for_recovery", "VM ref self, session ref session_to", "SR ref set",
        "The SRs of the VM's disks (and its snapshots') that the pool of session_to "
        "has not attached.", errors=["SESSION_INVALID"], **_READ),
    msg("assert_can_be_recovered", "VM ref self, session ref session_to", "void",
        "Fails unless every SR the VM's disks need is attached in the pool of "
        "session_to.",
        errors=["VM_IS_PART_OF_AN_APPLIANCE", "VM_REQUIRES_SR", "SESSION_INVALID"], **_READ),
    msg("recover", "VM ref self, session ref session_to, bool force", "void",
        "Recovers the VM into the pool of session_to; a VM of this database is "
        "already there, so only the checks run.",
        errors=["VM_IS_PART_OF_AN_APPLIANCE", "VM_REQUIRES_SR", "SESSION_INVALID"],
        role="read-only"),
])

VDI.messages.extend([
    msg("open_database", "VDI ref self", "session ref",
        "Opens the pool database a metadata VDI holds, for disaster recovery.",
        errors=["VDI_INCOMPATIBLE_TYPE", "COULD_NOT_IMPORT_DATABASE"], role="pool-operator"),
    msg("read_database_pool_uuid", "VDI ref self", "string",
        "The pool uuid of the database on a metadata VDI, from the cache an SR scan "
        "fills; empty when the VDI is not in it.", **_READ),
    msg("revert", "VDI ref snapshot", "void",
        "Puts the snapshot's contents back into the VDI it is a snapshot of; that VDI "
        "keeps its identity (uuid, location), the snapshot stays.",
        errors=["UNIMPLEMENTED_IN_SM_BACKEND", "VDI_IN_USE", "OPERATION_NOT_ALLOWED"],
        role="vm-power-admin"),
    msg("resize_online", "VDI ref vdi, int size", "void",
        "Grows the disk, also while running guests have it attached.",
        errors=["VDI_TOO_SMALL", "VDI_READONLY"], role="vm-admin", forward="vdi"),
    *(msg(name, "VDI ref self", "void", doc,
          errors=["SR_OPERATION_NOT_SUPPORTED", "VDI_MISSING"], role="vm-admin")
      for name, doc in (("enable_cbt", "Changed-block tracking on (SR drivers that offer it)."),
                        ("disable_cbt", "Changed-block tracking off."),
                        ("data_destroy", "Drop a CBT snapshot's data, keeping its metadata."))),
    msg("list_changed_blocks", "VDI ref vdi_from, VDI ref vdi_to", "string",
        "The blocks that differ between two VDIs with changed-block tracking.",
        errors=["SR_OPERATION_NOT_SUPPORTED", "VDI_MISSING"], role="vm-operator"),
    msg("get_nbd_info", "VDI ref self", "vdi_nbd_server_info record set",
        "Where the VDI can be read over NBD: one entry per NBD address; none when no "
        "network has the nbd purpose.",
        errors=["VDI_INCOMPATIBLE_TYPE", "NOT_IMPLEMENTED"], role="vm-admin", mutates=False),
])

VBD.messages.extend([
    msg("unplug_force", "VBD ref self", "void",
        "Hot-unplugs the device even when it is not unpluggable, with a short wait for "
        "the guest.",
        errors=["DEVICE_DETACH_REJECTED", "DEVICE_ALREADY_DETACHED"], role="vm-admin",
        forward="self"),
    msg("get_metrics", "VBD ref self", "VBD_metrics ref",
        "Removed from xapi with the metrics field: MESSAGE_REMOVED.",
        errors=["MESSAGE_REMOVED"], **_READ),
])

VIF.messages.extend([
    msg("get_metrics", "VIF ref self", "VIF_metrics ref",
        "Removed from xapi with the metrics field: MESSAGE_REMOVED.",
        errors=["MESSAGE_REMOVED"], **_READ),
])
