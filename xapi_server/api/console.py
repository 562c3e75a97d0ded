"""console records are the server's: made while a VM runs and removed when it stops
(services/vm/consoles.py). As in xapi, an API caller cannot create one: a console
the hypervisor does not serve would only mislead clients that take VM.consoles[0]."""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError


@implements("console.create")
def create(ctx, args):
    raise ApiError("NOT_IMPLEMENTED", "console.create")
