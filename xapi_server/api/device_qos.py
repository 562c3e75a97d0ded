"""The QoS fields of VIFs and VBDs (qos_algorithm_type, qos_algorithm_params): xapi's
generated setters, with the values checked and a running guest's device following at
once (services/vm/qos.py maps them). api/vif.py and api/vbd.py register them."""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError


def register_qos_setters(cls: str, check, apply) -> None:
    """check(record) raises INVALID_VALUE; await apply(server, ref) reaches the guest."""

    async def _change(ctx, ref, **changes):
        old = {k: ctx.store.record(cls, ref)[k] for k in changes}
        check({**ctx.store.record(cls, ref), **changes})
        ctx.store.update(cls, ref, **changes)
        try:
            await apply(ctx.server, ref)
        except ApiError:
            ctx.store.update(cls, ref, **old)
            raise

    @implements(f"{cls}.set_qos_algorithm_type")
    async def set_type(ctx, self, value):
        await _change(ctx, self, qos_algorithm_type=value)

    @implements(f"{cls}.set_qos_algorithm_params")
    async def set_params(ctx, self, value):
        await _change(ctx, self, qos_algorithm_params=dict(value))

    @implements(f"{cls}.add_to_qos_algorithm_params")
    async def add_param(ctx, self, key, value):
        current = ctx.store.record(cls, self)["qos_algorithm_params"]
        if key in current:
            raise ApiError("MAP_DUPLICATE_KEY", cls, "qos_algorithm_params", self, key)
        await _change(ctx, self, qos_algorithm_params={**current, key: value})

    @implements(f"{cls}.remove_from_qos_algorithm_params")
    async def remove_param(ctx, self, key):
        current = dict(ctx.store.record(cls, self)["qos_algorithm_params"])
        current.pop(key, None)
        await _change(ctx, self, qos_algorithm_params=current)
