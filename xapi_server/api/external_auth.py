"""External authentication (xapi_host.ml, xapi_pool.ml, extauth.ml): a host turns on
a directory service by type. xapi's one type is "AD" (Active Directory through
winbind), which needs a domain join this server cannot make: AUTH_ENABLE_FAILED.
Any other type is AUTH_UNKNOWN_TYPE; turning on what is on is AUTH_ALREADY_ENABLED;
turning off what is off does nothing, as xapi. The pool's calls act on every host.
"""
from __future__ import annotations

from ..dispatch.registry import implements
from ..errors import ApiError
from ..messages import raise_message

AD = "AD"


def enable(store, host: str, auth_type: str):
    current = store.get("host", host, "external_auth_type")
    if current:
        raise ApiError("AUTH_ALREADY_ENABLED", current,
                       store.get("host", host, "external_auth_service_name"))
    if auth_type != AD:
        raise ApiError("AUTH_UNKNOWN_TYPE", auth_type)
    raise ApiError("AUTH_ENABLE_FAILED",
                   "joining an Active Directory domain (winbind) is not available here")


def disable(store, host: str):
    if store.get("host", host, "external_auth_type"):
        store.update("host", host, external_auth_type="", external_auth_service_name="",
                     external_auth_configuration={})


def set_ldaps(store, host: str):
    if store.get("host", host, "external_auth_type") != AD:
        raise ApiError("AUTH_IS_DISABLED")


@implements("host.enable_external_auth")
def host_enable_external_auth(ctx, host, config, service_name, auth_type):
    ctx.store.record("host", host)
    enable(ctx.store, host, auth_type)


@implements("host.disable_external_auth")
def host_disable_external_auth(ctx, host, config, force):
    ctx.store.record("host", host)
    disable(ctx.store, host)


@implements("host.external_auth_set_ldaps")
def host_external_auth_set_ldaps(ctx, host, ldaps, force):
    ctx.store.record("host", host)
    set_ldaps(ctx.store, host)


@implements("pool.enable_external_auth")
def pool_enable_external_auth(ctx, pool, config, service_name, auth_type):
    ctx.store.record("pool", pool)
    for host in ctx.store.refs("host"):
        enable(ctx.store, host, auth_type)


@implements("pool.disable_external_auth")
def pool_disable_external_auth(ctx, pool, config):
    ctx.store.record("pool", pool)
    for host in ctx.store.refs("host"):
        disable(ctx.store, host)


@implements("pool.external_auth_set_ldaps")
def pool_external_auth_set_ldaps(ctx, pool, ldaps, force):
    ctx.store.record("pool", pool)
    for host in ctx.store.refs("host"):
        set_ldaps(ctx.store, host)


@implements("pool.detect_nonhomogeneous_external_auth")
def detect_nonhomogeneous_external_auth(ctx, pool):
    """A message on each host whose setting differs from the master's (xapi's
    EXTAUTH_IN_POOL_IS_NON_HOMOGENEOUS)."""
    store = ctx.store
    store.record("pool", pool)
    master = store.get("pool", pool, "master")

    def setting(host):
        return (store.get("host", host, "external_auth_type"),
                store.get("host", host, "external_auth_service_name"))
    for host in store.refs("host"):
        if setting(host) != setting(master):
            raise_message(ctx.server, "EXTAUTH_IN_POOL_IS_NON_HOMOGENEOUS", 3, "Host",
                          store.get("host", host, "uuid"),
                          "The external authentication of this host differs from the "
                          "pool master's.")
