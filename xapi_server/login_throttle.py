"""How long a failed login waits, per (client address, user name).

A pair's attempts take turns: while one is being checked or is waiting out its failure
delay, the next attempt for the same pair waits in line, so guessing in parallel is no
faster than guessing one at a time. The first few failures of a pair cost the base delay
only (a typo is cheap); after them the delay doubles per failure up to a cap. A good
login clears its own pair only: one account's logins never clear another's failures.

The failure table is bounded: the pair that failed least recently goes first, and a
pair's failures are forgotten after `FAILURE_MEMORY` seconds without one.
"""
from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from contextlib import asynccontextmanager

FAILURE_MEMORY = 900.0   # seconds without a failure after which a pair starts afresh
MAX_PAIRS = 10_000       # (address, user name) pairs whose failures are remembered


class LoginThrottle:
    def __init__(self, base_delay: float, cheap_failures: int, max_delay: float):
        self.base_delay, self.cheap_failures = base_delay, cheap_failures
        self.max_delay = max(base_delay, max_delay)
        self._failures: OrderedDict[tuple[str, str], tuple[int, float]] = OrderedDict()
        # The pairs with an attempt under way: their turn lock and how many hold or wait
        # for it. Bounded by the requests in flight (the connection cap).
        self._turns: dict[tuple[str, str], list] = {}

    def delay(self, count: int) -> float:
        """The wait of a pair's `count`-th failure in a row."""
        doublings = min(max(0, count - self.cheap_failures), 32)
        return min(self.base_delay * 2 ** doublings, self.max_delay)

    @asynccontextmanager
    async def turn(self, address: str, user: str):
        """The pair's turn: yields an Attempt once the pair's earlier attempts are over.
        A failed attempt's turn lasts until its delay is out even if its caller goes
        away: hanging up as soon as an answer is late must not buy a faster next guess."""
        key = (address, user)
        entry = self._turns.setdefault(key, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            await entry[0].acquire()
        except BaseException:
            self._leave(key, entry)
            raise
        attempt = Attempt(self, key)
        try:
            yield attempt
        finally:
            hold = attempt.turn_ends - time.monotonic()
            if hold > 0:
                asyncio.get_running_loop().call_later(hold, self._release, key, entry)
            else:
                self._release(key, entry)

    def _release(self, key, entry):
        entry[0].release()
        self._leave(key, entry)

    def _leave(self, key, entry):
        entry[1] -= 1
        if not entry[1]:
            del self._turns[key]

    def failures(self, key) -> int:
        count, last = self._failures.get(key, (0, 0.0))
        return count if time.monotonic() - last <= FAILURE_MEMORY else 0

    def _failed(self, key) -> int:
        count = self.failures(key) + 1
        self._failures[key] = (count, time.monotonic())
        self._failures.move_to_end(key)
        while len(self._failures) > MAX_PAIRS:
            self._failures.popitem(last=False)
        return count

    def _succeeded(self, key):
        self._failures.pop(key, None)


class Attempt:
    """One login attempt in its pair's turn; its delay counts from the start of the turn,
    so every way to fail (unknown name, wrong password, no subject) answers after the
    same time however long the checks behind it took."""

    def __init__(self, throttle: LoginThrottle, key):
        self._throttle, self._key = throttle, key
        self.started = self.turn_ends = time.monotonic()

    def failed(self) -> int:
        """Count the failure; returns the pair's failures in a row."""
        count = self._throttle._failed(self._key)
        self.turn_ends = self.started + self._throttle.delay(count)
        return count

    def succeeded(self):
        self._throttle._succeeded(self._key)

    async def wait_out(self):
        """Sleep until the failure's delay is out."""
        await asyncio.sleep(max(0.0, self.turn_ends - time.monotonic()))
