"""xapi's six roles as objects, and what each one may call.

Role refs are xapi's: pool-admin has a fixed ref; every other role's uuid is the MD5 of
its name, so clients that hard-code role refs keep working. Roles nest: a role may call
everything a weaker one may.
"""
from __future__ import annotations

import hashlib
import uuid

from .datamodel import METHODS, ROLES, role_allows

POOL_ADMIN_UUID = "0165f154-ba3e-034e-6b27-5d271af109ba"
DESCRIPTIONS = {
    "pool-admin": "Everything, including users, roles and certificates",
    "pool-operator": "The pool, hosts, storage and networks, but not users and roles",
    "vm-power-admin": "VMs, including where they run and their memory",
    "vm-admin": "Create, change and destroy VMs and their devices",
    "vm-operator": "Start, stop and use existing VMs",
    "read-only": "Read everything, change nothing",
}


def role_uuid(name: str) -> str:
    if name == "pool-admin":
        return POOL_ADMIN_UUID
    return str(uuid.UUID(bytes=hashlib.md5(name.encode()).digest()))


def role_ref(name: str) -> str:
    return f"OpaqueRef:{role_uuid(name)}"


def permissions(role: str) -> list[str]:
    return sorted(name.lower() for name, m in METHODS.items() if m.session
                  and role_allows(role, m.role))


def strongest(role_names) -> str | None:
    held = set(role_names)
    ranked = [r for r in ROLES if r in held]
    return ranked[0] if ranked else None


def ensure_roles(store):
    """Create the six roles on first start (and repair them if edited)."""
    for i, name in enumerate(ROLES):
        ref = role_ref(name)
        fields = {"uuid": role_uuid(name), "name_label": name,
                  "name_description": DESCRIPTIONS[name],
                  "subroles": [role_ref(r) for r in ROLES[i + 1:i + 2]]}
        if not store.exists("role", ref):
            store.create("role", fields, ref=ref)
        elif any(store.get("role", ref, k) != v for k, v in fields.items()):
            store.update("role", ref, **fields)
