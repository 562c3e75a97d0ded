"""The hypervisor interface the VM implementations use (the factory is the package's).

The API layer never imports libvirt: it speaks this small protocol, keyed by the VM's
uuid (which is also the domain's uuid). Every method is a coroutine; implementations
run blocking hypervisor calls off the event loop. A Xen or other backend only has to
provide the same methods.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Protocol


@dataclass(frozen=True)
class DomainState:
    """Runtime truth about one domain, already in XenAPI terms."""
    power_state: str            # Halted | Paused | Running | Suspended
    domid: int = -1             # -1 when no domain runs
    memory_bytes: int = 0       # current balloon size
    vcpus: int = 0              # vCPUs online
    cpu_time_ns: int = 0
    crashed: bool = False       # stopped (or held) because the guest crashed


HALTED = DomainState("Halted")
# The scheduling period a CPU quota is given in (100 ms: the kernel's CFS default).
CPU_PERIOD_US = 100_000
# A disk's I/O limits, libvirt's <iotune> names (bytes or operations per second).
IOTUNE_NAMES = ("total_bytes_sec", "read_bytes_sec", "write_bytes_sec",
                "total_iops_sec", "read_iops_sec", "write_iops_sec")

# Our metadata namespace: a domain carrying <xapi:vm> in it belongs to this server
# (the domain XML writes it, the driver lists only domains that carry it).
METADATA_NS = "https://xapi-py.org/xmlns/vm/1.0"
METADATA_PREFIX = "xapi"

@dataclass(frozen=True)
class Capabilities:
    """What a driver's guests really do. Callers ask for the capability they need, never
    which driver it is (libvirt's test driver, say, runs no guest at all: it declares
    none of these)."""
    # The kernel and initrd a VM names are opened by the guest's process: they must exist.
    reads_boot_files: bool = True
    # A guest's memory is this host's: a boot checks the host's free memory first.
    uses_host_memory: bool = True
    # reboot() only asks: the guest's reset comes later as a "reboot" event (else the
    # reboot is done when the call returns).
    reboot_reported_by_event: bool = True
    # A running guest's NICs are taps on the host's bridges, plugged and unplugged live
    # (else a VIF's attachment is a record only).
    nics_are_host_taps: bool = True
    # A detached device leaves once the guest lets it go (virtio is cooperative), so
    # the caller watches the domain's devices (else it is gone when detach returns).
    guest_releases_devices: bool = True
    # Guests are QEMU processes opening their files as QEMU's user, who must be able to
    # reach them (backends/hypervisor/qemu_access).
    needs_qemu_access_check: bool = True
    # Domains are emulated machines: the XML names a machine type and a memory balloon.
    emulates_machine: bool = True
    # Scheduler, disk and NIC limits reach real guests (cgroups, QEMU throttling, tc).
    tunes_resources: bool = True
    # The hypervisor applies a NIC's <bandwidth> from the domain XML (else the XML
    # names the rate in our metadata and the driver applies what it can itself).
    nic_bandwidth_in_xml: bool = True


# An event handler gets the domain uuid and a kind: "lifecycle" (started, stopped,
# suspended ...: re-read the state) or "reboot" (the guest reset itself, state unchanged).
EventHandler = Callable[[str, str], None]


class Hypervisor(Protocol):
    uri: str
    domain_type: str            # what the domain XML's <domain type=...> must say
    capabilities: Capabilities  # what its guests really do (may change on reconnect)

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def set_event_handler(self, handler: EventHandler) -> None:
        """Called in the event loop thread for each event of a domain we own."""

    async def define(self, uuid: str, xml: str) -> None: ...
    async def undefine(self, uuid: str) -> None: ...
    async def start(self, uuid: str, paused: bool = False) -> None:
        """Boot afresh (a stale suspend image is discarded)."""
    async def shutdown(self, uuid: str) -> None:
        """Ask the guest to power off (ACPI power button); returns at once."""
    async def reboot(self, uuid: str) -> None:
        """Ask the guest to reboot (ACPI); returns at once."""
    async def destroy(self, uuid: str) -> None:
        """Pull the plug (also drops a suspend image)."""
    async def suspend(self, uuid: str) -> None:
        """Save memory to disk and stop (managed save)."""
    async def resume(self, uuid: str, paused: bool = False) -> None: ...
    async def pause(self, uuid: str) -> None: ...
    async def unpause(self, uuid: str) -> None: ...
    async def attach_device(self, uuid: str, xml: str) -> None: ...
    async def detach_device(self, uuid: str, xml: str) -> None: ...
    async def update_device(self, uuid: str, xml: str) -> None: ...
    async def device_targets(self, uuid: str) -> set[str]:
        """The target names (vda, hdc ...) of the running domain's devices now."""
    async def set_vcpus(self, uuid: str, count: int) -> None: ...
    # -- a running guest beyond its power cycle (libvirt_guestops.py) -----------------
    async def save_memory(self, uuid: str, path: str) -> None:
        """Memory and device state to `path`; the domain stays as it is."""
    async def saved_image_xml(self, path: str) -> str: ...
    async def restore(self, path: str, xml: str, paused: bool = False) -> None:
        """Run the domain from a memory image with `xml` as its definition."""
    async def restart_device_model(self, uuid: str, path: str) -> None:
        """A fresh device model for the running domain (state saved to `path` and back)."""
    async def send_keys(self, uuid: str, keycodes: list[int]) -> None:
        """Linux input key codes pressed together."""
    async def inject_nmi(self, uuid: str) -> None: ...
    async def reset(self, uuid: str) -> None: ...
    async def wakeup(self, uuid: str) -> None: ...
    async def resize_disk(self, uuid: str, target: str, size_bytes: int) -> None: ...
    async def set_memory(self, uuid: str, size_bytes: int) -> None: ...
    # -- resource controls of a running domain (services/vm/qos.py) --------------------
    async def set_cpu_tune(self, uuid: str, shares: int, quota_us: int | None) -> None:
        """CPU shares and a quota (microseconds per CPU_PERIOD_US, the whole domain's;
        None: no cap) of the running domain."""
    async def set_disk_iotune(self, uuid: str, target: str, limits: dict) -> None:
        """I/O limits of one disk (libvirt iotune names; 0 or absent: unlimited)."""
    async def set_interface_bandwidth(self, uuid: str, mac: str, kib_per_s: int) -> None:
        """Average rate of one NIC both ways, KiB/s (0: unlimited)."""
    async def state(self, uuid: str) -> DomainState:
        """HALTED when no domain of ours has this uuid."""
    async def list(self) -> dict[str, DomainState]:
        """Every domain carrying our metadata, by uuid."""
    # -- consoles (http/console.py) --------------------------------------------------
    async def graphics_socket(self, uuid: str) -> str | None:
        """The UNIX socket the running domain's VNC server listens on; None when no
        domain runs or it has none."""
    async def open_console(self, uuid: str) -> "ConsoleStream":
        """The guest's serial console as a byte stream (HypervisorError when there is
        none). A new stream takes the console over from an older one."""
    async def screenshot(self, uuid: str) -> tuple[str, bytes]:
        """(MIME type, image) of the running domain's first screen."""
    # -- live migration to another host's daemon (libvirt_migrate.py) ------------------
    async def migrate(self, uuid: str, plan: "MigrationPlan") -> None:
        """Move the running domain (MigrationAborted when cancelled; it then runs here)."""
    async def migration_progress(self, uuid: str) -> float | None: ...
    async def abort_migration(self, uuid: str) -> None: ...
    async def copy_disk(self, uuid: str, target: str, path: str, fmt: str,
                        progress=None) -> None:
        """Move a running domain's disk to another file (made before), live."""


