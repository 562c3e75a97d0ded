"""Classes: task, message.

Field facts (names, types, qualifiers, defaults) follow xapi's datamodel."""
from .._dsl import RC, RO, RW, cls, field, msg

TASK = cls(
    'task', 'A long-running operation.',
    write_role='pool-admin', persist=False,
    fields=[
        field('uuid', 'string', RO),
        field('name_label', 'string', RO, default=""),
        field('name_description', 'string', RO, default=""),
        field('allowed_operations', 'enum task_allowed_operations set', RO, default=[]),
        field('current_operations', '(string -> enum task_allowed_operations) map', RO, default={}),
        field('created', 'datetime', RO),
        field('finished', 'datetime', RO),
        field('status', 'enum task_status_type', RO, setter='read-only'),
        field('resident_on', 'host ref', RO),
        field('progress', 'float', RO, setter='read-only'),
        field('type', 'string', RO),
        field('result', 'string', RO, setter='read-only'),
        field('error_info', 'string set', RO, setter='read-only'),
        # xapi keeps the keys XenCenter uses to claim a task from read-only sessions.
        field('other_config', '(string -> string) map', RO, setter='read-only', default={},
              key_roles={"applies_to": "vm-operator", "XenCenterUUID": "vm-operator",
                         "XenCenterMeddlingActionTitle": "vm-operator"}),
        field('subtask_of', 'task ref', RO, default='OpaqueRef:NULL'),
        field('subtasks', 'task ref set', RO),
        field('backtrace', 'string', RO, default="()"),
    ],
    messages=[
        msg("create", "string label, string description", "task ref",
            "Make a task for the client's own use.", asynchronous=False),
        msg("destroy", "task ref self", doc="Forget a task.", asynchronous=False),
        msg("cancel", "task ref task", doc="Ask a running task to stop.",
            errors=["OPERATION_NOT_ALLOWED"], asynchronous=False),
    ],
)

MESSAGE = cls(
    'message', 'An alert for the administrator.',
    write_role='pool-operator',
    fields=[
        field('uuid', 'string', RO),
        field('name', 'string', RO),
        field('priority', 'int', RO),
        field('cls', 'enum cls', RO),
        field('obj_uuid', 'string', RO),
        field('timestamp', 'datetime', RO),
        field('body', 'string', RO),
    ],
    messages=[
        msg("create", "string name, int priority, enum cls cls, string obj_uuid, string body",
            "message ref", "Raise a message about an object.", role="pool-operator",
            asynchronous=False),
        msg("destroy", "message ref self", doc="Dismiss a message.", role="pool-operator",
            asynchronous=False),
        msg("destroy_many", "message ref set messages", doc="Dismiss several messages.",
            role="pool-operator", asynchronous=False),
        msg("get", "enum cls cls, string obj_uuid, datetime since",
            "(message ref -> message record) map",
            "Messages about one object raised after `since`.", asynchronous=False,
            mutates=False),
        msg("get_since", "datetime since", "(message ref -> message record) map",
            "Messages raised after `since`.", asynchronous=False, mutates=False),
    ],
)
