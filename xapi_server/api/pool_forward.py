"""VM placement in a pool, and the forwarding of a call to the member that owns its
object, as xapi's message forwarding does.

On the coordinator, VM.start picks a host that can run the VM (its affinity first,
then the coordinator, then the members): live, enabled, reaching every SR the VM's
disks are on and every network with PIFs its VIFs use, with memory left for it
(xapi's checks and errors). VM.start_on checks the named host the same way.

Any other message a member runs is declared in the datamodel (`msg(forward="vm")`);
the dispatcher's step (`forward_call`) finds the owner of the named object
(api/pool_scope.py) and, when it is a member, sends it the call with the records
it needs (`/pool_internal` op "call"). The member brings its own copy of them up to
date, runs the message on its own hypervisor, disks and bridges, and answers with
the result, the records as they now are (new ones included) and the ones the call
removed, which the coordinator writes to the pool database. The coordinator never
touches a member's libvirt itself. A standalone host (a pool of one) is not affected.
"""
from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime

from ..datamodel import CLASSES, METHODS, NULL_REF, RW, forward_target
from ..datamodel.types import Record, Ref, Set, format_datetime
from ..dispatch import Context
from ..dispatch.unmarshal import unmarshal
from ..errors import ApiError
from . import pool_records, pool_scope, pool_tasks
from .pool_membership import call_member, is_live

# Sent to a member by the code of the message itself (start_elsewhere, run_on_member),
# not by the dispatcher's step: the host is not found from one parameter. Every other
# message a member runs for the coordinator is one the datamodel forwards.
PLACED = ("VM.start", "VDI.pool_migrate")
# What a forwarded call may remove; networks are matched by bridge, never removed.
GONE_CLASSES = ("console", "VIF", "VBD", "VM", "VM_metrics", "VDI", "PBD", "SR")
FORWARD_TIMEOUT = 1800.0   # a clean shutdown may take 1200 s (api/vm.py)
CANCEL_GRACE = 60.0        # how long a cancelled call's member may take to stop


def _in_pool(ctx) -> bool:
    return not ctx.server.role.is_member and len(ctx.store.tables["host"]) > 1


def _free_memory(store, host) -> int:
    total = store.get("host_metrics", store.get("host", host, "metrics"), "memory_total")
    used = sum(rec["memory_static_max"] for rec in store.tables["VM"].values()
               if rec["resident_on"] == host and not rec["is_control_domain"])
    return total - used


def assert_can_run_on(store, vm: str, host: str):
    """xapi's checks of a host for a VM, in its order; raises the first that fails."""
    if not is_live(store, host):
        raise ApiError("HOST_OFFLINE", host)
    if not store.get("host", host, "enabled"):
        raise ApiError("HOST_DISABLED", host)
    rec = store.record("VM", vm)
    for vbd in rec["VBDs"]:
        vdi = store.get("VBD", vbd, "VDI")
        if vbd_empty(store, vbd) or not store.exists("VDI", vdi):
            continue
        sr = store.get("VDI", vdi, "SR")
        if not any(store.get("PBD", p, "host") == host
                   for p in store.get("SR", sr, "PBDs")):
            raise ApiError("VM_REQUIRES_SR", vm, sr)
    for vif in rec["VIFs"]:
        network = store.get("VIF", vif, "network")
        pifs = store.get("network", network, "PIFs") if store.exists("network", network) \
            else []
        if pifs and not any(store.get("PIF", p, "host") == host for p in pifs):
            raise ApiError("VM_REQUIRES_NETWORK", vm, network)
    needed, available = rec["memory_static_max"], _free_memory(store, host)
    if needed > available:
        raise ApiError("HOST_NOT_ENOUGH_FREE_MEMORY", needed, available)


def vbd_empty(store, vbd) -> bool:
    return store.get("VBD", vbd, "empty")


def choose_host(store, vm: str, coordinator: str) -> str:
    affinity = store.get("VM", vm, "affinity")
    order = [h for h in [affinity, coordinator] if store.exists("host", h)]
    order += sorted(h for h in store.tables["host"] if h not in order)
    for host in order:
        try:
            assert_can_run_on(store, vm, host)
            return host
        except ApiError:
            continue
    raise ApiError("NO_HOSTS_AVAILABLE")


