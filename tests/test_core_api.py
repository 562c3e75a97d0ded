"""The core API through the official XenAPI SDK (XML-RPC) against the real server,
with its records in SQLite and again in PostgreSQL (pg_server.py)."""
import pytest
import XenAPI

from pg_server import server, store_backend  # noqa: F401 (fixtures: both backends)
from serverproc import ROOT_PASSWORD
from sdk_failures import failure


def test_sdk_walkthrough(server):
    session = XenAPI.Session(server.url, ignore_ssl=True)
    session.xenapi.login_with_password("root", ROOT_PASSWORD, "1.0", "pytest")
    x = session.xenapi
    pools = x.pool.get_all()
    assert len(pools) == 1
    pool = x.pool.get_record(pools[0])
    master = x.pool.get_master(pools[0])
    assert pool["master"] == master
    host = x.host.get_record(master)
    assert host["API_version_major"] == "2" and host["API_version_minor"] == "21"
    assert host["hostname"] and host["address"]
    assert int(host["cpu_info"]["cpu_count"]) >= 1
    assert "product_version" in host["software_version"]
    assert x.session.get_this_host(session._session) == master
    metrics = x.host_metrics.get_record(host["metrics"])
    assert int(metrics["memory_total"]) > int(metrics["memory_free"]) > 0
    assert len(host["host_CPUs"]) == int(host["cpu_info"]["cpu_count"])
    assert isinstance(x.VM.get_all_records(), dict)
    assert session.API_version == "2.21"
    old = session._session
    session.xenapi.session.logout()
    # The SDK would log in again on SESSION_INVALID, so look at the raw reply.
    raw = session._ServerProxy__request("pool.get_all", (old,))
    assert raw == {"Status": "Failure", "ErrorDescription": ["SESSION_INVALID", old]}


def test_login_failure_names_user(server):
    session = XenAPI.Session(server.url, ignore_ssl=True)
    details = failure(session.xenapi.login_with_password, "root", "wrong")
    assert details[:2] == ["SESSION_AUTHENTICATION_FAILED", "root"] and len(details) == 3
    details = failure(session.xenapi.login_with_password, "nobody", "x")
    assert details[:2] == ["SESSION_AUTHENTICATION_FAILED", "nobody"]


def test_error_codes_and_parameters(xapi):
    assert failure(xapi.VM.get_record, "OpaqueRef:bogus") == \
        ["HANDLE_INVALID", "VM", "OpaqueRef:bogus"]
    assert failure(xapi.VM.get_by_uuid, "nope") == ["UUID_INVALID", "VM", "nope"]
    assert failure(xapi.VM.no_such) == ["MESSAGE_METHOD_UNKNOWN", "VM.no_such"]
    assert failure(xapi.VM.get_record) == \
        ["MESSAGE_PARAMETER_COUNT_MISMATCH", "VM.get_record", "1", "0"]
    pool = xapi.pool.get_all()[0]
    assert failure(xapi.pool.set_name_label, pool, 42) == ["FIELD_TYPE_ERROR", "value"]
    assert failure(xapi.pool.set_ha_allow_overcommit, pool, "yes") == \
        ["FIELD_TYPE_ERROR", "value"]
    host = xapi.pool.get_master(pool)
    assert failure(xapi.host.set_display, host, "sideways") == \
        ["INVALID_VALUE", "value", "sideways"]
    assert failure(xapi.pool.set_default_SR, pool, "OpaqueRef:nope") == \
        ["HANDLE_INVALID", "SR", "OpaqueRef:nope"]
    # RO fields have no setter on the wire.
    assert failure(xapi.pool.set_master, pool, host) == \
        ["MESSAGE_METHOD_UNKNOWN", "pool.set_master"]


def test_generic_getters_and_setters(xapi):
    pool = xapi.pool.get_all()[0]
    xapi.pool.set_name_label(pool, "lab pool")
    assert xapi.pool.get_name_label(pool) == "lab pool"
    assert xapi.pool.get_by_uuid(xapi.pool.get_uuid(pool)) == pool
    xapi.pool.add_to_other_config(pool, "k", "v")
    assert failure(xapi.pool.add_to_other_config, pool, "k", "v") == \
        ["MAP_DUPLICATE_KEY", "pool", "other_config", pool, "k"]
    assert xapi.pool.get_other_config(pool)["k"] == "v"
    xapi.pool.remove_from_other_config(pool, "k")
    xapi.pool.remove_from_other_config(pool, "k")  # absent key: no-op, as xapi
    assert "k" not in xapi.pool.get_other_config(pool)
    xapi.pool.add_tags(pool, "a")
    xapi.pool.add_tags(pool, "a")
    assert xapi.pool.get_tags(pool) == ["a"]
    xapi.pool.remove_tags(pool, "a")
    assert xapi.pool.get_tags(pool) == []
    host = xapi.pool.get_master(pool)
    assert xapi.host.get_by_name_label(xapi.host.get_name_label(host)) == [host]
    assert xapi.host.get_by_name_label("no such host") == []


def test_get_all_records_where(xapi):
    pool = xapi.pool.get_all()[0]
    host = xapi.pool.get_master(pool)
    name = xapi.host.get_name_label(host)
    where = xapi.host.get_all_records_where
    assert list(where(f'field "name__label" = "{name}"')) == [host]
    assert where('field "name__label" = "nope"') == {}
    assert list(where('field "enabled" = "true" and not field "name__label" = "x"')) == [host]
    assert list(where('true')) == [host]
    assert where('false or (field "API_version_major" = "3")') == {}
    assert list(where('field "API_version_major" = "2"')) == [host]
    assert where('field "no_such_field" = "x"') == {}
    details = failure(where, 'field "name__label" =')
    assert details[0] == "INVALID_VALUE" and details[1] == 'field "name__label" ='


def test_int_encoding_and_datetimes(xapi, http):
    host = xapi.pool.get_master(xapi.pool.get_all()[0])
    assert isinstance(xapi.host.get_API_version_major(host), str)  # ints travel as strings
    servertime = xapi.host.get_servertime(host)
    assert str(servertime).endswith("Z") and "T" in str(servertime)


def test_async_task_success_and_failure(xapi):
    pool = xapi.pool.get_all()[0]
    details = failure(xapi.Async.pool.get_name_label, pool)
    assert details == ["MESSAGE_METHOD_UNKNOWN", "pool.get_name_label"]
    mine = xapi.task.create("client task", "made by the test")
    record = xapi.task.get_record(mine)
    assert record["status"] == "pending" and record["name_label"] == "client task"
    xapi.task.destroy(mine)
    assert failure(xapi.task.get_record, mine) == ["HANDLE_INVALID", "task", mine]


def test_server_certificate_and_files(server):
    import os
    import ssl
    import stat

    from cryptography import x509
    key = os.path.join(server.data_dir, "certs", "server.key")
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    pem = ssl.get_server_certificate(("127.0.0.1", server.port))
    cert = x509.load_pem_x509_certificate(pem.encode())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def test_tls_below_1_2_refused(server):
    import socket
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            ctx.wrap_socket(raw).do_handshake()


def test_subject_identifiers_of_local_logins(xapi):
    assert xapi.session.get_all_subject_identifiers() == []
