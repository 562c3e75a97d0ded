"""xapi's six roles as objects, and what each one may call.

Role refs are xapi's: pool-admin has a fixed ref; every other role's uuid is the MD5 of
its name, so clients that hard-code role refs keep working. Roles nest: a role may call
everything a weaker one may.
"""
from __future__ import annotations

import hashlib
import uuid

from .datamodel import METHODS, ROLES, role_allows
from .errors import ApiError

POOL_ADMIN_UUID = "0165f154-ba3e-034e-6b27-5d271af109ba"
DESCRIPTIONS = {
    "pool-admin": "Everything, including users, roles and certificates",
    "pool-operator": "The pool, hosts, storage and networks, but not users and roles",
    "vm-power-admin": "VMs, including where they run and their memory",
    "vm-admin": "Create, change and destroy VMs and their devices",
    "vm-operator": "Start, stop and use existing VMs",
    "read-only": "Read everything, change nothing",
}

# xapi's one permission that is no message: act on tasks other users made (task.cancel,
# destroy and setters are read-only's, for a user's own tasks).
TASK_ANY_PERMISSION, TASK_ANY_ROLE = "task.destroy/any", "pool-operator"

# The HTTP handlers' permissions, xapi's "http/<action>" names, with the weakest role
# holding each (http/routes.py declares which route needs which). xapi gives
# get_audit_log to read-only and up; here it stays pool-admin's, as before routes were
# declared: the log names every user's actions and client addresses.
HTTP_PERMISSIONS = {
    "http/get_audit_log": "pool-admin",
    # VM and disk transfer (xapi datamodel.ml http_actions)
    "http/put_import": "vm-admin",
    "http/put_import_metadata": "vm-admin",
    "http/put_import_raw_vdi": "vm-admin",
    "http/get_export": "vm-admin",
    "http/get_export_metadata": "vm-admin",
    "http/get_export_raw_vdi": "vm-admin",
    # consoles; the /host_console sub-permissions guard a control domain's console
    "http/connect_console": "vm-operator",
    "http/connect_console/host_console": "pool-admin",
    "http/connect_console_ws": "vm-operator",
    "http/connect_console_ws/host_console_ws": "pool-admin",
    "http/get_vncsnapshot": "vm-operator",
    "http/get_vncsnapshot/host_console": "pool-admin",
    # metrics
    "http/get_rrd_updates": "read-only",
    "http/get_host_rrd": "read-only",
    "http/get_host_rrds": "read-only",
    "http/get_vm_rrd": "read-only",
    "http/get_vm_rrds": "read-only",
    "http/get_sr_rrd": "read-only",
    # beyond xapi: GET /metrics, the Prometheus/OpenMetrics scrape (http/prometheus.py)
    "http/get_metrics": "read-only",
    "http/get_blob": "read-only",          # xapi: blobs, read (public ones: anyone)
    "http/put_blob": "vm-power-admin",     # and written
}


def permission_denied(permission: str, needed: str) -> ApiError:
    """xapi's RBAC_PERMISSION_DENIED for a permission the weakest role `needed` has."""
    allowed = [r for r in ROLES if role_allows(r, needed)]
    return ApiError("RBAC_PERMISSION_DENIED", permission,
                    "No permission in user session. (Roles with this permission: "
                    + ", ".join(allowed) + ")")


def role_uuid(name: str) -> str:
    if name == "pool-admin":
        return POOL_ADMIN_UUID
    return str(uuid.UUID(bytes=hashlib.md5(name.encode()).digest()))


def role_ref(name: str) -> str:
    return f"OpaqueRef:{role_uuid(name)}"


def permissions(role: str) -> list[str]:
    """Every permission the role grants: method names, and "<method>/key:<key>" for
    map keys with a role of their own (xapi's map_keys_roles), all lower case."""
    names = {name.lower() for name, m in METHODS.items() if m.session
             and role_allows(role, m.role)}
    for name, m in METHODS.items():
        if m.key_roles and m.kind in ("add_to_map", "remove_from_map"):
            names |= {f"{name}/key:{key}".lower() for key, needed in m.key_roles.items()
                      if role_allows(role, needed)}
    if role_allows(role, TASK_ANY_ROLE):
        names.add(TASK_ANY_PERMISSION)
    names |= {name for name, needed in HTTP_PERMISSIONS.items() if role_allows(role, needed)}
    return sorted(names)


def _key_rule(key_roles: dict, key: str) -> tuple[str, str] | None:
    """(pattern, role) when the map key has a role of its own."""
    for pattern, role in key_roles.items():
        if key.startswith(pattern[:-1]) if pattern.endswith("*") else key == pattern:
            return pattern, role
    return None


def required(m, args: list, store) -> list[tuple[str, str | None]]:
    """The (permission, weakest role) pairs a call must satisfy. A map key with a role
    of its own replaces the message's role for add_to_/remove_from_ (it may be weaker,
    "folder" for vm-operator, or stronger, VM "pci" for pool-admin); a whole-map set_
    needs the message's role and the role of every such key it changes, so a free-form
    map never unlocks what its keys protect."""
    base = (m.wire_name.lower(), m.role)
    if not m.key_roles:
        return [base]
    if m.kind in ("add_to_map", "remove_from_map"):
        rule = _key_rule(m.key_roles, args[1])
        return [(f"{base[0]}/key:{rule[0].lower()}", rule[1])] if rule else [base]
    if m.kind == "set_field" and store.exists(m.cls, args[0]):
        old, new = store.get(m.cls, args[0], m.field), args[1]
        changed = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
        rules = sorted({rule for k in changed if (rule := _key_rule(m.key_roles, k))})
        prefix = f"{m.cls}.add_to_{m.field}".lower()
        return [base] + [(f"{prefix}/key:{p.lower()}", role) for p, role in rules]
    return [base]


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
