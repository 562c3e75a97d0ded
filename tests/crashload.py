"""Concurrent clients making mutating calls, a log of what the server acknowledged,
and the comparison of that log with what a restarted server holds.

Each client owns its objects (a VM, then per round a network, a VIF on it, a disk
and a VBD for it, and the previous round's ones destroyed), so its calls are applied
in the order it makes them and the log says exactly what must be there. The one
pool all clients share only gets one key per client in other_config. A call answered
with success is acknowledged: it must survive anything. A call cut off by the kill is
pending: it may or may not have happened, nothing else is allowed.

Used by tests/test_crash_writes.py and bench/bench_crash.py.
"""
from __future__ import annotations

import http.client
import itertools
import json
import re
import threading
import time
import xmlrpc.client
import xml.parsers.expat
from dataclasses import dataclass, field

import XenAPI

VIF_FIXED = {"MTU": "1500", "other_config": {}, "qos_algorithm_type": "",
             "qos_algorithm_params": {}, "MAC": ""}
VBD_FIXED = {"bootable": False, "mode": "RW", "type": "Disk", "empty": False,
             "other_config": {}, "qos_algorithm_type": "", "qos_algorithm_params": {}}
DISK_SIZE = 1 << 20
DISK_CLIENT_EVERY = 4     # every 4th client also makes and destroys disks
CLIENT_CLASSES = ("VM", "network", "VIF", "VDI", "VBD")   # what the clients make


class AckLog:
    """Append-only JSON lines: one per acknowledged call, then one per call that was
    in flight when the connection died ("acked": false)."""

    def __init__(self, path: str):
        self.path = path
        self.entries: list[dict] = []
        self._lock = threading.Lock()
        self._file = open(path, "a", buffering=1)

    def add(self, entry: dict):
        entry["t"] = round(time.monotonic(), 3)
        line = json.dumps(entry, sort_keys=True)
        with self._lock:
            self.entries.append(entry)
            self._file.write(line + "\n")

    def acked(self) -> int:
        return sum(1 for e in self.entries if e["acked"])

    def close(self):
        self._file.close()

    @staticmethod
    def read(path: str) -> list[dict]:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]


# The server died before or while answering (an empty body fails the XML parser).
_CONNECTION_ERRORS = (OSError, http.client.HTTPException, xmlrpc.client.ProtocolError,
                      EOFError, xml.parsers.expat.ExpatError)


class ServerGone(Exception):
    """The connection failed: the call in flight is pending."""


@dataclass(eq=False)   # threads must stay hashable
class Client(threading.Thread):
    number: int
    url: str
    session: str          # logged in by run_load: a login (scrypt) per client costs
    log: AckLog           # the server more than the whole load
    pool: str
    sr: str
    template: str
    tag: str = ""                                  # names start with it: runs apart
    failures: list = field(default_factory=list)   # API errors: never expected

    def __post_init__(self):
        threading.Thread.__init__(self, name=f"crash-client-{self.number}", daemon=True)

    def run(self):
        try:
            connection = XenAPI.Session(self.url, ignore_ssl=True)
            connection._session = self.session   # the SDK's own slot for the session ref
            self.x = connection.xenapi
            self._rounds()
        except ServerGone:
            pass
        except XenAPI.Failure as exc:
            self.failures.append(f"client {self.number}: {exc.details}")

    @property
    def name_prefix(self) -> str:
        return f"{self.tag}c{self.number}-"

    def call(self, entry: dict, fn, *args):
        """Make one mutating call; log it acknowledged, or pending if the server died."""
        entry["client"] = self.number
        try:
            result = fn(*args)
        except XenAPI.Failure:
            raise
        except _CONNECTION_ERRORS as exc:
            self.log.add({**entry, "acked": False, "error": type(exc).__name__})
            raise ServerGone() from None
        if entry.get("op") == "create":
            entry["ref"] = result
        self.log.add({**entry, "acked": True})
        return result

    def _rounds(self):
        x, c = self.x, self.number
        me = self.name_prefix
        vm_name = f"{me}vm"
        vm = self.call(_create("VM", name_label=vm_name), x.VM.clone, self.template, vm_name)
        self.call(_set("VM", vm, "is_a_template", False), x.VM.set_is_a_template, vm, False)
        self.call(_map_add("pool", self.pool, "other_config", f"crash-{me}", "1"),
                  x.pool.add_to_other_config, self.pool, f"crash-{me}", "1")
        previous = None
        for k in itertools.count():
            net_name = f"{me}net{k}"
            net = self.call(_create("network", name_label=net_name),
                            x.network.create, {"name_label": net_name, "other_config": {}})
            self.call(_map_add("network", net, "other_config", "round", str(k)),
                      x.network.add_to_other_config, net, "round", str(k))
            device = str(k % 2)   # this round's devices and the previous round's coexist
            vif_fields = {"VM": vm, "network": net, "device": device}
            vif = self.call(_create("VIF", **vif_fields), x.VIF.create,
                            {**VIF_FIXED, **vif_fields})
            disks = self._disk_round(k, vm, device) if c % DISK_CLIENT_EVERY == 0 else []
            self.call(_set("VM", vm, "name_description", f"round {k}"),
                      x.VM.set_name_description, vm, f"round {k}")
            self.call(_map_add("VM", vm, "other_config", f"round{k}", "done"),
                      x.VM.add_to_other_config, vm, f"round{k}", "done")
            if previous:
                for cls, ref in previous:   # children before parents
                    self.call({"op": "destroy", "cls": cls, "ref": ref},
                              getattr(x, cls).destroy, ref)
            previous = disks + [("VIF", vif), ("network", net)]

    def _disk_round(self, k, vm, device):
        """A disk and its VBD: the SR serialises its volume operations, so only some
        clients do this, or everybody would be queueing on the SR."""
        disk_name = f"{self.name_prefix}disk{k}"
        x = self.x
        vdi = self.call(_create("VDI", name_label=disk_name, SR=self.sr),
                        x.VDI.create, {"SR": self.sr, "virtual_size": str(DISK_SIZE),
                                       "type": "user", "sharable": False, "read_only": False,
                                       "other_config": {}, "name_label": disk_name})
        vbd_fields = {"VM": vm, "VDI": vdi, "userdevice": device}
        vbd = self.call(_create("VBD", **vbd_fields), x.VBD.create, {**VBD_FIXED, **vbd_fields})
        self.call(_set("VDI", vdi, "name_description", f"round {k}"),
                  x.VDI.set_name_description, vdi, f"round {k}")
        return [("VBD", vbd), ("VDI", vdi)]


def _create(cls, **fields):
    """A create and the (string) fields the new object must show."""
    return {"op": "create", "cls": cls, "fields": fields}


def _set(cls, ref, name, value):
    return {"op": "set", "cls": cls, "ref": ref, "field": name, "value": value}


def _map_add(cls, ref, name, key, value):
    return {"op": "map_add", "cls": cls, "ref": ref, "field": name, "key": key,
            "value": value}


def run_load(url: str, password: str, clients: int, log: AckLog, kill, kill_after_acks: int,
             timeout: float = 120.0, sessions: int = 10, tag: str = "") -> list[str]:
    """Start the clients (each on its own connection, sharing `sessions` sessions),
    call kill() once `kill_after_acks` calls were acknowledged (every client is
    mid-call then), wait for the clients; return API failures."""
    refs = []
    for j in range(sessions):
        s = XenAPI.Session(url, ignore_ssl=True)
        s.xenapi.login_with_password("root", password, "1.0", f"crash-load-{j}")
        refs.append(s._session)
    x = s.xenapi
    pool = x.pool.get_all()[0]
    sr = x.pool.get_default_SR(pool)
    template = x.VM.get_by_name_label("Other install media")[0]
    threads = [Client(i, url, refs[i % sessions], log, pool, sr, template, tag)
               for i in range(clients)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while log.acked() < kill_after_acks and time.monotonic() < deadline \
            and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    kill()
    for t in threads:
        t.join(30)
    return [f for t in threads for f in t.failures] + \
        [f"{t.name} still running 30 s after the kill" for t in threads if t.is_alive()]


# -- comparison -------------------------------------------------------------------------

@dataclass
class Expected:
    """What the acknowledged calls say must be there, and what a pending call may
    have changed on top."""
    objects: dict = field(default_factory=dict)      # (cls, ref) -> {field: value}
    maps: dict = field(default_factory=dict)         # (cls, ref, field) -> {key: value}
    destroyed: set = field(default_factory=set)      # (cls, ref)
    pending: dict = field(default_factory=dict)      # client -> its pending entry


def expected_from(entries: list[dict]) -> Expected:
    exp = Expected()
    for e in entries:
        if not e["acked"]:
            exp.pending[e["client"]] = e
            continue
        op, cls = e["op"], e["cls"]
        if op == "create":
            exp.objects[(cls, e["ref"])] = dict(e["fields"])
        elif op == "set":
            exp.objects.setdefault((cls, e["ref"]), {})[e["field"]] = e["value"]
        elif op == "map_add":
            exp.maps.setdefault((cls, e["ref"], e["field"]), {})[e["key"]] = e["value"]
        elif op == "destroy":
            exp.objects.pop((cls, e["ref"]), None)
            exp.destroyed.add((cls, e["ref"]))
    return exp


def compare(entries: list[dict], records: dict[str, dict[str, dict]], tag: str = "") -> list[str]:
    """Problems between an acknowledgement log (of a run with this tag) and a server's
    records ({class: get_all_records()}): missing acknowledged writes, objects back
    from the dead, objects nobody asked for."""
    exp = expected_from(entries)
    pending = {(p["cls"], p.get("ref")): p for p in exp.pending.values()}
    problems = []
    for (cls, ref), fields in exp.objects.items():
        rec = records[cls].get(ref)
        if rec is None:
            if (cls, ref) not in pending:   # a pending destroy may have gone through
                problems.append(f"acknowledged {cls} {ref} is missing")
            continue
        for name, value in fields.items():
            maybe = pending.get((cls, ref))
            if rec[name] != _wire(value) and not (
                    maybe and maybe.get("field") == name and rec[name] == _wire(maybe["value"])):
                problems.append(f"{cls} {ref}: {name} is {rec[name]!r}, acknowledged "
                                f"{value!r}")
    for (cls, ref, name), pairs in exp.maps.items():
        rec = records[cls].get(ref)
        if rec is None:
            continue   # reported above when it matters
        for key, value in pairs.items():
            if rec[name].get(key) != value:
                problems.append(f"{cls} {ref}: {name}[{key!r}] is {rec[name].get(key)!r}, "
                                f"acknowledged {value!r}")
    for cls, ref in exp.destroyed:
        if ref in records[cls]:
            problems.append(f"{cls} {ref} was destroyed (acknowledged) but is back")
    return problems + _unexpected_objects(exp, records, tag)


def _unexpected_objects(exp: Expected, records, tag: str) -> list[str]:
    """Objects of the clients' that no acknowledged create explains: only the one
    create each client may have had in flight can account for one."""
    known = set(exp.objects) | exp.destroyed
    owner_client = {ref: _client_of(rec["name_label"], tag)
                    for ref, rec in records["VM"].items()}
    problems = []
    for cls in CLIENT_CLASSES:
        for ref, rec in records[cls].items():
            if (cls, ref) in known:
                continue
            client = _client_of(rec["name_label"], tag) if "name_label" in rec else \
                owner_client.get(rec["VM"])
            if client is None:
                continue   # not made by the clients (templates, the host's networks)
            maybe = exp.pending.get(client)
            if maybe and maybe["op"] == "create" and maybe["cls"] == cls:
                continue
            problems.append(f"{cls} {ref} ({rec.get('name_label', '')}) of client {client} "
                            f"was never acknowledged")
    return problems


def _client_of(name: str, tag: str):
    """The client number in a name made by a client of the run tagged `tag`."""
    match = re.fullmatch(rf"{re.escape(tag)}c(\d+)-.*", name)
    return int(match.group(1)) if match else None


def _wire(value):
    """A value as the XML-RPC API returns it (bools stay bools, ints become strings)."""
    if isinstance(value, bool):
        return value
    return str(value) if isinstance(value, int) else value


def server_records(x) -> dict[str, dict[str, dict]]:
    return {cls: getattr(x, cls).get_all_records() for cls in (*CLIENT_CLASSES, "pool")}
