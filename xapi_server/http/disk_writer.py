"""Writing an upload to a disk while the next piece arrives (PUT /import_raw_vdi,
vdi_import.py): a few writes in flight in worker threads, receive buffers lent and
reused, all-zero grains skipped on a fresh disk."""
from __future__ import annotations

import asyncio
import collections

from ..formats import FormatError
from .vdi_transfer import IN_FLIGHT, PIECE, SKIP_GRAIN, ZERO_GRAIN


class DiskWriter:
    """Writes to the disk from worker threads, up to IN_FLIGHT writes of up to PIECE
    bytes at once while the next piece is received (a disk whose writes do not overlap
    each other's ranges); on a fresh disk all-zero 64 KiB grains are skipped (they read
    as zeros). Small pieces are gathered in a list and joined once per write.

    `buffer()` lends a PIECE-sized receive buffer, taken back once the write of its
    bytes has ended (or they were copied by a join): a fresh 4 MiB buffer per piece
    costs a page fault per 4 KiB as it fills, about a tenth of the server's CPU on an
    upload. At most IN_FLIGHT + 2 buffers ever exist."""

    def __init__(self, disk, size: int, skip_zeros: bool):
        self.disk, self.size, self.skip_zeros = disk, size, skip_zeros
        self.pending: collections.deque = collections.deque()  # (future, start, end, lent)
        self.parts: list = []
        self.held = 0                     # bytes in parts
        self.at = 0                       # disk offset of parts[0]
        self.lent: list[bytearray] = []   # every buffer buffer() made
        self.spare: list[bytearray] = []  # those free again

    def buffer(self) -> memoryview:
        """A PIECE-sized buffer to receive into and hand to write(); its contents
        are not kept beyond that write."""
        if not self.spare:
            self.spare.append(bytearray(PIECE))
            self.lent.append(self.spare[-1])
        return memoryview(self.spare.pop())

    def _give_back(self, parts):
        for part in parts:
            owner = part.obj if isinstance(part, memoryview) else None
            if owner is not None and any(owner is buf for buf in self.lent):
                self.spare.append(owner)

    async def write(self, offset: int, data) -> None:
        if offset + len(data) > self.size:
            raise FormatError(f"data at {offset} goes past the disk's {self.size} bytes")
        if self.parts and offset != self.at + self.held:
            await self._flush()
        if not self.parts:
            self.at = offset
        self.parts.append(data)
        self.held += len(data)
        if self.held >= PIECE:
            await self._flush()

    async def zeros(self, offset: int, length: int) -> None:
        """A run that must read as zeros: written (as zeroes, no data sent to an NBD
        disk) unless the disk is fresh."""
        if self.skip_zeros or not length:
            return
        await self._flush()
        await self._start(self.disk.write_zeroes, offset, length, offset, offset + length)

    async def _flush(self):
        if self.parts:
            parts, at, self.parts, self.held = self.parts, self.at, [], 0
            if len(parts) == 1:
                data, lent = parts[0], parts
            else:
                data, lent = b"".join(parts), ()
                self._give_back(parts)
            await self._start(self._write, data, at, at, at + len(data), lent)

    async def _start(self, job, a, b, start: int, end: int, lent=()):
        # a write never overtakes one to the same bytes (chunked records may repeat
        # an offset); the oldest is waited for when IN_FLIGHT are out
        while self.pending and (len(self.pending) >= IN_FLIGHT or any(
                s < end and start < e for _, s, e, _ in self.pending)):
            future, _, _, done_with = self.pending.popleft()
            await future
            self._give_back(done_with)
        future = asyncio.ensure_future(asyncio.to_thread(job, a, b))
        self.pending.append((future, start, end, lent))

    def _write(self, data, at: int):
        if not self.skip_zeros:
            return self.disk.pwrite(data, at)
        # runs of grains that are not all zero, each written at once
        view = memoryview(data).cast("B")
        run_start = None
        for start in range(0, len(view), SKIP_GRAIN):
            zero = _all_zero(view[start:start + SKIP_GRAIN])
            if zero and run_start is not None:
                self.disk.pwrite(view[run_start:start], at + run_start)
                run_start = None
            elif not zero and run_start is None:
                run_start = start
        if run_start is not None:
            self.disk.pwrite(view[run_start:], at + run_start)

    async def finish(self):
        await self._flush()
        await self.drain()
        await asyncio.to_thread(self.disk.flush)

    async def drain(self):
        """Wait for the writes in flight (also when failing: no thread left behind);
        the first failure is raised once all have ended."""
        failure = None
        while self.pending:
            future, _, _, done_with = self.pending.popleft()
            try:
                await asyncio.shield(future)
                self._give_back(done_with)
            except asyncio.CancelledError:
                await asyncio.wait([future])
                for rest, _, _, _ in self.pending:
                    await asyncio.wait([rest])
                self.pending.clear()
                raise
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


def _all_zero(grain: memoryview) -> bool:
    # A byte that is not zero settles nearly every grain of real data without a copy
    # (a copy or a memoryview comparison holds the GIL for the whole grain).
    if grain[0] or grain[-1] or grain[len(grain) // 2]:
        return False
    return bytes(grain) == (ZERO_GRAIN if len(grain) == SKIP_GRAIN else bytes(len(grain)))
