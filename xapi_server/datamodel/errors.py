"""Every error code the server can answer, with its parameters.

A failure reaches the client as `[CODE, p1, p2, ...]`. This registry names, for each code,
its parameters as xapi's datamodel declares them, a one-line description, and where the
code comes from:

- XAPI: declared by xapi, with the parameters it declares.
- XAPI_UNDECLARED: xapi's code raises it, but its datamodel does not declare it.
- OURS: xapi-py's own; xapi has no such code.

`sent` names what xapi's code really sends where that differs from its declaration
(SESSION_AUTHENTICATION_FAILED is declared without parameters but sends two); we send the
same, so `max_params` counts those.

Who reads it: `msg(errors=[...])` may name only registered codes (checked at import,
datamodel/_dsl.py); xe's error texts (cli/errors.py) take their parameter names from it;
schemas/openrpc.json lists it. `ApiError(code, ...)` is not checked at run time (errors are
raised on hot paths): tests/test_error_registry.py reads the source and checks that every
raised code is registered and given at most `max_params` parameters.

Adding a code: one `_error(...)` line below, parameter names as xapi's datamodel has
them (ocaml/idl/datamodel_errors.ml), the description in our own words.
"""
from __future__ import annotations

from dataclasses import dataclass

XAPI, XAPI_UNDECLARED, OURS = "xapi", "xapi, undeclared", "xapi-py"


@dataclass(frozen=True)
class ErrorCode:
    code: str
    params: tuple          # parameter names, as xapi declares them
    doc: str
    origin: str = XAPI
    sent: tuple = ()       # what is really sent, where it differs from `params`

    @property
    def wire_params(self) -> tuple:
        return self.sent or self.params

    @property
    def max_params(self) -> int:
        return len(self.wire_params)


ERRORS: dict[str, ErrorCode] = {}


def _error(code: str, params: str, doc: str, origin: str = XAPI, sent: str = "") -> None:
    """`params` and `sent` are comma-separated names ("vdi, minimum size")."""
    if code in ERRORS:
        raise ValueError(f"error code {code} is registered twice")
    ERRORS[code] = ErrorCode(code, _names(params), doc, origin, _names(sent))


def _names(text: str) -> tuple:
    return tuple(n.strip() for n in text.split(",") if n.strip())


# --- calls, sessions, permissions -------------------------------------------------------
_error("INTERNAL_ERROR", "message", "The server failed; the message says where.")
_error("NOT_IMPLEMENTED", "function", "The server does not implement this function.")
_error("MESSAGE_METHOD_UNKNOWN", "method", "No method of that name exists.")
_error("MESSAGE_PARAMETER_COUNT_MISMATCH", "method, expected, received",
       "The call gave a different number of parameters than the method takes.")
_error("XMLRPC_UNMARSHAL_FAILURE", "expected, received",
       "The request body could not be decoded.")
_error("FIELD_TYPE_ERROR", "field", "A value has the wrong type, or a required one is missing.")
_error("INVALID_VALUE", "field, value", "A value is not acceptable here.",
       sent="field, value, reason")
_error("VALUE_NOT_SUPPORTED", "field, value, reason",
       "This server does not support that value for the field.")
_error("ENUM_VALUE_INVALID", "enum, value",
       "A value is not one the enumeration allows (only xe's texts name it).", OURS)
_error("MAP_DUPLICATE_KEY", "type, param_name, uuid, key",
       "The map already holds that key.")
_error("HANDLE_INVALID", "class, handle", "No object of that class has this reference.")
_error("UUID_INVALID", "type, uuid", "No object of that class has this uuid.")
_error("OPERATION_NOT_ALLOWED", "reason", "The operation is not allowed.")
_error("OPERATION_BLOCKED", "ref, code",
       "The object's blocked_operations forbid the operation.")
_error("OTHER_OPERATION_IN_PROGRESS", "class, object, operation_type, operation_ref",
       "The object is busy with another operation.")
_error("TOO_MANY_PENDING_TASKS", "", "Too many tasks are pending; try again later.")
_error("TASK_CANCELLED", "task", "The task was cancelled.")
_error("SESSION_AUTHENTICATION_FAILED", "", "The user name or password is wrong.",
       sent="uname, message")
