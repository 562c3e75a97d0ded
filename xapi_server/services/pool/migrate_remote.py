"""The source pool's client of another pool during a cross-pool migration.

Everything the source needs from the destination pool goes through the map that
pool's host.migrate_receive returned (xapi's keys: "master", "session_id", "host",
"xenops", "SM"): its XenAPI (XML-RPC) on the coordinator named by "master", its
`/import_metadata` handler, and its `/pool_internal` calls that accept a session
rather than the pool secret. Every request carries the session of the map.

Trust, as in xapi (xapi_vm_migrate.ml remote_of_dest): the session is the credential.
The user logged in to the destination pool and asked it for the map; whoever holds
the map may act in that pool with that user's rights, and nothing more. The TLS
connection to the destination coordinator is encrypted but its certificate is not
checked (the two pools share no certificate authority the API could check against).
The memory and the disks are another matter: they go from this host's libvirtd to the
destination host's libvirtd, which verify each other's certificates against their
own CA files (libvirtd.conf ca_file, qemu.conf migrate_tls_x509_cert_dir), so a
migration between two pools works only once the administrator has made each pool's
daemons trust the other's CA; a daemon that does not is refused by libvirt's TLS
handshake before any byte of the guest leaves, and the VM runs on here.

All calls block: run them in a thread.
"""
from __future__ import annotations

import functools
import http.client
import json
import logging
import ssl
import xmlrpc.client
from xml.parsers.expat import ExpatError
from urllib.parse import urlencode, urlsplit

from ...errors import ApiError
from .peer import PATH as INTERNAL_PATH, SESSION_HEADER

log = logging.getLogger(__name__)
DEFAULT_PORT = 443
MAX_REPLY = 64 << 20


def _tls() -> ssl.SSLContext:
    # Not verified: see the module doc (the session in the map is the credential).
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _host_port(url: str) -> tuple[str, int]:
    try:
        parts = urlsplit(url)
        return parts.hostname or "", parts.port or DEFAULT_PORT
    except ValueError:
        return "", DEFAULT_PORT


def is_remote_map(dest: dict) -> bool:
    """A map names another pool when it has what xapi's remote_of_dest reads."""
    return all(isinstance(dest.get(k), str) and dest[k]
               for k in ("master", "session_id", "host", "xenops"))


class _Transport(xmlrpc.client.SafeTransport):
    def __init__(self, timeout: float):
        super().__init__(context=_tls())
        self.timeout = timeout

    def make_connection(self, host):
        conn = super().make_connection(host)
        conn.timeout = self.timeout
        return conn


