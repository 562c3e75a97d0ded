"""Disk image formats as byte streams, independent of HTTP and of any record.

Writers (vhd.VhdWriter, qcow2.Qcow2Writer) are plans: given the virtual size and the
ranges that may hold data, they yield the output in file order as `bytes` (metadata
they computed up front) and `Extent`s (a run of the disk the caller reads and sends),
so an export never seeks and holds at most one piece in memory. Readers
(vhd.read_vhd, chunked.read_chunked) parse an upload as it arrives and yield what
to write where. extents.py holds the shared range arithmetic.
"""
from .extents import Extent, FormatError, Truncated

__all__ = ["Extent", "FormatError", "Truncated"]
