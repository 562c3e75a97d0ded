"""Messages the server raises for what an administrator must see (a VM crashed or was
changed outside the API, an SR nearly full, repeated failed logins).

Messages are kept to caps, as xapi's message GC keeps `message_limit` of them: over
`max_messages` in all, or `max_messages_per_object` about one object, the oldest go
first. Pruning happens as each message is raised, so no flood (of failed logins, of
`message.create`) can grow the store between two GC runs; one object's flood pushes
out only that object's older messages until the total cap is reached.
"""
from __future__ import annotations

import logging
from collections import deque
from datetime import datetime, timezone

log = logging.getLogger(__name__)


# xapi's priorities: 1 (most urgent) .. 5 (informational).
PRIORITY_CRITICAL, PRIORITY_WARNING, PRIORITY_INFO = 1, 3, 5


class Retention:
    """Which messages go when a cap is passed. Keeps message refs oldest first, in all
    and per object; refs of messages destroyed since are skipped when met."""

    def __init__(self, store, total: int, per_object: int):
        self.store, self.total, self.per_object = store, max(total, 1), max(per_object, 1)
        self._rebuild()
        self._prune_total()
        for key in list(self.by_object):
            self._prune_object(key)

    def added(self, ref: str):
        key = self._key(self.store.record("message", ref))
        self.order.append(ref)
        self.by_object.setdefault(key, deque()).append(ref)
        self._prune_object(key)
        self._prune_total()
        if len(self.order) > 2 * self.total:   # many destroyed by clients meanwhile
            self._rebuild()

    @staticmethod
    def _key(record) -> tuple[str, str]:
        return record["cls"], record["obj_uuid"]

    def _rebuild(self):
        table = self.store.tables["message"]
        self.order = deque(sorted(table, key=lambda ref: table[ref]["timestamp"]))
        self.by_object: dict[tuple[str, str], deque] = {}
        for ref in self.order:
            self.by_object.setdefault(self._key(table[ref]), deque()).append(ref)

    def _prune_object(self, key):
        refs = self.by_object[key]
        if len(refs) <= self.per_object:
            return
        table = self.store.tables["message"]
        refs = self.by_object[key] = deque(ref for ref in refs if ref in table)
        while len(refs) > self.per_object:
            self.store.delete("message", refs.popleft())

    def _prune_total(self):
        table = self.store.tables["message"]
        while len(table) > self.total and self.order:
            ref = self.order.popleft()
            if ref in table:
                self.store.delete("message", ref)


def caps(store, settings) -> Retention:
    """The server's `message_caps`: applied from now on, and at once to the messages
    already stored. Messages raised before the Server makes it are kept uncapped
    until then."""
    return Retention(store, settings.max_messages, settings.max_messages_per_object)


def raise_message(server, name: str, priority: int, cls: str, obj_uuid: str,
                  body: str) -> str:
    log.info("message %s (%s %s): %s", name, cls, obj_uuid, body)
    ref = server.store.create("message", {"name": name, "priority": priority, "cls": cls,
                                          "obj_uuid": obj_uuid, "body": body,
                                          "timestamp": datetime.now(timezone.utc)})
    if server.message_caps is not None:
        server.message_caps.added(ref)
    return ref
