"""The one exception every layer raises for a XenAPI failure.

`ApiError("HANDLE_INVALID", "VM", ref)` reaches the client as
`["HANDLE_INVALID", "VM", "OpaqueRef:..."]`: the code then its parameters, all strings.
"""


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
    return str(value)


def handle_invalid(cls: str, ref: str) -> ApiError:
    return ApiError("HANDLE_INVALID", cls, ref)
