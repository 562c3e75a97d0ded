"""Workload balancing: xapi hands placement decisions to a WLB appliance once
pool.initialize_wlb has named one. No appliance can be set up here, so every WLB
message answers as xapi does for a pool without one (workload_balancing.ml
`assert_wlb_initialized` / `assert_wlb_enabled`): WLB_NOT_INITIALIZED while
pool.wlb_url is empty, WLB_DISABLED while wlb_enabled is false."""
from ..dispatch.registry import implements
from ..errors import ApiError


def _assert_initialized(ctx):
    if not ctx.store.get("pool", ctx.server.pool_ref, "wlb_url"):
        raise ApiError("WLB_NOT_INITIALIZED")


def _assert_enabled(ctx):
    _assert_initialized(ctx)
    if not ctx.store.get("pool", ctx.server.pool_ref, "wlb_enabled"):
        raise ApiError("WLB_DISABLED")


@implements("pool.deconfigure_wlb")
def deconfigure_wlb(ctx):
    _assert_initialized(ctx)


@implements("pool.send_wlb_configuration")
def send_wlb_configuration(ctx, config):
    _assert_initialized(ctx)


@implements("pool.retrieve_wlb_configuration")
def retrieve_wlb_configuration(ctx):
    _assert_initialized(ctx)
    return {}


@implements("pool.retrieve_wlb_recommendations")
def retrieve_wlb_recommendations(ctx):
    _assert_enabled(ctx)
    return {}


@implements("host.retrieve_wlb_evacuate_recommendations")
def retrieve_wlb_evacuate_recommendations(ctx, self):
    ctx.store.record("host", self)
    _assert_enabled(ctx)
    return {}