async def start_elsewhere(ctx, vm: str, host: str | None, paused: bool, force: bool) -> bool:
    """VM.start / start_on in a pool: True when a member ran it; False when this host
    is to start the VM itself (the caller goes on as on a standalone host)."""
    if not _in_pool(ctx):
        return False
    store = ctx.store
    if host is None:
        host = choose_host(store, vm, ctx.server.host_ref)
    else:
        if not store.exists("host", host):
            raise ApiError("HANDLE_INVALID", "host", host)
        assert_can_run_on(store, vm, host)
    if host == ctx.server.host_ref:
        return False
    await _run_on(ctx, host, METHODS["VM.start"], [vm, paused, force])
    return True


async def forward_call(ctx, args: list) -> tuple | None:
    """The dispatcher's step for a message the datamodel forwards (`msg(forward=)`):
    (result,) when the host owning the named object is another one, which ran it;
    None when this host runs it (not in a pool, no owner, or the owner is this host)."""
    if not _in_pool(ctx):
        return None
    index, fname, ref_type = forward_target(ctx.message)
    ref = args[index].get(fname) if fname else args[index]
    host = pool_scope.owner(ctx.store, ref_type.cls, ref) if isinstance(ref, str) else None
    if host in (None, ctx.server.host_ref) or not ctx.store.exists("host", host):
        return None
    if ctx.task is not None:   # as xapi's set_forwarding_on_task: where it runs
        ctx.store.update("task", ctx.task, resident_on=host)
    return (await _run_on(ctx, host, ctx.message, args),)


async def run_on_member(ctx, host: str, args: list):
    """The message ctx runs, with these arguments, run by the member `host` instead
    (one of PLACED); its result."""
    if ctx.task is not None:
        ctx.store.update("task", ctx.task, resident_on=host)
    return await _run_on(ctx, host, ctx.message, args)


def call_scope(store, m, args: list, result=None) -> dict:
    """{class: refs} of the records a call needs: the scope of every object its
    parameters name (refs, sets of refs, refs in a record), and of its result."""
    into: dict = {}
    for ptype, value in [(p.type, v) for p, v in zip(m.params, args)] + [(m.result, result)]:
        for cname, ref in _refs(ptype, value):
            pool_scope.scope(store, cname, ref, into)
    return into


def _refs(ptype, value):
    if isinstance(ptype, Ref) and isinstance(value, str):
        yield ptype.cls, value
    elif isinstance(ptype, Set) and isinstance(ptype.elem, Ref) and isinstance(value, list):
        yield from ((ptype.elem.cls, v) for v in value if isinstance(v, str))
    elif isinstance(ptype, Record) and isinstance(value, dict):
        fields = CLASSES[ptype.cls].field_map
        for name, v in value.items():
            if name in fields and isinstance(fields[name].type, Ref) and isinstance(v, str):
                yield fields[name].type.cls, v


def _records(store, refs: dict) -> dict:
    return {cname: {ref: store.record(cname, ref) for ref in refs.get(cname, ())
                    if store.exists(cname, ref)} for cname in pool_records.MOVED}


def _plain(value):
    """JSON-safe (datetimes as xapi's text); the receiver unmarshals by the type."""
    return json.loads(json.dumps(value, default=lambda v: format_datetime(v)
                                 if isinstance(v, datetime) else str(v)))


async def _run_on(ctx, host: str, m, args: list):
    """Run message m on a member: the records it needs go along, the member's records
    of them come back into the pool database, with the objects the call removed."""
    store = ctx.store
    sent = call_scope(store, m, args)
    call = {"message": m.wire_name, "params": _plain(args),
            "objects": pool_records.encode(_records(store, sent))}
    if ctx.task is not None:   # the member runs it under a task a cancel here reaches
        call["task"] = ctx.task
    answer = await _cancellable(ctx, host, call_member(ctx.server, host, "call", call,
                                                       timeout=FORWARD_TIMEOUT))
    try:
        objects = pool_records.decode(answer["objects"])
        gone = {c: list(answer["gone"].get(c, [])) for c in GONE_CLASSES}
        result = None if m.result_text == "void" else \
            unmarshal("result", m.result, answer["result"])
    except (ValueError, TypeError, KeyError, AttributeError, ApiError) as exc:
        raise ApiError("INTERNAL_ERROR", f"the member's answer: {exc}") from None
    _merge(store, host, sent, objects, gone)
    return result


