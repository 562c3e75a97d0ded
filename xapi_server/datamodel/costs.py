"""What a call costs the rate limiter, in tokens (xapi's rate-limit design).

One token is a cheap database read. Other generated messages write one record and cost
a little more; calls that drive the hypervisor or the storage cost multiples, so a
limiter's fill rate reads as "cheap calls per second". Unknown names are an error at
import time (see `apply`), so this table cannot silently rot.
"""
READ = 1.0
WRITE = 2.0
CUSTOM = 5.0        # a class-specific message that changes something
HYPERVISOR = 100.0  # VM lifecycle: the example xapi's design gives for VM.start
COPY = 50.0         # whole disks read or written
STORAGE = 20.0      # volume and SR operations

_VM_LIFECYCLE = ("start", "start_on", "clean_shutdown", "hard_shutdown", "shutdown",
                 "clean_reboot", "hard_reboot", "suspend", "resume", "resume_on", "pause",
                 "unpause")
COSTS = {
    **{f"VM.{name}": HYPERVISOR for name in _VM_LIFECYCLE},
    **{f"VM.{name}": COPY for name in ("clone", "copy", "snapshot", "revert", "provision")},
    **{f"VDI.{name}": COPY for name in ("copy", "clone", "snapshot")},
    **{f"VDI.{name}": STORAGE for name in ("create", "destroy", "resize", "introduce")},
    **{f"SR.{name}": STORAGE for name in ("create", "destroy", "scan", "probe", "introduce",
                                          "forget", "update")},
    **{f"PBD.{name}": STORAGE for name in ("plug", "unplug")},
    **{f"VBD.{name}": STORAGE for name in ("plug", "unplug", "insert", "eject")},
    **{f"VIF.{name}": STORAGE for name in ("plug", "unplug")},
}


def apply(methods: dict):
    """Give every message its cost."""
    unknown = sorted(set(COSTS) - set(methods))
    if unknown:
        raise ValueError(f"costs for unknown messages: {unknown}")
    for name, m in methods.items():
        if name in COSTS:
            m.cost = COSTS[name]
        elif not m.mutates:
            m.cost = READ
        else:
            m.cost = WRITE if m.kind != "custom" else CUSTOM