_error("SESSION_AUTHORIZATION_FAILED", "username, msg",
       "The credentials are right but the user may not log in.")
_error("SESSION_INVALID", "handle", "The session does not exist or has expired.")
_error("SESSION_NOT_REGISTERED", "handle",
       "The session has not registered for events (event.register).")
_error("PERMISSION_DENIED", "message", "The caller may not do this.")
_error("RBAC_PERMISSION_DENIED", "permission, message",
       "The session's role does not grant this permission.")
_error("USER_IS_NOT_LOCAL_SUPERUSER", "msg", "Only the local superuser (root) may do this.")
_error("HOST_IS_SLAVE", "Master IP address",
       "This host is a pool member; call the pool's coordinator instead.")
_error("LICENCE_RESTRICTION", "feature", "The licence does not include this feature.")
_error("Missing parameter", "name",
       "xe: the object class has no field of that name (what xapi's xe says).", OURS)

# --- events ------------------------------------------------------------------------------
_error("EVENTS_LOST", "", "Events were dropped; register again and re-read the state.")
_error("EVENT_FROM_TOKEN_PARSE_FAILURE", "token", "The event.from token is not valid.")
_error("EVENT_SUBSCRIPTION_PARSE_FAILURE", "subscription",
       "The event subscription is not valid.")

# --- roles and subjects ------------------------------------------------------------------
_error("ROLE_NOT_FOUND", "", "No such role.")
_error("ROLE_ALREADY_EXISTS", "", "The role is there already.")
_error("SUBJECT_CANNOT_BE_RESOLVED", "", "The subject identifier names no known account.")
_error("SUBJECT_ALREADY_EXISTS", "", "A subject with that identifier exists already.")

# --- hosts, HA, clustering ---------------------------------------------------------------
_error("HOST_OFFLINE", "host", "The host cannot be reached.")
# pools (api/pool_membership.py)
_error("CANNOT_CONTACT_HOST", "host", "The coordinator could not reach the host.")
_error("HOST_UNKNOWN_TO_MASTER", "host", "The coordinator has no host of that uuid.")
_error("HOST_CANNOT_DESTROY_SELF", "host", "The coordinator cannot destroy its own host.")
_error("HOST_HAS_RESIDENT_VMS", "host", "VMs still run on the host.")
_error("POOL_JOINING_HOST_CONNECTION_FAILED", "",
       "The joining host could not reach the pool's coordinator.")
_error("POOL_JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS", "",
       "The joining host coordinates other hosts already.")
_error("POOL_JOINING_HOST_CANNOT_HAVE_RUNNING_VMS", "",
       "The joining host has VMs that are not halted.")
_error("POOL_JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS", "",
       "The joining host has a shared SR.")
_error("POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION", "host_api_version, master_api_version",
       "The joining host speaks another API version than the coordinator.")
_error("POOL_HOSTS_NOT_HOMOGENEOUS", "reason",
       "The joining host differs from the pool (pool.join_force skips this check).")
_error("HOST_DISABLED", "host", "The host is disabled.")
_error("HOST_CANNOT_ATTACH_NETWORK", "host, network",
       "The host has no PIF on the network it was asked to use.")
_error("HOST_NOT_DISABLED", "", "The host must be disabled (maintenance mode) first.")
_error("HOST_IN_USE", "host, type, ref", "The host still runs this object (a VM).")
_error("WLB_NOT_INITIALIZED", "", "No workload-balancing server is configured.")
_error("WLB_DISABLED", "", "Workload balancing is configured but switched off.")
_error("HOST_HAS_NO_MANAGEMENT_IP", "", "The host has no management interface.")
_error("CANNOT_EVACUATE_HOST", "errors",
       "Some VMs cannot leave the host: each as CODE,params, separated by |.")
_error("HOST_NOT_ENOUGH_FREE_MEMORY", "needed, available",
       "The host lacks the free memory the operation needs.")
_error("NO_HOSTS_AVAILABLE", "", "No host can run the operation.")
_error("HA_OPERATION_WOULD_BREAK_FAILOVER_PLAN", "",
       "The operation would leave HA unable to restart protected VMs.")
_error("CLUSTERING_ENABLED", "cluster_host", "Clustering is enabled on the cluster host.")
_error("MEMORY_CONSTRAINT_VIOLATION", "constraint",
       "The memory settings break the constraint named.")
