"""GET /audit_log: the current audit log file, one JSON object a line.

xapi's `get_audit_log` is read-only's and up; ours stays pool-admin's (rbac.py says why).
"""
from __future__ import annotations


async def get_audit_log(req):
    await req.respond(200, req.server.audit.read(), b"application/x-ndjson")
