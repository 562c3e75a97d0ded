"""xapi's metrics handlers (xcp-rrdd rrdd_http_handler.ml, xapi rrdd_proxy.ml):

    GET /rrd_updates?start=&cf=&interval=&host=true&vm_uuid=..&sr_uuid=..[&json]
        the rows of every chosen archive since `start` (negative: seconds before the
        last sample), newest first, XML or JSON (numbers as strings)
    GET /host_rrd[?json], /vm_rrd?uuid=, /sr_rrd?uuid= (and XenCenter's /host_rrds,
        /vm_rrds): a whole archive, rrdtool-dump style

The values come from services/metrics; the formats are services/metrics/formats.py.
JSON is chosen by a `json` parameter with any value, or (rrd_updates) an Accept header
that prefers application/json to text/xml (equal counts as JSON: curl's */* gets
JSON); with neither, XML, which is what XenCenter reads.
"""
from __future__ import annotations

import asyncio

from ..errors import ApiError
from ..services.metrics import NoData, formats
from .dataplane import Refusal, Request

CFS = ("AVERAGE", "MIN", "MAX", "LAST")
_HEADERS = [(b"cache-control", b"no-cache, no-store")]
_TYPES = {True: "application/json", False: "text/xml"}


def _int_param(req: Request, name: str, default: int | None = None) -> int:
    text = req.param(name)
    if text is None:
        if default is None:
            raise Refusal(400, ApiError("INVALID_VALUE", name, "missing"))
        return default
    try:
        return int(text)
    except ValueError:
        raise Refusal(400, ApiError("INVALID_VALUE", name, text[:100])) from None


def _quality(accept: str, wanted: str) -> float:
    """The q-value the Accept header gives `wanted` (most specific match wins)."""
    best, best_specific = 0.0, -1
    kind = wanted.split("/")[0]
    for part in accept.split(","):
        media, *params = [p.strip() for p in part.split(";")]
        specific = {wanted: 2, f"{kind}/*": 1, "*/*": 0}.get(media.lower())
        if specific is None or specific < best_specific:
            continue
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        best, best_specific = q, specific
    return best


def wants_json(req: Request) -> bool:
    if req.param("json") is not None:
        return True
    accept = req.header("accept")
    if not accept:
        return False
    return _quality(accept, "application/json") >= _quality(accept, "text/xml") > 0 or \
        (_quality(accept, "application/json") > 0 and _quality(accept, "text/xml") == 0)


def _resident_vms(store, host_ref: str) -> list[str]:
    """The VMs whose archives are live on this host: those running or paused here."""
    return [rec["uuid"] for rec in (store.record("VM", ref)
                                    for ref in store.get("host", host_ref, "resident_VMs"))
            if rec["power_state"] in ("Running", "Paused") and not rec["is_control_domain"]]


async def get_rrd_updates(req: Request):
    server = req.server
    start = _int_param(req, "start")
    interval = _int_param(req, "interval", 0)
    cf = req.param("cf")
    owners = []
    if req.param("host") == "true":
        owners.append(("host", server.store.get("host", server.host_ref, "uuid")))
    vms = req.query_all("vm_uuid") or _resident_vms(server.store, server.host_ref)
    owners += [("vm", uuid) for uuid in vms]
    owners += [("sr", uuid) for uuid in req.query_all("sr_uuid")]
    try:
        updates = await server.metrics.updates(owners, start, interval,
                                               cf if cf in CFS else None)
    except NoData:
        raise Refusal(404, ApiError("INTERNAL_ERROR", "No_RRA_Available")) from None
    as_json = wants_json(req)
    # ~0.1 s of formatting for 100 VMs' 10 minutes: off the event loop.
    body = await asyncio.to_thread(
        formats.updates_json if as_json else formats.updates_xml, updates)
    await req.respond(200, body, _TYPES[as_json].encode(), _HEADERS)


async def _dump(req: Request, kind: str, uuid: str):
    dumped = await req.server.metrics.dump(kind, uuid)
    if dumped is None:
        cname = {"vm": "VM", "sr": "SR", "host": "host"}[kind]
        raise Refusal(404, ApiError("UUID_INVALID", cname, uuid), version="1.0")
    as_json = req.param("json") is not None
    body = await asyncio.to_thread(formats.dump_json if as_json else formats.dump_xml, dumped)
    # As xcp-rrdd: HTTP/1.0, no length, the connection closes after the body.
    conn = await req.start_stream([
        "HTTP/1.0 200 OK", "Connection: close", "Cache-Control: no-cache, no-store",
        f"content-type: {_TYPES[as_json]}", "Access-Control-Allow-Origin: *"])
    await conn.write(body)


async def get_host_rrd(req: Request):
    await _dump(req, "host", req.server.store.get("host", req.server.host_ref, "uuid"))


def _uuid(req: Request) -> str:
    uuid = req.param("uuid")
    if not uuid:
        raise Refusal(400, ApiError("INVALID_VALUE", "uuid", "missing"))
    return uuid


async def get_vm_rrd(req: Request):
    await _dump(req, "vm", _uuid(req))


async def get_sr_rrd(req: Request):
    await _dump(req, "sr", _uuid(req))
