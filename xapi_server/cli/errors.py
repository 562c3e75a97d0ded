"""CLI failures and how XenAPI errors are worded for people.

Every failure ends with exit status 1. Usage problems add "For usage run: 'xe help'".
An ApiError whose code xapi's datamodel declares (the error registry,
datamodel/errors.py, says which) prints its description, then one `name: value` line per parameter (objects as `uuid (name)`), as
xe does for every code in xapi's datamodel; a code the registry lacks goes out as a
protocol Error, which the client prints as "Error code: ..." / "Error parameters: ...".
The description is the registry's, unless ERROR_TEXT words it for xe (own words).
"""
from __future__ import annotations

from ..datamodel.errors import ERRORS, XAPI

USAGE_HINT = "For usage run: 'xe help'"


class CliFailure(Exception):
    """`Error: <text>` on stderr, exit 1."""


class CliExit(Exception):
    """End with this status; whatever had to be said is already printed."""

    def __init__(self, code: int = 1):
        super().__init__(code)
        self.code = code


class UsageFailure(Exception):
    """A usage problem: the text, then the usage hint."""


class SyntaxFailure(UsageFailure):
    """xapi drops the detail of a parse error: only `Syntax error: ` is printed."""


class MissingParam(UsageFailure):
    def __init__(self, name: str):
        super().__init__(f"Required parameter not found: {name}")


class UnknownCommand(UsageFailure):
    def __init__(self, name: str):
        super().__init__(f"Unknown command: {name}")


class AuthFailure(UsageFailure):
    pass


# code -> what xe prints for it (own words). The parameter names come from the error
# registry (datamodel/errors.py): a code is registered before it gets a text here.
ERROR_TEXT: dict[str, str] = {
    "UUID_INVALID": "The uuid you supplied was invalid.",
    "HANDLE_INVALID": ("You gave an invalid object reference. The object may have recently "
                       "been deleted."),
    "INTERNAL_ERROR": ("The server failed to handle your request, due to an internal error. "
                       "The given message may give details useful for debugging the problem."),
    "PERMISSION_DENIED": "Caller not allowed to perform this operation.",
    "RBAC_PERMISSION_DENIED": ("You do not have the required permissions to perform this "
                               "operation."),
    "OPERATION_NOT_ALLOWED": "You attempted an operation that was not allowed.",
    "INVALID_VALUE": "The value given is invalid.",
    "FIELD_TYPE_ERROR": "The type of a field is wrong or a required field is missing.",
    "MAP_DUPLICATE_KEY": ("You tried to add a key-value pair to a map, but that key is "
                          "already there."),
    "VM_BAD_POWER_STATE": "The VM is not in a power state that allows this operation.",
    "SR_HAS_PBD": ("The SR is still connected to a host via a PBD. It cannot be destroyed "
                   "or forgotten."),
    "VDI_IN_USE": ("This operation cannot be performed because this VDI is in use by some "
                   "other operation."),
    "OTHER_OPERATION_IN_PROGRESS": "Another operation involving the object is currently in "
                                   "progress.",
    "HOST_IS_SLAVE": ("You cannot make regular API calls directly on a pool member. Please "
                      "pass API calls via the coordinator host."),
    "NOT_IMPLEMENTED": "The function is not implemented.",
    "ENUM_VALUE_INVALID": "The value is not one of the values the field allows.",
    "SERVER_CERTIFICATE_KEY_INVALID": "The private key is not an unencrypted PEM key (PKCS#8).",
    "SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED": "The private key's algorithm is not "
                                                      "supported.",
    "SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED": "The RSA key must have 2048 to 4096 "
                                                       "bits.",
    "SERVER_CERTIFICATE_KEY_RSA_MULTI_NOT_SUPPORTED": "The RSA key has more than two primes.",
    "SERVER_CERTIFICATE_INVALID": "The certificate is not one PEM-encoded X.509 certificate.",
    "SERVER_CERTIFICATE_KEY_MISMATCH": "The private key does not belong to the certificate.",
    "SERVER_CERTIFICATE_NOT_VALID_YET": "The certificate is not valid yet.",
    "SERVER_CERTIFICATE_EXPIRED": "The certificate has expired.",
    "SERVER_CERTIFICATE_SIGNATURE_NOT_SUPPORTED": ("The certificate is not signed with "
                                                   "SHA-256, SHA-384 or SHA-512."),
    "SERVER_CERTIFICATE_CHAIN_INVALID": ("The certificate chain is not a list of PEM-encoded "
                                         "X.509 certificates."),
}

# Where xe labels a parameter otherwise than xapi declares it: our key check sends the
# algorithm's name (xapi's declaration says algorithm_oid), and xe has always said so.
_XE_PARAM_NAMES: dict[str, tuple] = {
    "SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED": ("algorithm",),
}

_unregistered = sorted(set(ERROR_TEXT) - set(ERRORS))
if _unregistered:
    raise ValueError(f"xe texts for codes the error registry lacks: {_unregistered}")


def param_names(code: str) -> tuple:
    """The labels xe prints before each parameter of `code`."""
    return _XE_PARAM_NAMES.get(code) or ERRORS[code].params


# Parameters that name objects of a class: shown as `uuid (name-label)`.
PARAM_CLASS = {"vm": "VM", "sr": "SR", "vdi": "VDI", "host": "host", "network": "network",
               "vbd": "VBD", "vif": "VIF", "pif": "PIF", "pbd": "PBD", "task": "task",
               "pool": "pool", "vlan": "VLAN", "bond": "Bond", "snapshot": "VM",
               "template": "VM", "console": "console", "message": "message",
               "vms": "VM", "vifs": "VIF", "vbds": "VBD", "vdis": "VDI", "pifs": "PIF",
               "hosts": "host", "srs": "SR", "networks": "network"}


def described(code: str) -> bool:
    """xe words the codes of xapi's datamodel; any other (raised by xapi without being
    declared, or xe's own "Missing parameter") reaches the user as `Error code:`, as
    from xapi's xe, unless ERROR_TEXT words it."""
    return code in ERROR_TEXT or (code in ERRORS and ERRORS[code].origin == XAPI)


def referenced_classes(code: str, params: list) -> tuple:
    """The classes of the objects an error's parameters name (to show their names)."""
    if not described(code):
        return ()
    return tuple(sorted({PARAM_CLASS[name] for name, value in zip(param_names(code), params)
                         if name in PARAM_CLASS and str(value).startswith("OpaqueRef:")}))


def describe(code: str, params: list, name_of) -> list[str] | None:
    """Lines for a registered error code (xe prints the datamodel's description of every
    code it knows), None for any other. `name_of(cls, ref)` -> 'uuid (label)' or None."""
    if not described(code):
        return None
    text = ERROR_TEXT.get(code) or ERRORS[code].doc
    names = param_names(code)
    lines = [text]
    for i, value in enumerate(params):
        name = names[i] if i < len(names) else "<extra>"
        cls = PARAM_CLASS.get(name)
        if cls and value.startswith("OpaqueRef:"):
            value = name_of(cls, value) or value
        lines.append(f"{name}: {value}")
    lines += [f"{n}: <unknown>" for n in names[len(params):]]
    return lines
