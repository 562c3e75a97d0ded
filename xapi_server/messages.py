"""Messages the server raises for what an administrator must see (a VM crashed or was
changed outside the API, an SR nearly full, repeated failed logins)."""
from __future__ import annotations

from datetime import datetime, timezone

from ._logging import log

# xapi's priorities: 1 (most urgent) .. 5 (informational).
PRIORITY_CRITICAL, PRIORITY_WARNING, PRIORITY_INFO = 1, 3, 5


def raise_message(store, name: str, priority: int, cls: str, obj_uuid: str, body: str) -> str:
    log.info("message %s (%s %s): %s", name, cls, obj_uuid, body)
    return store.create("message", {"name": name, "priority": priority, "cls": cls,
                                    "obj_uuid": obj_uuid, "body": body,
                                    "timestamp": datetime.now(timezone.utc)})
