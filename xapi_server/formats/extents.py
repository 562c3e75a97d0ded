"""Range arithmetic shared by the formats, and the errors their readers raise."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator


class FormatError(Exception):
    """The bytes are not an image this reader accepts (the text says why)."""


class Truncated(FormatError):
    """The stream ended before the image did."""


@dataclass(frozen=True)
class Extent:
    """`length` bytes of the disk from `offset`: the caller reads them and sends them."""
    offset: int
    length: int


def block_runs(ranges: Iterable[tuple[int, int]], block: int, size: int) -> list[tuple[int, int]]:
    """The blocks of `block` bytes that ranges touch, as sorted, merged runs
    [(first, end), ...] (end exclusive), clipped to the disk's `size`. Runs rather than
    a set of block numbers: a fully written 2 TiB disk is one run, not millions of ints."""
    last = (size + block - 1) // block
    runs: list[list[int]] = []
    for offset, length in sorted(ranges):
        if length <= 0 or offset >= size:
            continue
        first = offset // block
        end = min(last, (min(offset + length, size) + block - 1) // block)
        if runs and first <= runs[-1][1]:
            runs[-1][1] = max(runs[-1][1], end)
        else:
            runs.append([first, end])
    return [(a, b) for a, b in runs]


def run_blocks(runs: list[tuple[int, int]]) -> Iterator[int]:
    for first, end in runs:
        yield from range(first, end)


def count(runs: list[tuple[int, int]]) -> int:
    return sum(end - first for first, end in runs)


def read_plan(offset: int, length: int, piece: int) -> Iterator[Extent]:
    """An extent cut into pieces of at most `piece` bytes (what one read may hold)."""
    end = offset + length
    while offset < end:
        step = min(piece, end - offset)
        yield Extent(offset, step)
        offset += step
