"""Writers for the pool HA tests (tests/test_pool_ha*.py): clients creating networks
through the official SDK while a fault hits the coordinator. Every acknowledged write
is recorded with the host that acknowledged it, when the call was sent and when its
answer came, so a test can check that nothing acknowledged is lost and that no host
acknowledged a write sent after another host had started acknowledging.

Followers go where HOST_IS_SLAVE sends them (another host after an error or a
timeout, as a client trying the pool's addresses would); pinned writers keep calling
the host they started on whatever it answers, as a client that never re-reads the
pool's coordinator would."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import XenAPI

CALL_TIMEOUT = 8.0   # a call to a cut-off host fails instead of hanging


@dataclass(frozen=True)
class Ack:
    host: str      # the name of the host that acknowledged the write
    name: str      # the network's name_label
    sent: float    # time.monotonic() before the call
    answered: float


class Writers:
    def __init__(self, hosts: dict, first, followers: int, pinned: int = 0):
        self.hosts, self.acks, self.stop = hosts, [], threading.Event()
        self._lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(first, i, i < followers),
                                         daemon=True)
                        for i in range(followers + pinned)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(CALL_TIMEOUT + 30)

    def acked_by(self, host_name: str) -> list[Ack]:
        with self._lock:
            return [a for a in self.acks if a.host == host_name]

    def _next_host(self, host, address: str | None = None):
        names = sorted(self.hosts)
        if address is not None:
            for h in self.hosts.values():
                if h.address == address:
                    return h
        return self.hosts[names[(names.index(host.name) + 1) % len(names)]]

    def _run(self, host, n: int, follow: bool):
        session, i = None, 0
        while not self.stop.is_set():
            try:
                if session is None:
                    session = host.server.session(timeout=CALL_TIMEOUT)
                name, i = f"ha-w{n}-{i}", i + 1
                sent = time.monotonic()
                session.xenapi.network.create({"name_label": name, "name_description": "",
                                               "other_config": {}, "MTU": "1500",
                                               "tags": []})
                with self._lock:
                    self.acks.append(Ack(host.name, name, sent, time.monotonic()))
            except XenAPI.Failure as exc:   # not acknowledged
                session = None
                if follow:
                    redirect = exc.details[1] if exc.details[0] == "HOST_IS_SLAVE" else None
                    host = self._next_host(host, redirect)
                self.stop.wait(0.2)
            except Exception:   # a timeout, a reset, a refused connection
                session = None
                if follow:
                    host = self._next_host(host)
                self.stop.wait(0.3)


def written_while_another_wrote(acks: list[Ack], old: str) -> list[Ack]:
    """The writes `old` acknowledged although they were sent after another host had
    acknowledged one: two hosts accepting writes at once."""
    others = [a.answered for a in acks if a.host != old]
    if not others:
        return []
    first_elsewhere = min(others)
    return [a for a in acks if a.host == old and a.sent > first_elsewhere]


__all__ = ["Ack", "Writers", "written_while_another_wrote", "CALL_TIMEOUT"]
