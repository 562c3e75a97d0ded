"""The one exception every layer raises for a XenAPI failure.

`ApiError("HANDLE_INVALID", "VM", ref)` reaches the client as
`["HANDLE_INVALID", "VM", "OpaqueRef:..."]`: the code then its parameters, all strings.
Parameters often echo what the client sent (a ref, a name, a session): each is cut to
ERROR_PARAM_MAX characters, so a 16 MiB "session ref" is not sent back whole.

Every code is declared, with its parameters, in the error registry
(datamodel/errors.py). That is not checked here, on every error, but by
tests/test_error_registry.py, which reads each `ApiError("CODE", ...)` in the source.
"""
import reprlib

from .bounds import bounded

ERROR_PARAM_MAX = 4096


class ApiError(Exception):
    def __init__(self, code: str, *params):
        super().__init__(code, *params)
        self.code = code
        self.params = [_text(p) for p in params]

    @property
    def description(self) -> list:
        return [self.code, *self.params]

    def __str__(self):
        return str(self.description)


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, dict, set)):
        return reprlib.repr(value)   # str() of a huge container costs and says no more
    return bounded(value, ERROR_PARAM_MAX)


def handle_invalid(cls: str, ref: str) -> ApiError:
    return ApiError("HANDLE_INVALID", cls, ref)
