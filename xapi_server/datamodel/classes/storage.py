"""Classes: SR, PBD, VDI, VBD, VBD_metrics, SM.

Field facts (names, types, qualifiers, defaults) follow xapi's datamodel."""
from .._dsl import (FOLDER_KEYS, RC, RO, RW, cls, device_runtime, field, identity, names,
                    operations, other_config, snapshot_fields, tags)
from .metrics import data_source_messages

SR = cls(
    'SR', 'A storage repository.',
    write_role='pool-operator',
    fields=[
        identity(),
        *names(RC, setter='pool-operator'),
        *operations('storage_operations'),
        field('VDIs', 'VDI ref set', RO,
              doc='The disks in the SR.'),
        field('PBDs', 'PBD ref set', RO,
              doc='How each host reaches the SR.'),
        field('virtual_allocation', 'int', RO,
              doc="Sum of the virtual sizes (bytes) of the SR's disks."),
        field('physical_utilisation', 'int', RO,
              doc='Bytes in use on the device.'),
        field('physical_size', 'int', RC, setter='pool-operator',
              doc='Capacity (bytes) of the device.'),
        field('type', 'string', RC,
              doc='The storage driver that manages the SR (its SM type).'),
        field('content_type', 'string', RC,
              doc='What the SR holds (user, iso ...), as said when it was made.'),
        field('shared', 'bool', RO, setter='pool-operator',
              doc='True when every host of the pool can reach the SR.'),
        other_config(key_roles=FOLDER_KEYS),
        tags(),
        field('sm_config', '(string -> string) map', RW, default={},
              doc='Settings of the storage driver for this SR.'),
        field('blobs', '(string -> blob ref) map', RO, default={}),
        field('local_cache_enabled', 'bool', RO, default=False),
        field('introduced_by', 'DR_task ref', RO, default='OpaqueRef:NULL'),
        field('clustered', 'bool', RO, default=False),
        field('is_tools_sr', 'bool', RO, default=False,
              doc='True for the SR that holds the guest tools ISOs.'),
    ],
)

PBD = cls(
    'PBD', 'How a host reaches an SR.',
    ctor=True, write_role='pool-operator',
    fields=[
        identity(),
        field('host', 'host ref', RC),
        field('SR', 'SR ref', RC),
        field('device_config', '(string -> string) map', RC, setter='pool-operator',
              doc='How the driver finds the device (path, device, server ...).'),
        field('currently_attached', 'bool', RO,
              doc='True while the SR is attached on the host.'),
        other_config(default={}),
    ],
)

VDI = cls(
    'VDI', 'A virtual disk image.',
    ctor=True, write_role='vm-admin',
    fields=[
        identity(),
        *names(RC, setter='vm-admin'),
        *operations('vdi_operations'),
        field('SR', 'SR ref', RC,
              doc='The SR holding the disk.'),
        field('VBDs', 'VBD ref set', RO,
              doc='The drives that connect the disk to VMs.'),
        field('crash_dumps', 'crashdump ref set', RO),
        field('virtual_size', 'int', RC,
              doc='Size (bytes) of the disk as the guest sees it.'),
        field('physical_utilisation', 'int', RO,
              doc='Bytes the disk takes on its SR (less than virtual_size when sparse).'),
        field('type', 'enum vdi_type', RC,
              doc='What the disk is for (user, system, suspend, crashdump ...).'),
        field('sharable', 'bool', RC, setter='vm-admin',
              doc='May be attached to several running VMs at once.'),
        field('read_only', 'bool', RC, setter='vm-admin',
              doc='Can only ever be attached read-only.'),
        other_config(key_roles=FOLDER_KEYS),
        field('storage_lock', 'bool', RO),
        field('location', 'string', RO, default="",
              doc="The disk's name within its SR, as its driver knows it."),
        field('managed', 'bool', RO),
        field('missing', 'bool', RO,
              doc='True when the last scan did not find the disk on the device.'),
        field('parent', 'VDI ref', RO,
              doc='The disk this one is based on, when the driver keeps chains.'),
        field('xenstore_data', '(string -> string) map', RW, default={}),
        field('sm_config', '(string -> string) map', RW, default={},
              doc='Settings of the storage driver for this disk.'),
        *snapshot_fields('VDI', 'disk'),
        tags(),
        field('allow_caching', 'bool', RO, setter='vm-admin', default=False),
        field('on_boot', 'enum on_boot', RO, default='persist', setter='vm-admin',
              doc="persist keeps the guest's writes; reset drops them at every start."),
        field('metadata_of_pool', 'pool ref', RO, default='OpaqueRef:NULL'),
        field('metadata_latest', 'bool', RO, default=False),
        field('is_tools_iso', 'bool', RO, default=False),
        field('cbt_enabled', 'bool', RO, default=False,
              doc='True when changed-block tracking is on.'),
    ],
)