async def _cancellable(ctx, host: str, calling):
    """Await the member's answer; when the task here is cancelled, the member is told
    to cancel its work too, and given CANCEL_GRACE seconds to stop and clean up. The
    cancel is sent again each second until the call ends: it may come before the
    member has started the work."""
    call = asyncio.ensure_future(calling)
    try:
        return await asyncio.shield(call)
    except asyncio.CancelledError:
        deadline = time.monotonic() + CANCEL_GRACE
        while ctx.task is not None and not call.done() and time.monotonic() < deadline:
            await pool_tasks.relay_cancel(ctx.server, host, ctx.task)
            await asyncio.wait({call}, timeout=1.0)
        if call.done() and not call.cancelled():
            call.exception()   # retrieved: the member's TASK_CANCELLED is expected
        raise


def _merge(store, member: str, sent: dict, objects: dict, gone: dict):
    """The member's records into the pool database. A reference the member could not
    know (one to an object it was not sent, such as the coordinator as a VM's
    affinity) comes back NULL: the pool's value stays."""
    for cname, recs in objects.items():
        table, fields = store.tables[cname], CLASSES[cname].field_map
        for ref, rec in recs.items():
            mine = table.get(ref)
            if mine is None:
                continue
            for name, value in rec.items():
                ftype, had = fields[name].type, mine[name]
                if isinstance(ftype, Ref) and value == NULL_REF and had != NULL_REF \
                        and had != member and had not in sent.get(ftype.cls, ()):
                    rec[name] = had
    pool_records.add_to_pool(store, objects, replace=True)
    for cname in reversed(pool_records.MOVED):
        for ref in gone.get(cname, ()):
            if store.exists(cname, ref):
                store.delete(cname, ref)
    # A VM a member suspended keeps its memory there: it resumes there (pool_scope).
    for vm, rec in objects["VM"].items():
        if not store.exists("VM", vm):
            continue
        held = rec["power_state"] == "Suspended" and rec["suspend_VDI"] == NULL_REF
        if held:
            store.update("VM", vm, scheduled_to_be_resident_on=member)
        elif store.get("VM", vm, "scheduled_to_be_resident_on") == member:
            store.update("VM", vm, scheduled_to_be_resident_on=NULL_REF)


async def run_for_coordinator(server, args: dict):
    """On a member: op "call", a message the coordinator forwards here (see _run_on)."""
    m = METHODS.get(args.get("message")) if isinstance(args.get("message"), str) else None
    if m is None or (m.forward is None and m.wire_name not in PLACED):
        raise ApiError("MESSAGE_METHOD_UNKNOWN", str(args.get("message")))
    params = args.get("params")
    if not isinstance(params, list) or len(params) != len(m.params):
        raise ApiError("MESSAGE_PARAMETER_COUNT_MISMATCH", m.wire_name, len(m.params),
                       len(params) if isinstance(params, list) else 0)
    call_args = [unmarshal(p.name, p.type, v) for p, v in zip(m.params, params)]
    try:
        objects = pool_records.decode(args.get("objects") or {})
    except (ValueError, TypeError) as exc:
        raise ApiError("INVALID_VALUE", "objects", str(exc)) from None
    store = server.store
    _take_from_coordinator(store, objects, server.host_ref)
    sent = {c: set(recs) for c, recs in objects.items() if recs}
    task = args.get("task")
    if isinstance(task, str):   # the coordinator's task: its cancel reaches the call here
        async def work(mine):
            return await server.dispatcher.run(Context(server, m, task=mine), call_args)
        result = await pool_tasks.run_for(server, task, f"Forwarded.{m.wire_name}", work)
    else:
        result = await server.dispatcher.run(Context(server, m), call_args)
    after = call_scope(store, m, call_args, result)
    for cname, refs in sent.items():
        after.setdefault(cname, set()).update(refs)
    return {"result": _plain(result), "objects": pool_records.encode(_records(store, after)),
            "gone": {c: sorted(r for r in sent.get(c, ()) if not store.exists(c, r))
                     for c in GONE_CLASSES}}


def _take_from_coordinator(store, objects: dict, here: str):
    """The pool database's records into this member's copy. Of an object this host
    acts on (its host, its local SR and disks, a VM running here and its devices) only
    the configuration is taken (read-write fields): its runtime state is this host's."""
    for cname, recs in objects.items():
        fields = CLASSES[cname].field_map
        for ref, rec in recs.items():
            if store.exists(cname, ref) and pool_scope.owned_by(store, cname, ref, here):
                recs[ref] = {k: v for k, v in rec.items() if fields[k].qualifier == RW}
    pool_records.add_to_pool(store, objects, replace=True)