class RemotePool:
    """The destination pool's coordinator at `master` (a URL or an address), used
    with `session` (the map's, or one of `login`). ApiError for every failure: the
    remote pool's own error as it sent it, CANNOT_CONTACT_HOST when it does not
    answer."""

    def __init__(self, master: str, session: str = "", host: str = "", address: str = "",
                 timeout: float = 60):
        self.master, self.port = _host_port(master if "://" in master else f"https://{master}")
        if not self.master:
            raise ApiError("INVALID_VALUE", "master", master[:200])
        self.session, self.host = session, host   # the destination host there
        self.address = address or self.master        # its address (libvirt's peer)
        self.timeout = timeout
        self._proxy = xmlrpc.client.ServerProxy(
            f"https://{_bracket(self.master)}:{self.port}/", transport=_Transport(timeout),
            allow_none=False)

    @classmethod
    def of_dest(cls, dest: dict) -> "RemotePool":
        """The pool of a host.migrate_receive map (xapi's remote_of_dest)."""
        if not is_remote_map(dest):
            missing = [k for k in ("master", "session_id", "host", "xenops")
                       if not dest.get(k)]
            raise ApiError("INVALID_VALUE", "dest", f"missing {', '.join(missing)}")
        address = _host_port(dest["xenops"])[0]
        if not address:
            raise ApiError("INVALID_VALUE", "dest", "xenops is not a URL")
        return cls(dest["master"], dest["session_id"], dest["host"], address)

    def _unreachable(self, exc) -> ApiError:
        log.warning("the other pool's coordinator %s:%d: %s", self.master, self.port, exc)
        return ApiError("CANNOT_CONTACT_HOST", self.master)   # xapi: the remote address

    def _rpc(self, method: str, *args):
        fn = functools.reduce(getattr, method.split("."), self._proxy)
        try:
            answer = fn(*args)
        except (OSError, ssl.SSLError, http.client.HTTPException,
                xmlrpc.client.ProtocolError, xmlrpc.client.Fault) as exc:
            raise self._unreachable(exc) from None
        if not isinstance(answer, dict) or answer.get("Status") not in ("Success", "Failure"):
            raise self._unreachable("not a XenAPI answer")
        if answer["Status"] == "Failure":
            raise refusal(answer.get("ErrorDescription"))
        return answer.get("Value")

    def call(self, method: str, *args):
        """One XenAPI call in the destination pool, with the session."""
        return self._rpc(method, self.session, *args)

    def login(self, username: str, password: str, originator: str = "xe"):
        self.session = self._rpc("session.login_with_password", username, password,
                                 "2.21", originator)

    def logout(self):
        try:
            self.call("session.logout")
        except ApiError:
            pass   # it expires on its own

    def _request(self, method: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection(self.master, self.port, timeout=self.timeout,
                                           context=_tls())
        try:
            conn.request(method, path, body, headers)
            reply = conn.getresponse()
            return reply.status, reply.read(MAX_REPLY)
        except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
            raise self._unreachable(exc) from None
        finally:
            conn.close()

    def import_metadata(self, archive: bytes, query: list[tuple[str, str]]) -> list[str]:
        """PUT the VM's metadata archive to the destination's /import_metadata under a
        task of ours there; the VMs it made (the task's result), or its error."""
        task = self.call("task.create", "cross-pool migration", "VM metadata")
        try:
            path = "/import_metadata?" + urlencode(
                [("session_id", self.session), ("task_id", task), *query])
            status, _ = self._request("PUT", path, archive, {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(len(archive))})
            status_now = self.call("task.get_status", task)
            if status_now != "success":
                raise refusal(self.call("task.get_error_info", task) or
                              ["INTERNAL_ERROR", f"/import_metadata answered HTTP {status}"])
            return _refs(self.call("task.get_result", task))
        finally:
            try:
                self.call("task.destroy", task)
            except ApiError:
                pass   # a task left behind expires with the session

    def internal(self, op: str, args: dict):
        """A `/pool_internal` call the destination coordinator accepts with a session."""
        body = json.dumps({"op": op, "args": args}).encode()
        status, data = self._request("POST", INTERNAL_PATH, body, {
            "Content-Type": "application/json", SESSION_HEADER: self.session})
        try:
            answer = json.loads(data)
        except ValueError:
            raise self._unreachable(f"HTTP {status}, not a pool answer") from None
        if not isinstance(answer, dict) or ("error" not in answer and "value" not in answer):
            raise self._unreachable(f"HTTP {status}, not a pool answer")
        if "error" in answer:
            raise refusal(answer["error"])
        return answer["value"]


def refusal(description) -> ApiError:
    """The other pool's XenAPI error, as it sent it."""
    if not isinstance(description, list) or not description:
        description = ["INTERNAL_ERROR", "the other pool failed without saying why"]
    return ApiError(*[str(x) for x in description])


def _bracket(address: str) -> str:
    return f"[{address}]" if ":" in address else address


def _refs(result) -> list[str]:
    """The references in a task's result: an XML-RPC <value><array>... fragment."""
    if not isinstance(result, str) or not result:
        return []
    try:
        (value,), _ = xmlrpc.client.loads(
            f"<methodResponse><params><param>{result}</param></params></methodResponse>")
    except (xmlrpc.client.ResponseError, ExpatError, ValueError, TypeError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]