_error("VM_MEMORY_TARGET_WAIT_TIMEOUT", "task",
       "The VM's memory did not reach its balloon target in time.")

# --- server certificates -----------------------------------------------------------------
_error("SERVER_CERTIFICATE_KEY_INVALID", "", "The key is not an unencrypted PKCS#8 PEM key.")
_error("SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED", "algorithm_oid",
       "The key's algorithm is not supported.")
_error("SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED", "length",
       "The RSA key is not 2048 to 4096 bits long.")
_error("SERVER_CERTIFICATE_KEY_RSA_MULTI_NOT_SUPPORTED", "",
       "The RSA key has more than two primes.")
_error("SERVER_CERTIFICATE_INVALID", "", "The certificate is not one PEM X.509 certificate.")
_error("SERVER_CERTIFICATE_KEY_MISMATCH", "", "The key does not belong to the certificate.")
_error("SERVER_CERTIFICATE_NOT_VALID_YET", "now, not_before",
       "The certificate's validity has not begun.")
_error("SERVER_CERTIFICATE_EXPIRED", "now, not_after", "The certificate has expired.")
_error("SERVER_CERTIFICATE_SIGNATURE_NOT_SUPPORTED", "",
       "The certificate's signature algorithm is not supported.")
_error("SERVER_CERTIFICATE_CHAIN_INVALID", "",
       "The chain is not a list of PEM X.509 certificates.")

# --- VM import/export (XVA) -------------------------------------------------------------
_error("IMPORT_ERROR", "msg", "The VM import failed; the message says why.")
_error("IMPORT_ERROR_PREMATURE_EOF", "", "The import stream ended before the archive did.")
_error("IMPORT_ERROR_SOME_CHECKSUMS_FAILED", "",
       "A chunk of disk data does not match its checksum.")
_error("IMPORT_ERROR_CANNOT_HANDLE_CHUNKED", "",
       "An import upload may not use chunked transfer encoding.")
_error("IMPORT_ERROR_FAILED_TO_FIND_OBJECT", "id",
       "ova.xml refers to an object it does not contain.")
_error("IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND", "",
       "A disk the VM metadata names was not found.")
_error("IMPORT_ERROR_UNEXPECTED_FILE", "filename_expected, filename_found",
       "The archive holds another member than the one expected at this point.")
_error("DEFAULT_SR_NOT_FOUND", "sr", "The pool has no usable default SR.")

# --- VMs ---------------------------------------------------------------------------------
_error("VM_BAD_POWER_STATE", "vm, expected, actual",
       "The VM's power state does not allow the operation.")
_error("VM_IS_TEMPLATE", "vm", "The operation is not valid on a template.",
       sent="vm, operation")
_error("VM_IS_SNAPSHOT", "vm, operation", "The operation is not valid on a snapshot.",
       XAPI_UNDECLARED)
_error("PROVISION_ONLY_ALLOWED_ON_TEMPLATE", "", "Only a template can be provisioned.")
_error("REVERT_ONLY_ALLOWED_ON_SNAPSHOT", "", "Only a snapshot can be reverted to.")
_error("VM_HVM_REQUIRED", "vm", "The operation needs an HVM guest.")
_error("VM_NOT_RESIDENT_HERE", "vm, host", "The VM does not run on that host.")
_error("VM_REQUIRES_SR", "vm, sr", "The host cannot reach an SR the VM's disks are on.")
_error("VM_REQUIRES_NETWORK", "vm, network", "The host has no PIF on a network the VM needs.")
_error("VDI_NEEDS_VM_FOR_MIGRATE", "vdi",
       "The disk can be moved live only while a running VM uses it.")
_error("VDI_NOT_IN_MAP", "vdi", "A disk of the VM is missing from the migration's vdi_map.")
_error("VIF_NOT_IN_MAP", "vif",
       "A VIF of the VM has no network in the cross-pool migration's vif_map.")
_error("VM_HOST_INCOMPATIBLE_VERSION_MIGRATE", "host, vm",
       "The destination host runs an older version than the VM's host.", sent="vm, host")
_error("VM_MIGRATE_FAILED", "vm, source, destination, msg",
       "Moving the VM to the other host failed; it still runs where it was.")
