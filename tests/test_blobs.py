"""Blobs (api/blob.py, services/blobs.py, http/blob.py) through the real server:
create_new_blob on pool, host, SR, network and VM; the bytes through PUT/GET /blob
with a session; a public blob read without one, a private one refused; RBAC on PUT;
the size cap; bytes that survive kill -9 right after the PUT answered; destroy and
an owner's destroy take the bytes away."""
import os
import ssl
import urllib.error
import urllib.request

import pytest
import XenAPI

from serverproc import ServerProcess, add_local_user

TLS = ssl._create_unverified_context()
CAP = 4096


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    p = ServerProcess(str(tmp_path_factory.mktemp("xapi-blobs")),
                      env={"XAPI_MAX_BLOB_BYTES": str(CAP)}).start()
    yield p
    p.stop()


@pytest.fixture
def x(proc):
    session = proc.session()
    yield session.xenapi
    session.xenapi.session.logout()


def http(proc, method, query, body=None, session=None):
    url = f"{proc.url}/blob?{query}" + (f"&session_id={session}" if session else "")
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Connection": "close"})
    try:
        with urllib.request.urlopen(req, context=TLS, timeout=30) as r:
            return r.status, r.headers.get("content-type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("content-type"), e.read()


def test_blob_on_every_owner_class_and_its_bytes(proc):
    session = proc.session()
    x, ref = session.xenapi, session._session
    pool, host = x.pool.get_all()[0], x.host.get_all()[0]
    sr, net = x.SR.get_all()[0], x.network.get_all()[0]
    template = next(r for r, rec in x.VM.get_all_records().items() if rec["is_a_template"])
    vm = x.VM.clone(template, "blob-owner")
    made = {"pool": x.pool.create_new_blob(pool, "notes", "text/plain", False),
            "host": x.host.create_new_blob(host, "notes", "text/plain", False),
            "SR": x.SR.create_new_blob(sr, "notes", "text/plain", False),
            "network": x.network.create_new_blob(net, "notes", "text/plain", False),
            "VM": x.VM.create_new_blob(vm, "notes", "text/plain", False)}
    owners = {"pool": pool, "host": host, "SR": sr, "network": net, "VM": vm}
    for cls, blob in made.items():
        assert getattr(x, cls).get_blobs(owners[cls]) == {"notes": blob}
        rec = x.blob.get_record(blob)
        assert (rec["name_label"], rec["mime_type"], rec["size"], rec["public"]) == \
            ("notes", "text/plain", "0", False)
    # the same name twice on one object: as xapi's add_to_blobs
    with pytest.raises(XenAPI.Failure) as caught:
        x.pool.create_new_blob(pool, "notes", "text/plain", False)
    assert caught.value.details[0] == "MAP_DUPLICATE_KEY"

    blob = made["host"]
    before = x.blob.get_last_updated(blob)
    assert http(proc, "PUT", f"ref={blob}", b"hello blob", ref)[0] == 200
    assert x.blob.get_size(blob) == "10"
    assert x.blob.get_last_updated(blob) >= before
    status, ctype, body = http(proc, "GET", f"ref={blob}", session=ref)
    assert (status, ctype, body) == (200, "text/plain", b"hello blob")
    uuid = x.blob.get_uuid(blob)
    assert http(proc, "GET", f"uuid={uuid}", session=ref)[2] == b"hello blob"
    assert open(os.path.join(proc.data_dir, "blobs", uuid), "rb").read() == b"hello blob"

    # private: no session, no bytes; public: anyone reads
    assert http(proc, "GET", f"ref={blob}")[0] == 401
    x.blob.set_public(blob, True)
    assert http(proc, "GET", f"ref={blob}")[2] == b"hello blob"
    assert http(proc, "PUT", f"ref={blob}", b"x")[0] == 401     # writing still needs one

    # bad requests
    assert http(proc, "GET", "", session=ref)[0] == 400
    assert http(proc, "GET", "ref=OpaqueRef:nonsense", session=ref)[0] == 404
    assert http(proc, "PUT", f"ref={blob}", b"y" * (CAP + 1), ref)[0] == 413
    assert http(proc, "GET", f"ref={blob}", session=ref)[2] == b"hello blob"

    # destroy: record, map entry and bytes go
    x.blob.destroy(blob)
    assert x.host.get_blobs(host) == {}
    assert not os.path.exists(os.path.join(proc.data_dir, "blobs", uuid))
    assert http(proc, "GET", f"ref={blob}", session=ref)[0] == 404

    # an owner destroyed: its blob goes at the next blob made
    vm_blob_uuid = x.blob.get_uuid(made["VM"])
    assert http(proc, "PUT", f"ref={made['VM']}", b"vm data", ref)[0] == 200
    x.VM.destroy(vm)
    x.pool.create_new_blob(pool, "later", "text/plain", True)
    assert made["VM"] not in x.blob.get_all()
    assert not os.path.exists(os.path.join(proc.data_dir, "blobs", vm_blob_uuid))
    session.xenapi.session.logout()


def test_put_needs_vm_power_admin(proc, x):
    add_local_user(x, "reader", "read-only", "reader-pw")
    blob = x.pool.create_new_blob(x.pool.get_all()[0], "ro-test", "application/json", False)
    ro = XenAPI.Session(proc.url, ignore_ssl=True)
    ro.xenapi.login_with_password("reader", "reader-pw", "1.0", "tests")
    try:
        assert http(proc, "PUT", f"ref={blob}", b"{}", ro._session)[0] == 403
        assert http(proc, "GET", f"ref={blob}", session=ro._session)[0] == 200
        with pytest.raises(XenAPI.Failure) as caught:
            ro.xenapi.pool.create_new_blob(x.pool.get_all()[0], "no", "text/plain", False)
        assert caught.value.details[0] == "RBAC_PERMISSION_DENIED"
    finally:
        ro.xenapi.session.logout()


def test_acknowledged_bytes_survive_kill(tmp_path):
    p = ServerProcess(str(tmp_path)).start()
    try:
        session = p.session()
        x = session.xenapi
        blob = x.host.create_new_blob(x.host.get_all()[0], "durable", "text/plain", True)
        assert http(p, "PUT", f"ref={blob}", b"kept across a crash", session._session)[0] \
            == 200
        p.kill()
        p.start()
        x = p.session().xenapi
        assert x.blob.get_size(blob) == "19"
        assert http(p, "GET", f"ref={blob}")[2] == b"kept across a crash"
    finally:
        p.stop()
