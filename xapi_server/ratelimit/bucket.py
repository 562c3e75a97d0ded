"""A token bucket with a FIFO queue of waiting calls (xapi's Token_bucket + Rate_limit queue).

A call that finds enough tokens, and nobody queued before it, goes at once. Otherwise
it waits in line: one timer wakes the head of the queue when the bucket has refilled
enough for it. The queue keeps a client's calls in order and stops a burst of small
calls from starving a big one.
"""
from __future__ import annotations

import asyncio
import time
from collections import deque

_EPSILON = 1e-9


class TokenBucket:
    def __init__(self, burst_size: float, fill_rate: float):
        self.burst_size, self.fill_rate = burst_size, fill_rate
        self.tokens = burst_size
        self._stamp = time.monotonic()
        self._queue: deque[tuple[float, asyncio.Future]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def reconfigure(self, burst_size: float, fill_rate: float):
        self._refill()
        self.burst_size, self.fill_rate = burst_size, fill_rate
        self.tokens = min(self.tokens, burst_size)
        self._reschedule()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    async def take(self, cost: float) -> float:
        """Take `cost` tokens, waiting in line if needed; returns seconds waited.
        A call costing more than the whole bucket waits for a full bucket and empties it:
        it is slowed down, never refused."""
        cost = min(cost, self.burst_size)
        self._refill()
        if not self._queue and self.tokens + _EPSILON >= cost:
            self.tokens -= cost
            return 0.0
        started = time.monotonic()
        future = asyncio.get_running_loop().create_future()
        self._queue.append((cost, future))
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            # The client went away while queued: its place (and tokens) go to the next.
            self._queue = deque(item for item in self._queue if item[1] is not future)
            if future.done() and not future.cancelled():
                self.tokens += cost  # granted in the same instant: give the tokens back
            self._reschedule()
            raise
        return time.monotonic() - started

    def close(self):
        """The limiter is gone: let everyone waiting through."""
        if self._timer:
            self._timer.cancel()
            self._timer = None
        while self._queue:
            _, future = self._queue.popleft()
            if not future.done():
                future.set_result(None)

    # -- internals -----------------------------------------------------------------

    def _refill(self):
        now = time.monotonic()
        self.tokens = min(self.burst_size, self.tokens + (now - self._stamp) * self.fill_rate)
        self._stamp = now

    def _schedule(self):
        if self._timer is not None or not self._queue:
            return
        cost = min(self._queue[0][0], self.burst_size)
        delay = max(0.0, (cost - self.tokens) / self.fill_rate)
        self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _reschedule(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._queue:
            self._release()

    def _release(self):
        self._timer = None
        self._refill()
        while self._queue and self.tokens + _EPSILON >= min(self._queue[0][0], self.burst_size):
            cost, future = self._queue.popleft()
            if future.done():
                continue
            self.tokens -= min(cost, self.burst_size)
            future.set_result(None)
        self._schedule()