class ConsoleStream(Protocol):
    """A guest's text console, both ways."""
    async def read(self) -> bytes:
        """What the guest wrote since the last read; b"" once the console is gone."""
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...


class HypervisorError(Exception):
    """A hypervisor call failed; `message` is the hypervisor's own text."""


class MigrationAborted(HypervisorError):
    """The migration job was cancelled (abort_migration): the domain stayed here."""


@dataclass
class MigrationPlan:
    """How to move a running domain to another host (Hypervisor.migrate)."""
    peer_uri: str            # the destination daemon, as this host's daemon reaches it
    data_uri: str            # where the destination QEMU listens (tcp://address)
    tls: bool = True         # the memory stream encrypted
    # Disk files the hypervisor cannot tell are shared (a directory every host mounts):
    # the caller knows they are (their SRs say so), the hypervisor's check is skipped.
    shared_files: bool = False
    copy_disks: list = field(default_factory=list)   # targets (vda...) copied along
    # Files the destination uses instead (its console log, the copies of the disks).
    paths: dict = field(default_factory=dict)
    # The bridge each interface (by MAC) joins there, where it differs (another pool).
    bridges: dict = field(default_factory=dict)


# -- metrics (services/metrics): one sample of every running domain's counters ----------

@dataclass(frozen=True)
class DomainStats:
    """Cumulative counters of one running domain at one instant; the caller derives rates
    from two samples. Devices are named by their target in the domain (vda, the tap)."""
    cpu_time_ns: int = 0
    vcpu_time_ns: tuple = ()         # per vCPU, by vCPU number
    memory_kib: int = 0              # what the balloon leaves the guest now
    memory_max_kib: int = 0          # the domain's maximum
    memory_free_kib: int | None = None   # free memory the guest reports (balloon driver
                                         # statistics), None when it reports none
    nets: tuple = ()    # (target dev, rx bytes, tx bytes, rx errors, tx errors), host's view
    disks: tuple = ()   # (target dev, read bytes, written bytes, read reqs, write reqs)


class DomainStatsSource(Protocol):
    """What the metrics sampler asks a hypervisor driver for (part of Hypervisor)."""

    async def domain_stats(self) -> dict[str, DomainStats]:
        """Counters of every running domain of ours, by uuid, in one bulk call."""

    async def report_memory_stats(self, uuid: str, period: int) -> None:
        """Ask the guest's balloon driver to report its free memory every `period` s."""
