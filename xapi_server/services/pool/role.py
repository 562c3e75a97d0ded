"""This host's place in a pool, kept in `<data_dir>/pool.conf` as xapi keeps its own.

No file: the host coordinates a pool (of one, or of the hosts that joined it). A file
naming the coordinator: the host is a member. It then answers outside clients with
HOST_IS_SLAVE and serves only the coordinator's internal calls. The file also holds
the pool secret (what hosts prove to each other) and the coordinator's certificate
fingerprint, pinned at join. The coordinator's own secret is `<data_dir>/ptoken`.
A role change is written first and takes effect when the server restarts, as in xapi.

Where the records are follows the role (database_location): a member works on its own
SQLite copy in its data dir; a coordinator on the database it was configured with, or
on the pool database it took over from the previous coordinator (`pool_database`,
written by a change of coordinator: api/pool_coordinator.py).
"""
from __future__ import annotations

import json
import os
import re
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
    # where the pool database is: a coordinator's that it took over, or, on a
    # member, the one to take over in an emergency (a URL, or a copy's path)
    pool_database: str = ""

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


def database_location(settings, role: PoolRole) -> str:
    """What the store opens: a member its own copy (the pool database is the
    coordinator's alone, one writer), a coordinator that took the pool over that pool
    database, else what the settings say."""
    if role.is_member:
        return settings.db_path
    return role.pool_database or settings.database


def set_coordinator_secret(data_dir: str, secret: str):
    """This host now coordinates the pool whose secret this is (a new coordinator, a
    rotated secret): written whole and renamed into place."""
    path = os.path.join(data_dir, SECRET_FILE)
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def coordinator_secret(data_dir: str) -> str:
    """The secret of the pool this host coordinates, made on first use."""
    path = os.path.join(data_dir, SECRET_FILE)
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        pass
    secret = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return secret


def valid_secret(secret: str) -> bool:
    """xapi's check of a pool secret (nothing an HTTP header or cookie would break on)."""
    return re.fullmatch(r"[0-9a-f/-]{37,}", secret) is not None


def new_secret() -> str:
    """Three random UUIDs joined with '/', xapi's form (no character an HTTP header
    would refuse)."""
    return "/".join(str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
                    for _ in range(3))
