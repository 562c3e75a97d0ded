"""This host's place in a pool, kept in `<data_dir>/pool.conf` as xapi keeps its own.

No file: the host coordinates a pool (of one, or of the hosts that joined it). A file
naming the coordinator: the host is a member. It then answers outside clients with
HOST_IS_SLAVE and serves only the coordinator's internal calls. The file also holds
the pool secret (what hosts prove to each other) and the coordinator's certificate
fingerprint, pinned at join. The coordinator's own secret is `<data_dir>/ptoken`.
A role change is written first and takes effect when the server restarts, as in xapi.
"""
from __future__ import annotations

import json
import os
import secrets
import uuid
from dataclasses import asdict, dataclass

ROLE_FILE, SECRET_FILE = "pool.conf", "ptoken"


@dataclass
class PoolRole:
    master_address: str = ""       # "" = this host is the coordinator
    secret: str = ""               # the pool secret (a member's copy of it)
    master_fingerprint: str = ""   # SHA-256 of the coordinator's certificate, AB:CD:...
    host_uuid: str = ""            # this host's uuid in the pool database

    @property
    def is_member(self) -> bool:
        return bool(self.master_address)


def load(data_dir: str) -> PoolRole:
    try:
        with open(os.path.join(data_dir, ROLE_FILE)) as f:
            fields = json.load(f)
    except FileNotFoundError:
        return PoolRole()
    return PoolRole(**{k: str(v) for k, v in fields.items()
                       if k in PoolRole.__dataclass_fields__})


def save(data_dir: str, role: PoolRole):
    """Written whole and renamed into place: a crash leaves the old role or the new."""
    path = os.path.join(data_dir, ROLE_FILE)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(role), f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def forget(data_dir: str):
    """Back to standalone: no role file, no copy of anyone's secret."""
    for name in (ROLE_FILE, SECRET_FILE):
        try:
            os.unlink(os.path.join(data_dir, name))
        except FileNotFoundError:
            pass


def coordinator_secret(data_dir: str) -> str:
    """The secret of the pool this host coordinates, made on first use: three random
    UUIDs joined with '/', xapi's form (no character an HTTP header would refuse)."""
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    secret = "/".join(str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
                      for _ in range(3))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret
