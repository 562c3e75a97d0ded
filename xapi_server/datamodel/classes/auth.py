"""Classes: session, user, role, subject.

Field facts (names, types, qualifiers, defaults) follow xapi's datamodel."""
from .._dsl import RC, RO, RW, cls, field, identity, msg, names, other_config

SESSION = cls(
    'session', 'A logged-in client.',
    write_role='pool-admin', get_all=False, persist=False, events=False,
    fields=[
        identity(),
        field('this_host', 'host ref', RO,
              doc='The host the session was made on.'),
        field('this_user', 'user ref', RO,
              doc='A legacy user record; never set here (see subject).'),
        field('last_active', 'datetime', RO,
              doc='When the session was last used; idle sessions expire.'),
        field('pool', 'bool', RO,
              doc='True for a session one host of a pool made on another.'),
        other_config(default={}),
        field('is_local_superuser', 'bool', RO, default=False,
              doc='True when root logged in.'),
        field('subject', 'subject ref', RO, default='OpaqueRef:NULL',
              doc='The subject whose roles the session holds; NULL for root.'),
        field('validation_time', 'datetime', RO, default='19700101T00:00:00Z'),
        field('auth_user_sid', 'string', RO, default=""),
        field('auth_user_name', 'string', RO, default="",
              doc='The user name given at login.'),
        field('rbac_permissions', 'string set', RC, default=[],
              doc="The permissions the session's roles grant."),
        field('tasks', 'task ref set', RO,
              doc='The tasks this session made.'),
        field('parent', 'session ref', RC, default='OpaqueRef:NULL',
              doc='The session that made this one; NULL for a login.'),
        field('originator', 'string', RO, default="",
              doc='Who the client said it was at login (originator).'),
        field('client_certificate', 'bool', RO, default=False),
    ],
    messages=[
        msg("login_with_password", "string uname, string pwd, string version='1.1', "
            "string originator=''", "session ref", "Log in; returns a new session.",
            errors=["SESSION_AUTHENTICATION_FAILED", "HOST_IS_SLAVE"], role=None, session=False,
            asynchronous=False),
        msg("slave_local_login_with_password", "string uname, string pwd", "session ref",
            "Log in to this host only (emergency mode).", role=None, session=False,
            asynchronous=False, on_member=True),
        msg("logout", "", doc="End the caller's session.", asynchronous=False),
        msg("local_logout", "", doc="End a session made by slave_local_login.",
            asynchronous=False, on_member=True),
        msg("change_password", "string old_pwd, string new_pwd",
            doc="Change the password of the logged-in user.", asynchronous=False),
        msg("get_all_subject_identifiers", "", "string set",
            "Subject identifiers of all logged-in sessions.", role="pool-admin",
            asynchronous=False, mutates=False),
        msg("logout_subject_identifier", "string subject_identifier",
            doc="End every session of a subject.", role="pool-admin", asynchronous=False),
    ],
)

USER = cls(
    'user', 'A user record (legacy).',
    ctor=True, write_role='pool-admin', get_all=False,
    fields=[
        identity(),
        field('short_name', 'string', RC),
        field('fullname', 'string', RW),
        other_config(default={}),
    ],
)

ROLE = cls(
    'role', 'An RBAC role.',
    write_role='pool-admin',
    fields=[
        identity(),
        *names(RC),
        field('subroles', 'role ref set', RC, default=[]),
        field('is_internal', 'bool', RO, default=False),
    ],
    messages=[
        msg("get_permissions", "role ref self", "role ref set",
            "The roles this role includes (the weaker ones).", asynchronous=False,
            mutates=False),
        msg("get_permissions_name_label", "role ref self", "string set",
            "Names of every permission (lower-cased method) this role grants.",
            asynchronous=False, mutates=False),
        msg("get_by_permission", "role ref permission", "role ref set",
            "Roles that include the given role.", asynchronous=False, mutates=False),
        msg("get_by_permission_name_label", "string label", "role ref set",
            "Roles granting a permission (e.g. 'vm.start').", asynchronous=False,
            mutates=False),
    ],
)

SUBJECT = cls(
    'subject', 'A user or group granted roles.',
    ctor=True, write_role='pool-admin',
    fields=[
        identity(),
        field('subject_identifier', 'string', RC, default=""),
        other_config(RC, default={}),
        field('roles', 'role ref set', RO, default=['OpaqueRef:0165f154-ba3e-034e-6b27-5d271af109ba']),
    ],
    messages=[
        msg("add_to_roles", "subject ref self, role ref role", doc="Grant a role.",
            role="pool-admin", asynchronous=False),
        msg("remove_from_roles", "subject ref self, role ref role", doc="Take a role away.",
            role="pool-admin", asynchronous=False),
        msg("get_permissions_name_label", "subject ref self", "string set",
            "Names of every permission the subject's roles grant.", asynchronous=False,
            mutates=False),
        # xapi-py extension: local accounts are subjects named "local:<user>".
        msg("set_password", "subject ref self, string new_pwd",
            doc="Set the password of a local subject (subject_identifier 'local:<name>').",
            role="pool-admin", asynchronous=False),
    ],
)
