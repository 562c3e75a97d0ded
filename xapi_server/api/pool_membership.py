"""Pool membership: pool.join / join_force on the joining host, pool.eject and
host.destroy on the coordinator, and the calls hosts make to each other
(`/pool_internal`, services/pool/peer.py): join, heartbeat, eject.

A join, as xapi's: the joiner checks itself (no other hosts, no running VMs, no
shared SRs), pins the certificate the coordinator serves (trust on first use), and
sends the coordinator the user's credentials with its own records. The coordinator
logs the user in (the ordinary login, its throttle and errors), checks the versions,
adds the records to the pool database and answers with the pool secret. The joiner
then writes its role (services/pool/role.py) and restarts as a member.
"""
from __future__ import annotations

import asyncio
import logging
import os
import shlex
import subprocess
import time

from ..datamodel import NULL_REF
from ..dispatch.registry import implements
from ..errors import ApiError
from ..services.pool import ha_members, ha_recovery, peer, role as pool_role
from ..store import is_postgres_url
from . import pool_records
from .pool_ha_offer import offer_after_join

log = logging.getLogger(__name__)
EJECT_HA_TIMEOUT = 240.0


# -- on the joining host -------------------------------------------------------------

@implements("pool.join")
async def join(ctx, master_address, master_username, master_password):
    await _join(ctx, master_address, master_username, master_password, force=False)


@implements("pool.join_force")
async def join_force(ctx, master_address, master_username, master_password):
    await _join(ctx, master_address, master_username, master_password, force=True)


async def _join(ctx, address, username, password, force):
    server, store = ctx.server, ctx.store
    if set(store.tables["host"]) - {server.host_ref}:
        raise ApiError("POOL_JOINING_HOST_CANNOT_BE_MASTER_OF_OTHER_HOSTS")
    if pool_records.running_vms(store):
        raise ApiError("POOL_JOINING_HOST_CANNOT_HAVE_RUNNING_VMS")
    if pool_records.shared_srs(store):
        raise ApiError("POOL_JOINING_HOST_CANNOT_CONTAIN_SHARED_SRS")
    try:
        host, port = peer.split_address(address, server.settings.port)
        pin = await asyncio.to_thread(peer.served_fingerprint, host, port)
        objects = pool_records.encode(pool_records.local_objects(store, server.host_ref))
        answer = await asyncio.to_thread(
            peer.call, host, port, "join",
            {"username": username, "password": password, "force": force,
             "objects": objects}, pinned=pin, timeout=60)
    except ValueError:   # an address that names no port
        raise ApiError("POOL_JOINING_HOST_CONNECTION_FAILED") from None
    except peer.Unreachable as exc:
        log.warning("pool.join: cannot reach %s: %s", address, exc)
        raise ApiError("POOL_JOINING_HOST_CONNECTION_FAILED") from None
    except peer.Refused as exc:
        raise ApiError(*exc.description) from None
    pool_role.save(server.settings.data_dir, pool_role.PoolRole(
        master_address=address, secret=answer["secret"], master_fingerprint=pin,
        host_uuid=store.get("host", server.host_ref, "uuid"),
        pool_database=str(answer.get("database") or "")))   # for an emergency
    log.warning("joined the pool of %s: restarting as a member", address)
    server.restart_soon()


# -- on the coordinator --------------------------------------------------------------

