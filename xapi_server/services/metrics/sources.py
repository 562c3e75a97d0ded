"""What each data source is: xapi's names, descriptions and units (xcp-rrdd's plugins),
and which are recorded by default ("standard") or only after record_data_source.

Names are xapi's, so XenCenter and Xen Orchestra find them: host `cpu<N>`, `cpu_avg`,
`loadavg`, `memory_total_kib`, `memory_free_kib`, `pif_<dev>_rx`; VM `cpu<N>`,
`cpu_usage`, `memory`, `memory_target`, `memory_internal_free`, `vif_<N>_rx` (N the
VIF's device, rx as the guest sees it), `vbd_<dev>_read` (dev the VBD's device). Rates
are per second, CPU figures fractions of one CPU, memory in bytes except the `_kib` ones
and memory_internal_free (KiB), as xapi.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass

# No upper bound. xapi says infinity; the wire cannot carry a non-finite float (strict
# JSON has none), so the largest double stands for it.
UNBOUNDED = sys.float_info.max


@dataclass(frozen=True)
class SourceInfo:
    description: str
    units: str
    min: float = 0.0
    max: float = UNBOUNDED
    standard: bool = True      # recorded without being asked (xapi's "default" sources)


FRACTION = "(fraction)"

# (kind, pattern, description with {0}.. for the groups, units, max, standard)
_TABLE = [
    ("host", r"cpu(\d+)", "Physical cpu usage for cpu {0}", FRACTION, 1.0, True),
    ("host", r"cpu_avg", "Average physical cpu usage", FRACTION, 1.0, True),
    ("host", r"loadavg", "Domain0 loadavg", FRACTION, UNBOUNDED, True),
    ("host", r"hostload", "Host load per physical cpu (load average / CPUs)", FRACTION,
     UNBOUNDED, True),
    ("host", r"running_vcpus", "The total number of running vCPUs", "count", UNBOUNDED, True),
    ("host", r"running_domains", "The total number of running domains", "count",
     UNBOUNDED, True),
    ("host", r"memory_total_kib", "Total amount of memory in the host", "KiB",
     UNBOUNDED, True),
    ("host", r"memory_free_kib", "Total amount of free memory", "KiB", UNBOUNDED, True),
    ("host", r"pif_aggr_(rx|tx)", "Bytes per second {0} on all physical interfaces",
     "B/s", UNBOUNDED, True),
    ("host", r"pif_(.+)_(rx|tx)_errors", "Errors per second {1} on physical interface {0}",
     "err/s", UNBOUNDED, False),
    ("host", r"pif_(.+)_(rx|tx)", "Bytes per second {1} on physical interface {0}", "B/s",
     UNBOUNDED, True),
    ("host", r"(read|write)_([0-9a-f]{8})", "Bytes per second {0} on SR {1}", "B/s",
     UNBOUNDED, True),
    ("host", r"io_throughput_(read|write|total)_([0-9a-f]{8})",
     "Data {0} throughput on SR {1}", "MiB/s", UNBOUNDED, True),
    ("host", r"iops_(read|write|total)_([0-9a-f]{8})", "I/O requests per second ({0}) on "
     "SR {1}", "requests/s", UNBOUNDED, True),
    ("vm", r"cpu(\d+)", "CPU{0} usage", FRACTION, 1.0, True),
    ("vm", r"cpu_usage", "Domain CPU usage", FRACTION, UNBOUNDED, True),
    ("vm", r"memory", "Memory currently allocated to VM", "B", UNBOUNDED, True),
    ("vm", r"memory_target", "Target of VM balloon driver", "B", UNBOUNDED, True),
    ("vm", r"memory_internal_free", "Memory free as reported by the guest", "KiB",
     UNBOUNDED, True),
    ("vm", r"vif_(\d+)_(rx|tx)_errors", "Errors per second {1} on virtual interface "
     "number '{0}'", "err/s", UNBOUNDED, False),
    ("vm", r"vif_(\d+)_(rx|tx)", "Bytes per second {1} on virtual interface number '{0}'",
     "B/s", UNBOUNDED, True),
    ("vm", r"vbd_(.+)_iops_(read|write)", "{1} requests per second on device '{0}'",
     "requests/s", UNBOUNDED, False),
    ("vm", r"vbd_(.+)_(read|write)", "{1}s from device '{0}' in bytes per second", "B/s",
     UNBOUNDED, True),
    ("sr", r"(read|write)", "Bytes per second {0} by the VMs' disks on this SR", "B/s",
     UNBOUNDED, True),
    ("sr", r"iops_(read|write)", "I/O requests per second ({0}) of the VMs' disks on this "
     "SR", "requests/s", UNBOUNDED, True),
    ("sr", r"physical_utilisation", "Space used on the SR's storage", "B", UNBOUNDED, True),
    ("sr", r"physical_size", "Size of the SR's storage", "B", UNBOUNDED, True),
]
_COMPILED = [(kind, re.compile(pattern + r"\Z"), *rest) for kind, pattern, *rest in _TABLE]
_WORDS = {"rx": "received", "tx": "sent"}


def describe(kind: str, name: str) -> SourceInfo:
    """What the data source `name` of a `kind` (host, vm, sr) owner is."""
    for k, pattern, text, units, top, standard in _COMPILED:
        found = pattern.match(name) if k == kind else None
        if found:
            words = [_WORDS.get(g, g) for g in found.groups()]
            return SourceInfo(text.format(*words).capitalize() if text[0] == "{"
                              else text.format(*words), units, 0.0, top, standard)
    return SourceInfo(name, "", 0.0, UNBOUNDED, True)