VBD = cls(
    'VBD', 'A virtual block device: a disk or CD drive of a VM.',
    ctor=True, write_role='vm-admin',
    fields=[
        identity(),
        *operations('vbd_operations'),
        field('VM', 'VM ref', RC,
              doc='The VM the drive belongs to.'),
        field('VDI', 'VDI ref', RC,
              doc='The disk in the drive; NULL for an empty CD drive.'),
        field('device', 'string', RC, default="",
              doc='The device name in the guest (e.g. xvda), known once attached.'),
        field('userdevice', 'string', RW,
              doc="The drive's position in the VM (0, 1 ...)."),
        field('bootable', 'bool', RW,
              doc='The VM may boot from this drive.'),
        field('mode', 'enum vbd_mode', RC, setter='vm-admin',
              doc='RO or RW.'),
        field('type', 'enum vbd_type', RW,
              doc='Disk, CD or Floppy.'),
        field('unpluggable', 'bool', RW, default=True,
              doc='The drive may be hot-unplugged from the running VM.'),
        field('storage_lock', 'bool', RO),
        field('empty', 'bool', RC,
              doc='True for a CD drive without a medium.'),
        other_config(),
        *device_runtime('True while the drive is attached to the running VM.'),
    ],
)

VBD_METRICS = cls(
    'VBD_metrics', 'I/O figures of a VBD.',
    write_role='vm-admin',
    fields=[
        identity(),
    ],
)

SM = cls(
    'SM', 'A storage driver.',
    write_role='pool-operator',
    fields=[
        identity(),
        *names(RO),
        field('type', 'string', RO),
        field('vendor', 'string', RO),
        field('copyright', 'string', RO),
        field('version', 'string', RO),
        field('required_api_version', 'string', RO),
        field('configuration', '(string -> string) map', RO),
        field('capabilities', 'string set', RO, default=[]),
        field('features', '(string -> int) map', RO, default={}),
        other_config(default={}),
        field('driver_filename', 'string', RO, default=""),
        field('required_cluster_stack', 'string set', RO, default=[]),
        field('supported_image_formats', 'enum image_format_type set', RO, default=[]),
    ],
)

# -- Messages (issue 4). Kept apart from the field lists above; params, results, errors
# and roles as xapi declares them. `null` is OpaqueRef:NULL.
from .._dsl import msg  # noqa: E402

_MAP = "(string -> string) map"
SR.messages.extend([
    msg("create", f"host ref host, {_MAP} device_config, int physical_size, string name_label, "
        f"string name_description, string type, string content_type, bool shared, "
        f"{_MAP} sm_config={{}}", "SR ref", "Create an SR on a device and plug it on host.",
        errors=["SR_UNKNOWN_DRIVER"], role="pool-operator"),
    msg("introduce", "string uuid, string name_label, string name_description, string type, "
        f"string content_type, bool shared, {_MAP} sm_config={{}}", "SR ref",
        "Record an existing SR (no PBDs: create and plug one).", role="pool-operator"),
    msg("destroy", "SR ref sr", doc="Delete the SR and its contents from the device.",
        errors=["SR_HAS_PBD"], role="pool-operator", forward="sr"),
    msg("forget", "SR ref sr", doc="Drop the SR's records; the device is left alone.",
        errors=["SR_HAS_PBD"], role="pool-operator", forward="sr"),
    msg("update", "SR ref sr", doc="Refresh the SR's size fields.", role="pool-operator",
        forward="sr"),
    msg("get_supported_types", "", "string set", "The SR types this server has drivers for.",
        role="read-only", mutates=False),
    msg("scan", "SR ref sr", doc="Make the VDI records match the volumes on the device.",
        role="vm-power-admin", forward="sr"),
    msg("probe", f"host ref host, {_MAP} device_config, string type, {_MAP} sm_config={{}}",
        "string", "List (as XML) the SRs present on a device.", role="pool-operator"),
])

