"""A streaming qcow2 (version 3) writer: everything is computed up front from the
allocated ranges, so the file goes out in order and nothing is ever sought back to.

Layout (64 KiB clusters, 16-bit refcounts):
    header | refcount table | refcount blocks | L1 table | L2 tables | data clusters
Data clusters follow the disk's order, so each run of allocated clusters is one
contiguous run in the file; L2 tables exist only for the 512 MiB stretches that hold
data. Every cluster of the file has refcount 1 and every L1/L2 entry the COPIED flag,
which is what `qemu-img check` expects of an image without snapshots.
"""
from __future__ import annotations

import array
import struct
import sys
from typing import Iterator

from .extents import Extent, block_runs, count, read_plan

MAGIC = b"QFI\xfb"
CLUSTER_BITS = 16
CLUSTER = 1 << CLUSTER_BITS
L2_ENTRIES = CLUSTER // 8                # one L2 table maps 512 MiB
REFCOUNT_ORDER = 4                       # 16-bit refcounts, qemu's default
REFBLOCK_ENTRIES = CLUSTER * 8 >> REFCOUNT_ORDER
COPIED = 1 << 63                         # refcount is exactly 1: written in place
PIECE = 4 << 20
_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")


def _clusters(nbytes: int) -> int:
    return max(1, -(-nbytes // CLUSTER))


def _big_endian(table: array.array) -> bytes:
    if sys.byteorder == "little":
        table.byteswap()
    return table.tobytes()


class Qcow2Writer:
    """A qcow2 image of a disk of `size` bytes holding the clusters `ranges`
    [(offset, length)] touch; iterate `pieces()` for the file in order."""

    def __init__(self, size: int, ranges):
        self.virtual_size = size
        self.size = -(-size // 512) * 512       # qemu counts whole sectors
        self.runs = block_runs(ranges, CLUSTER, size)
        self.data_clusters = count(self.runs)
        span = L2_ENTRIES * CLUSTER
        self.l1_size = max(1, -(-size // span))
        self.l2_runs = block_runs(((first * CLUSTER, (end - first) * CLUSTER)
                                   for first, end in self.runs), span, size)
        self.l1_clusters = _clusters(self.l1_size * 8)
        fixed = 1 + self.l1_clusters + count(self.l2_runs) + self.data_clusters
        table = blocks = 1
        while True:      # the refcount structures count themselves: find the fixpoint
            total = fixed + table + blocks
            need_blocks = -(-total // REFBLOCK_ENTRIES)
            need_table = _clusters(need_blocks * 8)
            if (need_blocks, need_table) == (blocks, table):
                break
            blocks, table = max(blocks, need_blocks), max(table, need_table)
        self.table_clusters, self.refblocks, self.total_clusters = table, blocks, total
        self.table_at = 1
        self.refblocks_at = self.table_at + table
        self.l1_at = self.refblocks_at + blocks
        self.l2_at = self.l1_at + self.l1_clusters
        self.data_at = self.l2_at + count(self.l2_runs)

    @property
    def length(self) -> int:
        return self.total_clusters * CLUSTER

    def pieces(self) -> Iterator[bytes | Extent]:
        yield self._header()
        yield from self._refcounts()
        yield from self._l1()
        yield from self._l2_tables()
        for first, end in self.runs:
            start, stop = first * CLUSTER, min(end * CLUSTER, self.virtual_size)
            yield from read_plan(start, stop - start, PIECE)
            if stop - start < (end - first) * CLUSTER:
                yield bytes((end - first) * CLUSTER - (stop - start))

    def _header(self) -> bytes:
        raw = _HEADER.pack(MAGIC, 3, 0, 0, CLUSTER_BITS, self.size, 0, self.l1_size,
                           self.l1_at * CLUSTER, self.table_at * CLUSTER,
                           self.table_clusters, 0, 0, 0, 0, 0, REFCOUNT_ORDER, _HEADER.size)
        return raw + bytes(CLUSTER - len(raw))    # zeros after it: no header extension

    def _refcounts(self) -> Iterator[bytes]:
        table = array.array("Q", [0]) * (self.table_clusters * CLUSTER // 8)
        for i in range(self.refblocks):
            table[i] = (self.refblocks_at + i) * CLUSTER
        yield _big_endian(table)
        left = self.total_clusters
        for _ in range(self.refblocks):
            used = min(left, REFBLOCK_ENTRIES)
            block = array.array("H", [1]) * used + array.array("H", [0]) * (REFBLOCK_ENTRIES - used)
            left -= used
            yield _big_endian(block)

    def _l1(self) -> Iterator[bytes]:
        table = array.array("Q", [0]) * (self.l1_clusters * CLUSTER // 8)
        cluster = self.l2_at
        for first, end in self.l2_runs:
            for index in range(first, end):
                table[index] = cluster * CLUSTER | COPIED
                cluster += 1
        yield _big_endian(table)

    def _l2_tables(self) -> Iterator[bytes]:
        """One table per L2 run entry; data cluster n (in disk order) sits at data_at+n."""
        runs, at, ordinal = self.runs, 0, 0
        for first, end in self.l2_runs:
            for index in range(first, end):
                lo, hi = index * L2_ENTRIES, (index + 1) * L2_ENTRIES
                table = array.array("Q", [0]) * L2_ENTRIES
                while at < len(runs) and runs[at][0] < hi:
                    r_first, r_end = runs[at]
                    a, b = max(r_first, lo), min(r_end, hi)
                    base = self.data_at + ordinal + (a - r_first)
                    for cluster in range(a, b):
                        table[cluster - lo] = (base + cluster - a) * CLUSTER | COPIED
                    if r_end <= hi:
                        ordinal += r_end - r_first
                        at += 1
                    else:
                        break
                yield _big_endian(table)
