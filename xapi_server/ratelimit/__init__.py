"""Per-client rate limiting, as in xapi's design (doc/content/design/rate_limit.md).

Callers (records of class Caller) are patterns over (user_agent, client_ip); Rate_limit
records are token buckets callers are attached to. For every API call the dispatcher
asks `RateLimiter.admit(user_agent, client_ip, cost)`:

- every matching Caller counts the call and its tokens (statistics since start);
- the most specific matching Caller that has a limiter pays the call's cost from that
  limiter's bucket; with too few tokens the call waits in the bucket's queue (it is
  slowed down, never refused);
- a request from a (user agent, address) pair no fully specified Caller matches
  registers one automatically, so the admin can see who calls and attach limiters;
  at most `max_auto_callers` of those exist (the least recently seen goes first).

What a pair's calls do (who counts them, which bucket pays) is cached until the Caller or
Rate_limit tables change.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from ..datamodel import NULL_REF
from .bucket import TokenBucket

# last_access is a stable statistic kept in the database; writing it on every call
# would turn every read into a disk write, so it is refreshed at most this often.
LAST_ACCESS_INTERVAL = 60.0
_CACHE_LIMIT = 4096


def pattern_matches(pattern: str, value: str) -> bool:
    if pattern.endswith("*") or pattern == "":
        return value.startswith(pattern[:-1] if pattern else "")
    return value == pattern


def fully_specified(pattern: str) -> bool:
    return pattern != "" and not pattern.endswith("*")


def _length(pattern: str) -> int:
    return len(pattern.rstrip("*")) if pattern.endswith("*") else len(pattern)


@dataclass
class _Plan:
    """What a call from one (user agent, address) pair does, until the tables change."""
    callers: list            # [(Caller ref, CallerStats)], most specific first
    register: bool           # no fully specified Caller matches: make one
    limit: str | None        # the Rate_limit that pays for the call, if any


@dataclass
class CallerStats:
    calls: int = 0
    tokens: float = 0.0
    last_call: int = 0                        # call sequence number: recency for eviction
    last_access_written: float = float("-inf")


class RateLimiter:
    def __init__(self, server):
        self.server = server
        self.buckets: dict[str, TokenBucket] = {}      # Rate_limit ref -> bucket
        self.stats: dict[str, CallerStats] = {}        # Caller ref -> since start
        self._plans: dict[tuple[str, str], _Plan] = {}
        self._sequence = itertools.count(1)

    @property
    def store(self):
        return self.server.store

    def start(self):
        """Build the buckets from the database; trim auto-registered callers over the cap."""
        for ref in self.store.refs("Rate_limit"):
            record = self.store.record("Rate_limit", ref)
            if record["burst_size"] > 0 and record["fill_rate"] > 0:
                self.buckets[ref] = TokenBucket(record["burst_size"], record["fill_rate"])
        self._evict_auto(keep=self.server.settings.max_auto_callers)

    # -- the dispatcher's entry point ------------------------------------------------

    def admit(self, user_agent: str, client_ip: str, cost: float):
        """Count the call; return None, or an awaitable to wait on for the tokens.
        (Not a coroutine itself: every call of the API passes here.)"""
        plan = self._plans.get((user_agent, client_ip)) or self._plan(user_agent, client_ip)
        sequence = next(self._sequence)
        if plan.callers:
            now = time.monotonic()
            for ref, stats in plan.callers:
                stats.calls += 1
                stats.tokens += cost
                stats.last_call = sequence
                if now - stats.last_access_written > LAST_ACCESS_INTERVAL:
                    stats.last_access_written = now
                    self.store.update("Caller", ref, last_access=datetime.now(timezone.utc))
        if plan.register:
            self._auto_register(user_agent, client_ip, sequence, cost)
        if plan.limit is not None:
            bucket = self.buckets.get(plan.limit)
            if bucket is not None:
                return bucket.take(cost)
        return None

    def _plan(self, user_agent: str, client_ip: str) -> _Plan:
        matches = self.matching(user_agent, client_ip)
        limits = [self.store.get("Caller", ref, "rate_limit") for ref in matches]
        plan = _Plan([(ref, self.stats.setdefault(ref, CallerStats())) for ref in matches],
                     not any(self._fully_specified(ref) for ref in matches),
                     next((limit for limit in limits if limit != NULL_REF), None))
        if len(self._plans) >= _CACHE_LIMIT:
            self._plans.clear()
        self._plans[(user_agent, client_ip)] = plan
        return plan

    def matching(self, user_agent: str, client_ip: str) -> list[str]:
        """Caller refs matching the request, most specific first: the longest patterns in
        total; on a tie the longer address pattern, then the longer user-agent one.
        (A full scan: `_plan` caches its outcome per client.)"""
        hits = [(ref, rec) for ref, rec in self.store.tables["Caller"].items()
                if pattern_matches(rec["user_agent"], user_agent)
                and pattern_matches(rec["client_ip"], client_ip)]
        hits.sort(key=lambda hit: (-(_length(hit[1]["client_ip"])
                                     + _length(hit[1]["user_agent"])),
                                   -_length(hit[1]["client_ip"]),
                                   -_length(hit[1]["user_agent"])))
        return [ref for ref, _ in hits]

    # -- kept in step by the Caller and Rate_limit implementations -------------------

    def callers_changed(self):
        self._plans.clear()

    def install_bucket(self, rate_limit: str, burst_size: float, fill_rate: float):
        bucket = self.buckets.get(rate_limit)
        if bucket is None:
            self.buckets[rate_limit] = TokenBucket(burst_size, fill_rate)
        else:
            bucket.reconfigure(burst_size, fill_rate)

    def remove_bucket(self, rate_limit: str):
        bucket = self.buckets.pop(rate_limit, None)
        if bucket is not None:
            bucket.close()

    def forget_caller(self, caller: str):
        self.stats.pop(caller, None)
        self.callers_changed()

    def usage(self, caller: str) -> CallerStats:
        return self.stats.get(caller, CallerStats())

    # -- internals -----------------------------------------------------------------

    def _fully_specified(self, ref: str) -> bool:
        record = self.store.record("Caller", ref)
        return fully_specified(record["user_agent"]) and fully_specified(record["client_ip"])

    def _auto_register(self, user_agent: str, client_ip: str, sequence: int, cost: float):
        cap = self.server.settings.max_auto_callers
        # A pattern needs both fields exact; a user agent ending in "*" would turn into
        # a prefix pattern covering other clients, so such a client is not registered.
        if cap <= 0 or not (fully_specified(user_agent) and fully_specified(client_ip)):
            return
        self._evict_auto(keep=cap - 1)
        now = datetime.now(timezone.utc)
        ref = self.store.create("Caller", {
            "name_label": f"user_agent: {user_agent}, client_ip: {client_ip}",
            "name_description": f"Autogenerated caller for user_agent {user_agent}, "
                                f"client_ip {client_ip}",
            "user_agent": user_agent, "client_ip": client_ip, "last_access": now,
            "auto_registered": True, "rate_limit": NULL_REF})
        self.stats[ref] = CallerStats(1, cost, sequence, time.monotonic())
        self.callers_changed()

    def _evict_auto(self, keep: int):
        """Drop auto-registered callers beyond `keep`, the least recently seen first."""
        table = self.store.tables["Caller"]
        auto = [ref for ref, rec in table.items() if rec["auto_registered"]]
        if len(auto) <= keep:
            return
        auto.sort(key=lambda ref: (self.usage(ref).last_call, table[ref]["last_access"]))
        for ref in auto[:len(auto) - max(keep, 0)]:
            self.store.delete("Caller", ref)
            self.stats.pop(ref, None)
        self.callers_changed()
