"""role and subject: who may do what. Local accounts are subjects whose identifier is
"local:<name>"; their passwords live beside root's, hashed (see auth.py). System accounts
and groups, when PAM logins are on, are "pam:<user>" and "pam-group:<group>"
(see system_accounts.py). `root`, the local superuser, is never a subject (auth.py)."""
from ..auth import local_account
from ..datamodel import ROLES
from ..dispatch.generic import constructor_fields
from ..dispatch.registry import implements
from ..errors import ApiError
from ..rbac import permissions, role_ref
from .. import system_accounts


def _role_name(ctx, ref) -> str:
    return ctx.store.get("role", ref, "name_label")


@implements("role.get_permissions")
def get_permissions(ctx, self):
    name = _role_name(ctx, self)
    return [role_ref(r) for r in ROLES[ROLES.index(name) + 1:]]


@implements("role.get_permissions_name_label")
def get_permissions_name_label(ctx, self):
    return permissions(_role_name(ctx, self))


@implements("role.get_by_permission")
def get_by_permission(ctx, permission):
    name = _role_name(ctx, permission)
    return [role_ref(r) for r in ROLES[:ROLES.index(name)]]


@implements("role.get_by_permission_name_label")
def get_by_permission_name_label(ctx, label):
    return [role_ref(r) for r in ROLES if label.lower() in permissions(r)]


@implements("subject.create")
async def create_subject(ctx, args):
    fields = constructor_fields(ctx, "subject", args)
    ident = fields.get("subject_identifier", "")
    if system_accounts.is_system_identifier(ident):
        # As xapi's external subjects: other_config describes the account or group, from
        # the system's own records (a caller cannot make a user look like a group).
        described = await system_accounts.describe(ident)
        if described is None:
            raise ApiError("SUBJECT_CANNOT_BE_RESOLVED")
        fields["other_config"] = {**fields.get("other_config", {}), **described}
    local_account(ident)  # refuses "local:root"
    if ident and ctx.store.find("subject", subject_identifier=ident):
        raise ApiError("SUBJECT_ALREADY_EXISTS")
    return ctx.store.create("subject", fields)


@implements("subject.destroy")
def destroy_subject(ctx, self):
    ident = ctx.store.get("subject", self, "subject_identifier")
    for session in ctx.store.find("session", subject=self):
        ctx.store.delete("session", session)
    ctx.server.auth.forget_local_account(ident)
    ctx.store.delete("subject", self)


@implements("subject.add_to_roles")
def add_to_roles(ctx, self, role):
    roles = ctx.store.get("subject", self, "roles")
    if not ctx.store.exists("role", role):
        raise ApiError("ROLE_NOT_FOUND")
    if role in roles:
        raise ApiError("ROLE_ALREADY_EXISTS")
    ctx.store.update("subject", self, roles=roles + [role])


@implements("subject.remove_from_roles")
def remove_from_roles(ctx, self, role):
    roles = ctx.store.get("subject", self, "roles")
    if role not in roles:
        raise ApiError("ROLE_NOT_FOUND")
    ctx.store.update("subject", self, roles=[r for r in roles if r != role])


@implements("subject.get_permissions_name_label")
def subject_permissions(ctx, self):
    names = set()
    for role in ctx.store.get("subject", self, "roles"):
        if ctx.store.exists("role", role):
            names.update(permissions(_role_name(ctx, role)))
    return sorted(names)


@implements("subject.set_password")
def set_password(ctx, self, new_pwd):
    ident = ctx.store.get("subject", self, "subject_identifier")
    name = local_account(ident)
    if name is None:
        raise ApiError("INVALID_VALUE", "subject_identifier", ident)
    if not new_pwd:
        raise ApiError("INVALID_VALUE", "new_pwd", "the password must not be empty")
    ctx.server.auth.set_password(name, new_pwd)
