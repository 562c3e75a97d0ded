"""The declaration language of the datamodel: classes, fields and messages.

A class module writes, for example::

    VM = cls("VM", "A virtual machine.", ctor=True, write_role="vm-admin",
             fields=[identity(), *names(), other_config(default={}),
                     field("power_state", "enum vm_power_state", RC, doc="..."), ...],
             messages=[msg("start", "VM ref vm, bool start_paused, bool force",
                           doc="Starts a halted VM.", params_doc={"force": "..."},
                           role="vm-operator", errors=["VM_BAD_POWER_STATE"])])

`doc=` (fields, messages), `params_doc=` and `result_doc=` (messages) reach schemas/
as descriptions and `xe help <cmd> param-name=<field>`; every class-specific message
has a doc (tests/test_datamodel_docs.py). The helpers (identity, names, operations,
other_config, tags, snapshot_fields, device_runtime) declare the fields most classes
share, with their docs; those that declare several return a list to splice with `*`,
so that each class keeps its field order.

Types are written in xapi's notation and parsed once the enums are known
(see `datamodel/__init__.py`). Everything else (dispatch, store layout, schemas,
CLI records) reads these objects; nothing else declares classes or fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field as dc_field
from functools import cached_property

from .types import parse_datetime
from .errors import ERRORS

# Qualifiers as xapi names them: read-write; read-only, set by the constructor;
# read-only, maintained by the server.
RW, RC, RO = "RW", "RO/constructor", "RO/runtime"

# Roles, most powerful first. A message names the weakest role allowed to call it;
# every stronger role may call it too (xapi's roles are nested the same way).
ROLES = ("pool-admin", "pool-operator", "vm-power-admin", "vm-admin", "vm-operator", "read-only")
ANY_ROLE = "read-only"
# xapi's _R_LOCAL_ROOT_ONLY: no role grants the message, only the local superuser (root)
# may call it, as emergency calls that must work when everything else is broken.
LOCAL_ROOT_ONLY = "local-root-only"

# The classes whose objects belong to one host of a pool, so that a message about one
# can be forwarded there (msg(..., forward=)); how each one's host is found is the
# pool's business (api/pool_scope.py), the datamodel only names the parameter.
FORWARD_OWNERS = ("VM", "VBD", "VIF", "VDI", "SR", "PBD", "host", "PIF")

# The keys XenCenter keeps its folders and custom fields in: xapi lets vm-operator set
# them in other_config maps that otherwise need a stronger role (map_keys_roles).
FOLDER_KEYS = {"folder": "vm-operator", "XenCenter.CustomFields.*": "vm-operator"}

_MISSING = object()
NO_DEFAULT = _MISSING        # for helpers: declare the field without a default
STRING_MAP = "(string -> string) map"
NULL_REF = "OpaqueRef:NULL"
EPOCH = "19700101T00:00:00Z"      # a datetime field's "never"


def role_allows(granted: str, required: str | None) -> bool:
    """Does a session holding `granted` satisfy a message that requires `required`?"""
    if required is None:
        return True
    if required == LOCAL_ROOT_ONLY:
        return False
    return ROLES.index(granted) <= ROLES.index(required)


@dataclass
class Field:
    name: str
    type_text: str
    qualifier: str
    default: object = _MISSING
    role: str | None = None      # role of the setter family, when not the class's
    setter: str | None = None    # a non-RW field that still has setters (role given)
    type: object = None          # parsed Type, filled in by the datamodel
    derived_from: tuple | None = None  # (class, field): a "many" side kept by the store
    # Map keys with a role of their own (xapi's map_keys_roles): {"folder": "vm-operator",
    # "XenCenter.CustomFields.*": "vm-operator"}; a trailing "*" makes a prefix.
    key_roles: dict | None = None
    # A read-only map that is still set key by key through a message of its own (xapi's
    # set_in_map): `xe pif-param-set properties:gro=off` calls PIF.set_property.
    key_setter: str | None = None
    doc: str = ""                # what the field means, for schemas/ and xe help

    @property
    def writable(self) -> bool:
        return (self.qualifier == RW or self.setter is not None) and self.derived_from is None

    @property
    def in_constructor(self) -> bool:
        return self.qualifier in (RW, RC)

    @property
    def has_default(self) -> bool:
        return self.default is not _MISSING

    def default_value(self):
        """A fresh copy of the default (or the type's zero value)."""
        value = self.default if self.has_default else self.type.zero()
        if isinstance(value, (list, dict)):
            return type(value)(value)
        if isinstance(value, str) and self.type_text == "datetime":
            return parse_datetime(value)
        return value


@dataclass
class Param:
    name: str
    type_text: str
    default: object = _MISSING
    type: object = None
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is _MISSING


@dataclass
class Message:
    name: str
    params: list                  # [Param], without the session
    result_text: str = "void"
    doc: str = ""
    errors: tuple = ()
    role: str | None = ANY_ROLE   # weakest role allowed; None: no session needed
    session: bool = True          # first wire parameter is a session ref
    asynchronous: bool = True     # has an Async.<Class>.<name> form
    mutates: bool = True          # changes state (audited, not allowed to read-only)
    kind: str = "custom"          # custom, or the generated message's kind
    field: str | None = None      # for generated per-field messages
    cls: str = ""                 # filled in by cls()
    result: object = None         # parsed Type
    cost: float = 1.0             # rate-limiter tokens (datamodel/costs.py)
    key_roles: dict | None = None # the map field's key roles (generated map messages)
    result_doc: str = ""          # what the result is, when the doc does not say
    # In a pool, the host that runs the message (xapi's message forwarding): the host
    # owning the object this parameter names ("vm"), or a ref field of a record
    # parameter ("args.SR"). None: the coordinator runs it. See FORWARD_OWNERS.
    forward: str | None = None
    # A pool member answers it to outside clients too, where it answers every other
    # message HOST_IS_SLAVE: the local login and the calls that change its coordinator
    # when the old one is gone (xapi's emergency calls).
    on_member: bool = False

    @cached_property   # asked at every call (dispatch)
    def wire_name(self) -> str:
        return f"{self.cls}.{self.name}"

    @cached_property
    def required_count(self) -> int:
        return sum(1 for p in self.params if p.required)


@dataclass
class ClassDef:
    name: str
    doc: str
    fields: list
    messages: list
    ctor: bool = False            # generated create/destroy exist
    write_role: str = "pool-admin"
    get_all: bool = True          # get_all / get_all_records(_where) exist
    persist: bool = True          # rows survive a restart (sessions and tasks do not)
    stored: bool = True           # has objects in the store (event does not)
    events: bool = True           # changes reach event.from (never for session: its refs
                                  # are the bearer secrets of other users)
    field_map: dict = dc_field(default_factory=dict)
    message_map: dict = dc_field(default_factory=dict)
    # `forward` of the generated messages (create, destroy ...), by message name.
    forward: dict = dc_field(default_factory=dict)

    @property
    def has_name_label(self) -> bool:
        return "name_label" in self.field_map


def field(name, type_text, qualifier, default=_MISSING, role=None, setter=None,
          key_roles=None, key_setter=None, doc="") -> Field:
    return Field(name, type_text, qualifier, default, role, setter, key_roles=key_roles,
                 key_setter=key_setter, doc=doc)


# -- The fields most classes share, declared once. A helper that declares several returns
# a list to splice with `*`, so that a class keeps its own field order (records and
# schemas list fields in declaration order).

def identity() -> Field:
    return field("uuid", "string", RO,
                 doc="Unique identifier of the object; never changes, survives restarts.")


def names(qualifier=RW, default="", setter=None) -> list:
    """name_label and name_description (default NO_DEFAULT: the type's zero value, and
    no default in the schemas)."""
    return [field("name_label", "string", qualifier, default, setter=setter,
                  doc="A human-readable name; need not be unique."),
            field("name_description", "string", qualifier, default, setter=setter,
                  doc="A human-readable description.")]


def operations(enum: str) -> list:
    """allowed_operations and current_operations over the enum `enum`."""
    return [field("allowed_operations", f"enum {enum} set", RO, default=[],
                  doc="Operations that could be started on the object now."),
            field("current_operations", f"(string -> enum {enum}) map", RO, default={},
                  doc="Operations in progress, keyed by the task running each.")]


def other_config(qualifier=RW, default=_MISSING, setter=None, key_roles=None,
                 doc="Free-form key/value pairs for clients and tools.") -> Field:
    return field("other_config", STRING_MAP, qualifier,
                 dict(default) if isinstance(default, dict) else default, setter=setter,
                 key_roles=key_roles, doc=doc)


def tags() -> Field:
    return field("tags", "string set", RW, role="vm-operator", default=[],
                 doc="User-defined labels for grouping and searching objects.")


def snapshot_fields(cls: str, what: str) -> list:
    """is_a_snapshot, snapshot_of, snapshots, snapshot_time of a VM or a VDI (`what`: how
    the docs name one, "VM" or "disk")."""
    return [field("is_a_snapshot", "bool", RO, default=False,
                  doc=f"True for a snapshot: a frozen copy of another {what}."),
            field("snapshot_of", f"{cls} ref", RO, default=NULL_REF,
                  doc=f"The {what} this snapshot was taken of."),
            field("snapshots", f"{cls} ref set", RO,
                  doc=f"The snapshots taken of this {what}."),
            field("snapshot_time", "datetime", RO, default=EPOCH,
                  doc="When the snapshot was taken (UTC).")]


def device_runtime(attached_doc: str) -> list:
    """The runtime fields VBD and VIF share: attachment, status, QoS."""
    return [field("currently_attached", "bool", RC, default=False, doc=attached_doc),
            field("status_code", "int", RO),
            field("status_detail", "string", RO),
            field("runtime_properties", STRING_MAP, RO),
            field("qos_algorithm_type", "string", RW),
            field("qos_algorithm_params", STRING_MAP, RW),
            field("qos_supported_algorithms", "string set", RO)]



def _split_params(text: str) -> list:
    """'VM ref vm, bool force=false' -> [Param('vm', 'VM ref'), Param('force', 'bool', False)]."""
    params = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        decl, eq, default_text = part.partition("=")
        type_text, _, name = decl.strip().rpartition(" ")
        default = _literal(default_text.strip()) if eq else _MISSING
        params.append(Param(name, type_text.strip(), default))
    return params


def _literal(text: str):
    import ast
    aliases = {"true": True, "false": False, "null": "OpaqueRef:NULL"}
    if text in aliases:
        return aliases[text]
    return ast.literal_eval(text)


def msg(name, params="", result="void", doc="", errors=(), role=ANY_ROLE, session=True,
        asynchronous=True, mutates=True, params_doc=None, result_doc="",
        forward=None, on_member=False) -> Message:
    """params_doc: {param name: what it means} for the parameters that need saying.
    forward: see Message.forward (checked once the types are parsed).
    on_member: see Message.on_member."""
    _check_errors(name, errors)
    parsed = _split_params(params)
    _document_params(name, parsed, params_doc or {})
    m = Message(name, parsed, result, doc, tuple(errors), role, session, asynchronous, mutates)
    m.result_doc = result_doc
    m.forward = forward
    m.on_member = on_member
    return m


def _document_params(message: str, params: list, docs: dict) -> None:
    by_name = {p.name: p for p in params}
    unknown = [n for n in docs if n not in by_name]
    if unknown:
        raise ValueError(f"msg({message!r}, params_doc=...): no parameter {', '.join(unknown)}")
    for name, text in docs.items():
        by_name[name].doc = text


def _check_errors(message: str, codes) -> None:
    """A message may name only registered error codes: a typo would otherwise reach the
    schemas and the docs as a code the server never answers."""
    unknown = [c for c in codes if c not in ERRORS]
    if unknown:
        raise ValueError(f"msg({message!r}, errors=...): {', '.join(unknown)} not in the error "
                         "registry; declare it in xapi_server/datamodel/errors.py")


def cls(name, doc, fields, messages=(), ctor=False, write_role="pool-admin", get_all=True,
        persist=True, stored=True, events=True) -> ClassDef:
    return ClassDef(name, doc, list(fields), list(messages), ctor, write_role, get_all, persist,
                    stored, events)