_error("VM_SHUTDOWN_TIMEOUT", "vm, timeout", "The VM did not shut down in time.")
_error("VM_REVERT_FAILED", "vm, snapshot", "Reverting the VM to the snapshot failed.")
_error("VM_NO_EMPTY_CD_VBD", "vm", "The VM has no empty CD drive.")
_error("BOOTLOADER_FAILED", "vm, msg", "The bootloader failed.")
_error("UNKNOWN_BOOTLOADER", "vm, bootloader", "The bootloader is not known.")

# --- storage -----------------------------------------------------------------------------
_error("SR_BACKEND_FAILURE", "status, stdout, stderr", "The storage backend failed.")
# xapi's SM drivers' numbered failures (their XE_SR_ERRORCODES table), as NFS SRs raise them.
_error("SR_BACKEND_FAILURE_73", "status, description, stderr",
       "The NFS export could not be mounted.", origin=XAPI_UNDECLARED)
_error("SR_BACKEND_FAILURE_101", "status, description, stderr",
       "device_config:serverpath is missing.", origin=XAPI_UNDECLARED)
_error("SR_BACKEND_FAILURE_102", "status, description, stderr",
       "device_config:server is missing.", origin=XAPI_UNDECLARED)
_error("SR_FULL", "requested, maximum", "The SR has no room for the requested size.")
_error("SR_HAS_NO_PBDS", "sr", "The SR has no PBDs.")
_error("SR_HAS_PBD", "sr", "The SR is still connected to a host by a PBD.")
_error("SR_NOT_ATTACHED", "sr", "The SR is not attached.")
_error("SR_OPERATION_NOT_SUPPORTED", "sr", "The SR's driver does not support the operation.")
_error("SR_UNKNOWN_DRIVER", "driver", "No SR driver of that type.")
_error("SR_UUID_EXISTS", "uuid", "An SR with that uuid exists already.")
_error("LOCATION_NOT_UNIQUE", "SR, location", "A VDI at that location exists in the SR.")
_error("VDI_IN_USE", "vdi, operation", "The VDI is in use.")
_error("VDI_READONLY", "vdi", "The VDI is read-only.")
_error("VDI_MISSING", "sr, vdi", "The VDI's data is not on the storage.")
_error("VDI_LOCATION_MISSING", "sr, location", "No VDI at that location in the SR.")
_error("VDI_TOO_SMALL", "vdi, minimum size", "The VDI is smaller than required.")
_error("VDI_TOO_LARGE", "vdi, maximum size", "The VDI is too large for the format asked for.")
_error("VDI_IO_ERROR", "reason",
       "Moving the VDI's data failed (a short or malformed upload, a device error).")
_error("VDI_NOT_SPARSE", "vdi", "The VDI's format keeps no block differences.")
_error("VDI_NOT_MANAGED", "vdi", "The server does not manage this VDI.")
_error("VBD_NOT_EMPTY", "vbd", "The drive holds a disk.")
_error("VBD_IS_EMPTY", "vbd", "The drive is empty.")
_error("VBD_NOT_REMOVABLE_MEDIA", "vbd", "The drive does not take removable media.")
_error("VBD_NOT_UNPLUGGABLE", "vbd", "The drive may not be hot-unplugged.")
_error("VBD_CDS_MUST_BE_READONLY", "", "A CD drive must be read-only.")
_error("ILLEGAL_VBD_DEVICE", "vbd, device", "The drive's device name is not valid.")

# --- devices (VBD, VIF) ------------------------------------------------------------------
_error("DEVICE_ALREADY_ATTACHED", "device", "The device is attached already.")
_error("DEVICE_ALREADY_DETACHED", "device", "The device is not attached.")
_error("DEVICE_ALREADY_EXISTS", "device", "The VM has a device of that name already.")
_error("DEVICE_DETACH_REJECTED", "type, ref, msg", "The guest refused to detach the device.")
_error("INVALID_DEVICE", "device", "The device name is not valid.")

# --- networks, PIFs, VLANs ---------------------------------------------------------------
_error("NETWORK_ALREADY_CONNECTED", "network, connected PIF",
       "The network already has a PIF on this host.")
