"""Classes: task, message.

Field facts (names, types, qualifiers, defaults) follow xapi's datamodel."""
from .._dsl import RO, cls, field, identity, msg, names, operations, other_config

TASK = cls(
    'task', 'A long-running operation.',
    write_role='pool-admin', persist=False,
    fields=[
        identity(),
        *names(RO),
        *operations('task_allowed_operations'),
        field('created', 'datetime', RO,
              doc='When the task started (UTC).'),
        field('finished', 'datetime', RO,
              doc='When the task ended (UTC).'),
        field('status', 'enum task_status_type', RO, setter='read-only',
              doc='pending, success, failure, cancelling or cancelled.'),
        field('resident_on', 'host ref', RO,
              doc='The host running the task.'),
        field('progress', 'float', RO, setter='read-only',
              doc='From 0.0 (started) to 1.0 (done).'),
        field('type', 'string', RO),
        field('result', 'string', RO, setter='read-only',
              doc='On success, the result as an XML-RPC value.'),
        field('error_info', 'string set', RO, setter='read-only',
              doc='On failure, the error code then its parameters.'),
        # xapi keeps the keys XenCenter uses to claim a task from read-only sessions.
        other_config(RO, default={}, setter='read-only',
                     key_roles={"applies_to": "vm-operator", "XenCenterUUID": "vm-operator",
                                "XenCenterMeddlingActionTitle": "vm-operator"}),
        field('subtask_of', 'task ref', RO, default='OpaqueRef:NULL',
              doc='The task this one is part of; NULL for none.'),
        field('subtasks', 'task ref set', RO,
              doc='The tasks that are part of this one.'),
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
        identity(),
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