async def accept_joiner(server, args: dict, peer_address: str):
    """The coordinator's side of a join (see the module doc)."""
    store = server.store
    session = await server.dispatcher.call(
        "session.login_with_password",
        [_text(args, "username"), _text(args, "password"), "1.0", "pool.join"], peer_address)
    try:
        if not (server.auth.is_superuser(session)
                or server.auth.role_of(session) in ("pool-admin", "pool-operator")):
            raise ApiError("RBAC_PERMISSION_DENIED", "pool.join",
                           "No permission in user session. (Roles with this permission: "
                           "pool-admin, pool-operator)")
        try:
            objects = pool_records.decode(args.get("objects") or {})
        except (ValueError, TypeError) as exc:
            raise ApiError("INVALID_VALUE", "objects", str(exc)) from None
        if len(objects["host"]) != 1:
            raise ApiError("INVALID_VALUE", "objects", "exactly one host record expected")
        (joiner_ref, joiner), = objects["host"].items()
        me = store.record("host", server.host_ref)
        if joiner["uuid"] == me["uuid"]:
            raise ApiError("OPERATION_NOT_ALLOWED", "Host cannot become slave of itself")
        if store.find("host", uuid=joiner["uuid"]) or store.exists("host", joiner_ref):
            raise ApiError("OPERATION_NOT_ALLOWED", "Host is already part of a pool")
        if not is_postgres_url(pool_role.database_location(server.settings, server.role)):
            # One host's SQLite file: no other host could ever take the pool over.
            raise ApiError("OPERATION_NOT_ALLOWED", "the coordinator keeps its records in "
                           "a SQLite file of its own: a pool's database must be PostgreSQL "
                           "(setting database_url, README \"Pool database\")")
        versions = [(h["API_version_major"], h["API_version_minor"]) for h in (joiner, me)]
        if versions[0] != versions[1]:
            raise ApiError("POOL_JOINING_HOST_MUST_HAVE_SAME_API_VERSION",
                           *("%d.%d" % v for v in versions))
        if not args.get("force") and (joiner["software_version"].get("product_version")
                                      != me["software_version"].get("product_version")):
            raise ApiError("POOL_HOSTS_NOT_HOMOGENEOUS", "Software version differs")
        pool_records.add_to_pool(store, objects)
        server.heard_from[joiner_ref] = time.monotonic()
        _set_live(store, joiner_ref, True)
        log.warning("host %s joined the pool", joiner["uuid"])
        offer_after_join(server)   # the third host: the database can be replicated
        await store.flush()
        # The pool database's location too: a member takes it over in an emergency
        # (api/pool_emergency.py).
        return {"secret": pool_role.coordinator_secret(server.settings.data_dir),
                "database": pool_role.database_location(server.settings, server.role)}
    finally:
        store.delete("session", session)