_error("NETWORK_CONTAINS_PIF", "pifs", "The network still has PIFs.")
_error("NETWORK_CONTAINS_VIF", "vifs", "The network still has VIFs.")
_error("NETWORK_INCOMPATIBLE_PURPOSES", "new_purpose, conflicting_purpose",
       "The purpose conflicts with one the network already has.")
_error("BRIDGE_NAME_EXISTS", "bridge", "A bridge of that name exists already.")
_error("VIF_IN_USE", "network, VIF", "The network has VIFs in use.")
_error("MAC_INVALID", "MAC", "The MAC address is not valid.")
_error("INVALID_IP_ADDRESS_SPECIFIED", "parameter", "A parameter holds an invalid IP address.")
_error("INVALID_CIDR_ADDRESS_SPECIFIED", "parameter",
       "A parameter is no valid address/prefix (CIDR).")
_error("VM_LACKS_FEATURE", "vm", "The VM (its guest agent) cannot do this.")
_error("DUPLICATE_PIF_DEVICE_NAME", "device", "A PIF for that device exists already.")
_error("COULD_NOT_FIND_NETWORK_INTERFACE_WITH_SPECIFIED_DEVICE_NAME_AND_MAC_ADDRESS",
       "device, mac", "No interface has that device name and MAC address.")
_error("PIF_IS_PHYSICAL", "PIF", "The PIF is a physical interface.")
_error("PIF_IS_VLAN", "PIF", "The PIF is a VLAN; use the PIF beneath it.")
_error("PIF_IS_MANAGEMENT_INTERFACE", "PIF", "The PIF is the management interface.")
_error("PIF_DOES_NOT_ALLOW_UNPLUG", "PIF", "The PIF may not be unplugged.")
_error("PIF_VLAN_EXISTS", "PIF", "That VLAN exists already on the PIF.")
_error("PIF_VLAN_STILL_EXISTS", "PIF", "A VLAN still sits on the PIF.")
_error("PIF_TUNNEL_STILL_EXISTS", "PIF", "A tunnel still sits on the PIF.")
_error("PIF_HAS_FCOE_SR_IN_USE", "PIF, SR", "An FCoE SR in use depends on the PIF.")
_error("TRANSPORT_PIF_NOT_CONFIGURED", "PIF", "The tunnel's transport PIF has no IP setup.")
_error("VLAN_TAG_INVALID", "VLAN", "The VLAN tag is not between 0 and 4094.")
_error("PIF_CONFIGURATION_ERROR", "PIF, msg",
       "The interface could not be configured; the message says why.")
_error("PIF_UNMANAGED", "PIF", "The PIF is not managed by the server.")
_error("PIF_NOT_PRESENT", "host, network", "The host has no PIF on the network.")
_error("PIF_HAS_NO_NETWORK_CONFIGURATION", "PIF", "The PIF has no IPv4 configuration.")
_error("PIF_HAS_NO_V6_NETWORK_CONFIGURATION", "PIF", "The PIF has no IPv6 configuration.")
_error("PIF_INCOMPATIBLE_PRIMARY_ADDRESS_TYPE", "PIF",
       "The PIFs' primary address types (IPv4, IPv6) differ.")
_error("CANNOT_PLUG_BOND_SLAVE", "PIF", "The PIF is a bond member and cannot be plugged.")
_error("CANNOT_CHANGE_PIF_PROPERTIES", "PIF",
       "Only unbonded physical PIFs and bond masters have properties to change.")
