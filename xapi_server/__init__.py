"""xapi-py: a XenAPI-compatible management server on libvirt, LVM and Linux bridges."""
__version__ = "0.1.0"
