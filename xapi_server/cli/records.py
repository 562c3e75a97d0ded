"""CLI records: the fields xe shows for a class, their names, and their rendering.

Derived from the datamodel by rules, with a few tables for where xe's names differ:

* a field `foo_bar` is shown as `foo-bar`, except names in KEEP (xe kept underscores);
* a ref field named after its class (VBD.VM, VDI.SR, PBD.host ...) becomes
  `<class>-uuid`, plus `<class>-name-label` when that class has names;
* NAMES renames per (class, field); HIDDEN fields are left out of lists but can be read
  with param-get; JOINS pull a metrics object's fields into its owner's record, as xe
  shows a VM's memory-actual or a host's memory-total.

Values render as xe prints them: refs as the target's uuid (`<not in database>` when
null or gone), sets joined with "; ", maps as "k: v; k2: v2", booleans true/false,
floats with 3 decimals, dates as 20240131T10:00:00Z.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field

from ..datamodel import CLASSES, NULL_REF, Enum, Map, Prim, Ref, Set
from ..datamodel.types import format_datetime

NOT_IN_DB = "<not in database>"

KEEP = {"cpu_info", "guest_VCPUs_params", "qos_algorithm_type", "qos_algorithm_params",
        "qos_supported_algorithms", "iscsi_iqn"}

NAMES = {
    ("VM", "suspend_VDI"): "suspend-VDI-uuid", ("VM", "suspend_SR"): "suspend-SR-uuid",
    ("VM", "consoles"): "console-uuids", ("VM", "domid"): "dom-id",
    ("VM", "last_booted_record"): "last-boot-record",
    ("VDI", "VBDs"): "vbd-uuids", ("VDI", "crash_dumps"): "crashdump-uuids",
    ("network", "VIFs"): "VIF-uuids", ("network", "PIFs"): "PIF-uuids",
    ("host", "suspend_image_sr"): "suspend-image-sr-uuid",
    ("host", "crash_dump_sr"): "crash-dump-sr-uuid",
    ("host", "control_domain"): "control-domain-uuid", ("host", "resident_VMs"): "resident-vms",
    ("role", "name_label"): "name", ("role", "name_description"): "description",
    ("message", "cls"): "class",
    ("PIF", "VLAN_master_of"): "vlan-master-of", ("PIF", "VLAN_slave_of"): "vlan-slave-of",
    ("PIF", "ip_configuration_mode"): "IP-configuration-mode",
    ("PIF", "ipv6_configuration_mode"): "IPv6-configuration-mode",
    ("PIF", "ipv6_gateway"): "IPv6-gateway",
    ("VM_guest_metrics", "last_updated"): "guest-metrics-last-updated",
    ("host_metrics", "live"): "host-metrics-live",
    **{("task", f): f for f in ("subtask_of", "error_info", "allowed_operations",
                                "current_operations")},
}

HIDDEN = {("VM", "metrics"), ("VM", "guest_metrics"), ("VM", "NVRAM"),
          ("VM", "transportable_snapshot_id"), ("VM", "snapshot_metadata"),
          ("host", "metrics"), ("PIF", "metrics"), ("task", "backtrace")}

# (owner class, ref field) -> fields of the target shown in the owner's record.
JOINS = {
    ("VM", "metrics"): ("memory_actual", "VCPUs_number", "start_time", "install_time",
                        "current_domain_type", "hvm", "numa_optimised", "numa_nodes",
                        "numa_node_memory"),
    ("VM", "guest_metrics"): ("os_version", "netbios_name", "PV_drivers_version",
                              "PV_drivers_up_to_date", "networks", "services",
                              "PV_drivers_detected", "other", "live", "last_updated",
                              "can_use_hotplug_vbd", "can_use_hotplug_vif"),
    ("host", "metrics"): ("memory_total", "memory_free", "live"),
    ("PIF", "metrics"): ("carrier", "vendor_id", "vendor_name", "device_id", "device_name",
                         "speed", "duplex", "pci_bus_path"),
}

# Enums xe prints in lower case.
LOWER_ENUMS = {"vm_power_state"}


def cli_class(cname: str) -> str:
    """VM -> vm, host_cpu -> host-cpu, SR -> sr."""
    return cname.lower().replace("_", "-")


def cli_name(cname: str, fname: str) -> str:
    return NAMES.get((cname, fname)) or (fname if fname in KEEP else fname.replace("_", "-"))


class Lookup:
    """What rendering needs from the caller: records of other classes, fetched ahead."""

    def record(self, cname: str, ref: str) -> dict | None:  # pragma: no cover - interface
        raise NotImplementedError


def render(ftype, value, look: Lookup) -> str:
    if isinstance(ftype, Ref):
        rec = look.record(ftype.cls, value) if value != NULL_REF else None
        return rec.get("uuid", value) if rec is not None else NOT_IN_DB
    if isinstance(ftype, Set):
        return "; ".join(render(ftype.elem, v, look) for v in value)
    if isinstance(ftype, Map):
        return "; ".join(f"{render(ftype.key, k, look)}: {render(ftype.value, v, look)}"
                         for k, v in value.items())
    if isinstance(ftype, Enum):
        return value.lower() if ftype.name in LOWER_ENUMS else value
    if isinstance(ftype, Prim):
        if ftype.name == "bool":
            return "true" if value else "false"
        if ftype.name == "float":
            return "%.3f" % value
        if ftype.name == "datetime":
            return format_datetime(value) if not isinstance(value, str) else value
    return str(value)


def _refs_in(ftype) -> set:
    if isinstance(ftype, Ref):
        return {ftype.cls}
    if isinstance(ftype, Set):
        return _refs_in(ftype.elem)
    if isinstance(ftype, Map):
        return _refs_in(ftype.key) | _refs_in(ftype.value)
    return set()


@dataclass
class CliField:
    name: str
    cls: str                    # API class whose record holds the value
    api: str                    # API field name (in `cls`)
    kind: str = ""              # "", "S" (set) or "M" (map)
    writable: bool = False
    hidden: bool = False
    via: str | None = None      # owner's ref field leading to `cls` (joins)
    attr: str | None = None     # for `<class>-name-label`: read this field of the target
    needs: set = dc_field(default_factory=set)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.kind or ' '}{'RW' if self.writable else 'RO'})"

    @property
    def ftype(self):
        return CLASSES[self.cls].field_map[self.api].type

    def source(self, rec: dict, look: Lookup) -> tuple[object, dict | None]:
        """(type, record holding the value) — None when a join leads nowhere."""
        if self.via:
            return self.ftype, look.record(self.cls, rec[self.via])
        return self.ftype, rec

    def value(self, rec: dict, look: Lookup) -> str:
        ftype, holder = self.source(rec, look)
        if holder is None:
            return NOT_IN_DB
        if self.attr:
            target = look.record(ftype.cls, holder[self.api])
            return NOT_IN_DB if target is None else str(target.get(self.attr, ""))
        return render(ftype, holder[self.api], look)

    def map_value(self, rec: dict, look: Lookup) -> dict | None:
        ftype, holder = self.source(rec, look)
        if holder is None or not isinstance(ftype, Map):
            return None
        return {render(ftype.key, k, look): render(ftype.value, v, look)
                for k, v in holder[self.api].items()}


def _kind(ftype) -> str:
    return "S" if isinstance(ftype, Set) else "M" if isinstance(ftype, Map) else ""


def _build(cname: str) -> list[CliField]:
    out = []
    for f in CLASSES[cname].fields:
        t = f.type
        if isinstance(t, Ref) and f.name.lower() == t.cls.lower() and t.cls in CLASSES:
            target = cli_class(t.cls)
            out.append(CliField(f"{target}-uuid", cname, f.name, needs={t.cls}))
            if CLASSES[t.cls].has_name_label:
                out.append(CliField(f"{target}-name-label", cname, f.name, attr="name_label",
                                    needs={t.cls}))
            continue
        if (cname, f.name) in JOINS and isinstance(t, Ref) and t.cls in CLASSES:
            joined = CLASSES[t.cls].field_map
            for g in (joined[n] for n in JOINS[(cname, f.name)] if n in joined):
                out.append(CliField(cli_name(t.cls, g.name), t.cls, g.name, _kind(g.type),
                                    via=f.name, needs={t.cls} | _refs_in(g.type)))
        out.append(CliField(cli_name(cname, f.name), cname, f.name, _kind(t), f.writable,
                            (cname, f.name) in HIDDEN, needs=_refs_in(t)))
    return out


FIELDS: dict[str, list[CliField]] = {c: _build(c) for c, d in CLASSES.items() if d.fields}


def field_index(cname: str) -> dict[str, CliField]:
    return {f.name: f for f in FIELDS[cname]}


def layout(pairs: list[tuple[str, str]]) -> str:
    """One record as xe prints it: the first label padded on the right, the others on
    the left, to 4 + the longest label; each line `label: value`, newline-terminated."""
    if not pairs:
        return ""
    width = 4 + max(len(label) for label, _ in pairs)
    lines = [f"{pairs[0][0].ljust(width)}: {pairs[0][1]}"]
    lines += [f"{label.rjust(width)}: {value}" for label, value in pairs[1:]]
    return "\n".join(lines) + "\n"