_error("POOL_NOT_IN_EMERGENCY_MODE", "", "The host is not in emergency mode.")
_error("HA_IS_ENABLED", "", "Not while HA is enabled on the pool.")
_error("REDO_LOG_IS_ENABLED", "", "Not while the redo log is enabled on the pool.")
_error("HOST_NAME_INVALID", "reason", "The host name is not valid.")
# Pool and host features a standalone host answers as xapi does when they are not set up
# (api/licensing.py, ha.py, host_plugins.py, pool_trust.py, pool_updates.py ...).
_error("LICENSE_PROCESSING_ERROR", "", "The licence could not be read or applied.")
_error("INVALID_EDITION", "edition", "No such edition here (only free).")
_error("HA_NOT_ENABLED", "", "Not while HA is off on the pool.")
_error("HA_HEARTBEAT_DAEMON_STARTUP_FAILED", "", "The HA daemon could not be started.")
_error("CANNOT_CREATE_STATE_FILE", "", "No SR can hold an HA statefile.")
_error("REQUIRED_PIF_IS_UNPLUGGED", "PIF", "A PIF that must stay plugged is unplugged.")
_error("SR_NO_PBDS", "sr", "Some host has no plugged PBD for the SR.")
_error("SR_SOURCE_SPACE_INSUFFICIENT", "sr", "The SR has too little free space.")
_error("SR_NOT_SHARED", "sr", "The SR is not shared.", origin=XAPI_UNDECLARED)
_error("XENAPI_MISSING_PLUGIN", "name", "No such host plugin (or extension).")
_error("XENAPI_PLUGIN_FAILURE", "status, stdout, stderr",
       "The host plugin failed or answered something unreadable.")
_error("CERTIFICATE_DOES_NOT_EXIST", "name", "No trusted certificate has that name.")
_error("CERTIFICATE_ALREADY_EXISTS", "name", "A trusted certificate has that name already.")
_error("CERTIFICATE_NAME_INVALID", "name", "That certificate name is not allowed.")
_error("CERTIFICATE_CORRUPT", "name", "The certificate is no readable PEM certificate.")
_error("CRL_DOES_NOT_EXIST", "name", "No revocation list has that name.")
_error("CRL_ALREADY_EXISTS", "name", "A revocation list has that name already.")
_error("CRL_NAME_INVALID", "name", "That revocation list name is not allowed.")
_error("CRL_CORRUPT", "name", "The revocation list is no readable PEM CRL.")
_error("NO_REPOSITORY_ENABLED", "", "No update repository is enabled on the pool.")
_error("INVALID_UPDATE_SYNC_DAY", "day", "No such day for a weekly update sync (0-6).")
_error("INVALID_REPOSITORY_PROXY_URL", "url", "The proxy URL is not an http(s) URL.")
_error("INVALID_REPOSITORY_PROXY_CREDENTIAL", "",
       "A proxy user name needs a password and the other way round.")
_error("MESSAGE_REMOVED", "", "xapi no longer has this message.")
_error("MESSAGE_DEPRECATED", "", "xapi deprecated this message; use its successor.")
_error("AUTH_UNKNOWN_TYPE", "type", "No such kind of external authentication.")
_error("AUTH_ALREADY_ENABLED", "current auth_type, current service_name",
       "External authentication is on already.")
_error("AUTH_ENABLE_FAILED", "message", "External authentication could not be turned on.")
_error("AUTH_IS_DISABLED", "", "External authentication is off.")
_error("HOST_POWER_ON_MODE_DISABLED", "", "The host has no way set to power it on.")
_error("HOST_IS_LIVE", "host", "The host is running already.")
# VM checkpoints and the rest of the VM/VDI/VBD messages (api/vm_checkpoint.py, vm_misc.py,
# vdi_misc.py, services/storage/vdiops.py).
_error("VM_CHECKPOINT_SUSPEND_FAILED", "vm", "The VM's memory image could not be saved.")
_error("VM_CHECKPOINT_RESUME_FAILED", "vm", "The VM could not run on after its checkpoint.")
_error("VM_BIOS_STRINGS_ALREADY_SET", "", "The VM has BIOS strings already; they stay.")
_error("UNIMPLEMENTED_IN_SM_BACKEND", "message", "The SR's driver cannot do this.")
_error("VDI_INCOMPATIBLE_TYPE", "vdi, type", "The VDI's type does not allow this.")
# VM.sysprep, the disaster-recovery messages (api/vm_platform.py, api/vm_recovery.py).
_error("SYSPREP", "vm, message", "VM.sysprep could not run; the message says why.")
_error("VM_IS_PART_OF_AN_APPLIANCE", "vm, appliance",
       "The VM belongs to an appliance: recover the appliance instead.")
_error("COULD_NOT_IMPORT_DATABASE", "reason", "The database on the VDI could not be read.")
_error("NOT_ALLOWED_WHEN_NTP_IS_ENABLED", "host", "Not while NTP keeps the host's clock.")
_error("WLB_URL_INVALID", "url", "The workload-balancing URL is not host:port.")