def _text(args: dict, name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise ApiError("INVALID_VALUE", name, repr(value)[:80])
    return value


def heartbeat(server, args: dict):
    """A member is alive (xapi's host.tickle_heartbeat): it is live again at once. It
    also reports the power state of the VMs it runs, so the pool database follows a
    guest that stopped by itself, or a domain destroyed behind the member's back."""
    store = server.store
    found = store.find("host", uuid=_text(args, "host_uuid"))
    if not found:
        raise ApiError("HOST_UNKNOWN_TO_MASTER", args["host_uuid"])
    host = found[0]
    server.heard_from[host] = time.monotonic()
    _set_live(store, host, True)
    if isinstance(args.get("lock_manager"), str):   # what its VMs are fenced by
        ha_recovery.record_lock_manager(store, host, args["lock_manager"])
    running = args.get("running")
    if not isinstance(running, dict):
        return True
    # A VM is halted once two reports in a row lack it: a report made while a forwarded
    # start was still running there may lack a VM the coordinator now knows runs.
    missing = set()
    for vm in store.find("VM", resident_on=host):
        state = running.get(vm, "Halted")
        if state in ("Running", "Paused") and store.get("VM", vm, "power_state") != state:
            store.update("VM", vm, power_state=state)
        elif state == "Halted" and not store.get("VM", vm, "is_control_domain"):
            if vm in server.vms_missing.get(host, ()):
                store.update("VM", vm, power_state="Halted", resident_on=NULL_REF, domid=-1)
            else:
                missing.add(vm)
    server.vms_missing[host] = missing
    return True


def running_here(server) -> dict:
    """A member's report: {VM ref: power state} of the VMs running or paused here."""
    return {ref: rec["power_state"] for ref, rec in server.store.tables["VM"].items()
            if rec["resident_on"] == server.host_ref
            and rec["power_state"] in ("Running", "Paused")}


def _set_live(store, host, live: bool):
    metrics = store.get("host", host, "metrics")
    if store.exists("host_metrics", metrics) and store.get("host_metrics", metrics,
                                                           "live") != live:
        store.update("host_metrics", metrics, live=live)


def is_live(store, host) -> bool:
    metrics = store.get("host", host, "metrics")
    return store.exists("host_metrics", metrics) and store.get("host_metrics", metrics, "live")


async def watch_liveness(server):
    """The coordinator: a member not heard from for host_assumed_dead_interval is not
    live (checked every second or every heartbeat interval, whichever is shorter)."""
    settings = server.settings
    started = time.monotonic()
    while True:
        await asyncio.sleep(min(1.0, settings.pool_heartbeat_interval))
        now = time.monotonic()
        for host in list(server.store.tables["host"]):
            if host == server.host_ref:
                continue
            last = server.heard_from.get(host, started)
            live = now - last < settings.host_assumed_dead_interval
            if live != is_live(server.store, host):
                log.warning("host %s is %s", server.store.get("host", host, "uuid"),
                            "live again" if live else "not live: no heartbeat")
                _set_live(server.store, host, live)
        await server.store.flush()


async def call_member(server, host: str, op: str, args: dict, timeout: float = 30,
                      check_live: bool = True):
    """An internal call to a member: HOST_OFFLINE if it is not live (unless
    `check_live` is False: xapi's emergency calls), CANNOT_CONTACT_HOST if it does not
    answer (xapi's forwarding errors)."""
    store = server.store
    if check_live and not is_live(store, host):
        raise ApiError("HOST_OFFLINE", host)
    pins = [store.get("Certificate", ref, "fingerprint_sha256")
            for ref in store.find("Certificate", host=host, type="host")]
    address = store.get("host", host, "address")
    try:
        if not pins:
            raise peer.Unreachable("no certificate of the host is known")
        return await asyncio.to_thread(
            peer.call, address, server.settings.port, op, args, pinned=pins[0],
            secret=pool_role.coordinator_secret(server.settings.data_dir), timeout=timeout)
    except peer.Unreachable as exc:
        log.warning("cannot contact host %s (%s): %s", host, address, exc)
        raise ApiError("CANNOT_CONTACT_HOST", host) from None
    except peer.Refused as exc:
        raise ApiError(*exc.description) from None


def _resident_guests(store, host) -> list[str]:
    return [vm for vm in store.find("VM", resident_on=host)
            if not store.get("VM", vm, "is_control_domain")
            and store.get("VM", vm, "power_state") != "Halted"]


@implements("pool.eject")
async def eject(ctx, host):
    server, store = ctx.server, ctx.store
    if host == server.host_ref:
        raise ApiError("OPERATION_NOT_ALLOWED", "Cannot eject the pool's coordinator")
    if _resident_guests(store, host):
        raise ApiError("OPERATION_NOT_ALLOWED", "VM resident on host")
    # A host of the replicated pool database first leaves it (a switchover if it
    # leads, then etcd): allow for that.
    await call_member(server, host, "eject", {},
                      timeout=EJECT_HA_TIMEOUT if server.settings.patroni_url else 30)
    pool_records.forget_host(store, host)
    server.heard_from.pop(host, None)


@implements("host.destroy")
async def destroy(ctx, self):
    server, store = ctx.server, ctx.store
    if self == server.host_ref:
        raise ApiError("HOST_CANNOT_DESTROY_SELF", self)
    if is_live(store, self):
        raise ApiError("HOST_IS_LIVE", self)
    if _resident_guests(store, self):
        raise ApiError("HOST_HAS_RESIDENT_VMS", self)
    pool_records.forget_host(store, self)
    server.heard_from.pop(self, None)


# -- on a member ---------------------------------------------------------------------

async def send_heartbeats(server):
    """A member: tell the coordinator it is alive, every pool_heartbeat_interval."""
    failing = False
    host, port = peer.split_address(server.role.master_address, server.settings.port)
    while True:
        role = server.role   # the secret may be rotated meanwhile
        try:
            await asyncio.to_thread(peer.call, host, port, "heartbeat",
                                    {"host_uuid": role.host_uuid,
                                     "running": running_here(server),
                                     "lock_manager": server.settings.vm_lock_manager},
                                    pinned=role.master_fingerprint, secret=role.secret,
                                    timeout=max(2.0, server.settings.pool_heartbeat_interval))
            if failing:
                log.warning("the coordinator %s answers again", role.master_address)
            failing = False
        except (peer.Unreachable, peer.Refused) as exc:
            if not failing:
                log.warning("heartbeat to the coordinator %s failed: %s",
                            role.master_address, exc)
            failing = True
        await asyncio.sleep(server.settings.pool_heartbeat_interval)


async def leave_pool(server, args: dict):
    """Ejected: forget the pool (role, secret), this host's own database and the Local
    storage SR its first start made (xapi reinitialises local SRs too), then restart
    standalone and clean, as xapi does after an eject. A host of the replicated pool
    database leaves it first (Patroni, then etcd: services/pool/ha_members.py)."""
    settings = server.settings
    if settings.patroni_url:
        await _leave_replicated_database(server)
    pool_role.forget(settings.data_dir)
    local_sr = os.path.join(os.path.abspath(settings.data_dir), "sr", "local")
    server.restart_then_remove(local_sr,
                               *([] if settings.database_url else [settings.db_path]))
    return True


async def _leave_replicated_database(server):
    settings = server.settings

    def stop(service: str):
        command = shlex.split(settings.ha_service_stop_command.format(service=service))
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise ha_members.MembershipError(f"{' '.join(command)}: {done.stderr[-300:]}")
    try:
        removed = await asyncio.to_thread(
            ha_members.leave_host, settings.patroni_url, settings.patroni_ca_file,
            server.role.secret, stop)
    except (ha_members.MembershipError, OSError, subprocess.SubprocessError) as exc:
        raise ApiError("INTERNAL_ERROR", f"leaving the replicated pool database: {exc}") \
            from None
    log.warning("left the replicated pool database (%d etcd member(s) removed)", removed)