SR.messages.extend(data_source_messages("SR", "sr", "pool-operator"))

PBD.messages.extend([
    msg("plug", "PBD ref self", doc="Attach the SR on the PBD's host.",
        errors=["SR_UNKNOWN_DRIVER"], role="pool-operator", forward="self"),
    msg("unplug", "PBD ref self", doc="Detach the SR on the PBD's host.", role="pool-operator",
        forward="self"),
])

# A disk on a member's local SR is made and removed by that member (xapi forwards
# VDI.create to a host that sees the SR, VDI.destroy to the SR's host).
VDI.forward.update(create="args.SR", destroy="self")
VDI.messages.extend([
    msg("snapshot", f"VDI ref vdi, {_MAP} driver_params={{}}", "VDI ref",
        "A read-consistent copy, recorded as a snapshot of vdi.", role="vm-admin", forward="vdi"),
    msg("clone", f"VDI ref vdi, {_MAP} driver_params={{}}", "VDI ref",
        "An independent writable copy in the same SR.", role="vm-admin", forward="vdi"),
    msg("resize", "VDI ref vdi, int size", doc="Grow the disk to size bytes.", role="vm-admin",
        forward="vdi"),
    msg("pool_migrate", f"VDI ref vdi, SR ref sr, {_MAP} options", "VDI ref",
        "Moves the disk of a running VM to another SR its host reaches, live; the VM "
        "then uses the new VDI (the result) and the old one is destroyed.",
        errors=["VDI_NEEDS_VM_FOR_MIGRATE", "VM_REQUIRES_SR", "OPERATION_NOT_ALLOWED",
                "SR_FULL", "SR_BACKEND_FAILURE"], role="vm-power-admin"),
    msg("introduce", "string uuid, string name_label, string name_description, SR ref SR, "
        f"enum vdi_type type, bool sharable, bool read_only, {_MAP} other_config, "
        f"string location, {_MAP} xenstore_data={{}}, {_MAP} sm_config={{}}, "
        "bool managed=true, int virtual_size=0, int physical_utilisation=0, "
        "pool ref metadata_of_pool=null, bool is_a_snapshot=false, "
        "datetime snapshot_time='19700101T00:00:00Z', VDI ref snapshot_of=null", "VDI ref",
        "Record a volume already present in the SR.",
        errors=["SR_OPERATION_NOT_SUPPORTED"], role="vm-admin", forward="SR"),
    msg("update", "VDI ref vdi", doc="Refresh the VDI's fields from its volume.",
        errors=["SR_OPERATION_NOT_SUPPORTED"], role="vm-admin", forward="vdi"),
    msg("copy", "VDI ref vdi, SR ref sr=null, VDI ref base_vdi=null, VDI ref into_vdi=null",
        "VDI ref", "A full copy in sr (or into into_vdi).",
        errors=["VDI_READONLY", "VDI_TOO_SMALL", "VDI_NOT_SPARSE"], role="vm-admin"),
    msg("forget", "VDI ref vdi", doc="Drop the VDI's record; the volume stays.",
        role="vm-admin"),
])

VBD.messages.extend([
    msg("eject", "VBD ref vbd", doc="Remove the medium from a CD drive.",
        errors=["VBD_NOT_REMOVABLE_MEDIA", "VBD_IS_EMPTY"], role="vm-operator", forward="vbd"),
    msg("insert", "VBD ref vbd, VDI ref vdi", doc="Put a medium into an empty CD drive.",
        errors=["VBD_NOT_REMOVABLE_MEDIA", "VBD_NOT_EMPTY"], role="vm-operator", forward="vbd"),
    msg("plug", "VBD ref self", doc="Hot-plug the device into the running VM.",
        role="vm-admin", forward="self"),
    msg("unplug", "VBD ref self", doc="Hot-unplug the device from the running VM.",
        errors=["DEVICE_DETACH_REJECTED", "DEVICE_ALREADY_DETACHED"], role="vm-admin",
        forward="self"),
    msg("assert_attachable", "VBD ref self", doc="Fail if the VBD could not be attached.",
        role="vm-admin", mutates=False),
])
