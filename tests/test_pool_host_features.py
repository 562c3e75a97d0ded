"""The pool/host/SR messages of issue 15 that answer from this host's real state or
with xapi's error for what is not set up (api/licensing.py, ha.py, external_auth.py,
host_admin.py, host_clock.py, host_info.py, pool_admin.py, pool_trust.py,
pool_updates.py, sr_features.py, message.destroy_all), through the real server. The
commands that would change this machine (ssh, the clock, the agent) are harmless ones
writing marker files here."""
import base64
import datetime
import io
import os
import socket
import tarfile
import time
import xmlrpc.client

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from serverproc import ServerProcess, free_port
from sdk_failures import failure


@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    data = tmp_path_factory.mktemp("xapi-features")
    marks = data / "marks"
    marks.mkdir()
    p = ServerProcess(str(data / "db"), env={
        "XAPI_SSH_ENABLE_COMMAND": f"touch {marks}/ssh-on",
        "XAPI_SSH_DISABLE_COMMAND": f"touch {marks}/ssh-off",
        "XAPI_SET_TIME_COMMAND": f"sh -c 'echo {{time}} > {marks}/time'",
        "XAPI_CONSOLE_TIMEOUT_PROFILE": str(marks / "tmout.sh")}).start()
    p.marks = marks
    yield p
    p.stop()


@pytest.fixture
def x(proc):
    session = proc.session()
    yield session.xenapi
    session.xenapi.session.logout()


def test_licensing_is_the_free_edition(x):
    host, pool = x.host.get_all()[0], x.pool.get_all()[0]
    assert x.pool.get_license_state(pool) == {"edition": "free", "expiry": "never"}
    assert failure(x.host.apply_edition, host, "enterprise", False) == \
        ["INVALID_EDITION", "enterprise"]
    assert failure(x.pool.apply_edition, pool, "premium") == ["INVALID_EDITION", "premium"]
    x.pool.apply_edition(pool, "free")
    assert x.host.get_edition(host) == "free"
    assert x.host.get_license_params(host)["expiry"] == "never"
    assert failure(x.host.license_add, host, "%%% not base64") == \
        ["LICENSE_PROCESSING_ERROR"]
    assert failure(x.host.license_apply, host, base64.b64encode(b"<lic/>").decode()) == \
        ["LICENSE_PROCESSING_ERROR"]
    x.host.license_remove(host)
    assert x.host.get_edition(host) == "free"


def test_ha_needs_a_statefile_sr(x):
    host = x.host.get_all()[0]
    sr = next(r for r, rec in x.SR.get_all_records().items() if rec["PBDs"])
    assert failure(x.SR.assert_can_host_ha_statefile, sr) == \
        ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert failure(x.pool.enable_ha, [], {}) == ["CANNOT_CREATE_STATE_FILE"]
    assert failure(x.pool.enable_ha, [sr], {}) == ["SR_OPERATION_NOT_SUPPORTED", sr]
    assert not x.pool.get_ha_enabled(x.pool.get_all()[0])
    assert failure(x.pool.disable_ha) == ["HA_NOT_ENABLED"]
    assert failure(x.host.emergency_ha_disable, False) == ["HA_NOT_ENABLED"]
    assert failure(x.pool.enable_redo_log, sr) == ["CANNOT_CREATE_STATE_FILE"]
    x.pool.disable_redo_log()
    assert failure(x.SR.assert_supports_database_replication, sr)[0] in \
        ("SR_NOT_SHARED", "SR_OPERATION_NOT_SUPPORTED")
    x.SR.disable_database_replication(sr)
    x.pool.ha_prevent_restarts_for("30")
    # the planner: one host, so no host may fail; a VM's plan names where it would go
    assert x.pool.ha_compute_max_host_failures_to_tolerate() == "0"
    assert x.pool.ha_compute_hypothetical_max_host_failures_to_tolerate({}) == "0"
    assert x.pool.ha_failover_plan_exists("0")
    template = next(r for r, rec in x.VM.get_all_records().items() if rec["is_a_template"])
    vm = x.VM.clone(template, "ha-plan")
    try:
        x.VM.set_memory_limits(vm, "1048576", "1048576", "1048576", "1048576")
        assert x.pool.ha_compute_vm_failover_plan([], [vm]) == {vm: {"host": host}}
        assert x.pool.ha_compute_vm_failover_plan([host], [vm]) == \
            {vm: {"error_code": "HOST_NOT_ENOUGH_FREE_MEMORY"}}
        x.VM.set_memory_limits(vm, *["1099511627776"] * 4)     # 1 TiB: fits nowhere
        assert x.pool.ha_compute_vm_failover_plan([], [vm]) == \
            {vm: {"error_code": "HOST_NOT_ENOUGH_FREE_MEMORY"}}
    finally:
        x.VM.destroy(vm)


def test_external_auth(x):
    host, pool = x.host.get_all()[0], x.pool.get_all()[0]
    assert failure(x.host.enable_external_auth, host, {}, "corp", "LDAP") == \
        ["AUTH_UNKNOWN_TYPE", "LDAP"]
    assert failure(x.pool.enable_external_auth, pool, {"user": "a", "pass": "b"},
                   "corp.example", "AD")[0] == "AUTH_ENABLE_FAILED"
    assert x.host.get_external_auth_type(host) == ""
    x.host.disable_external_auth(host, {}, False)          # off already: nothing to do
    x.pool.disable_external_auth(pool, {})
    assert failure(x.host.external_auth_set_ldaps, host, True, False) == ["AUTH_IS_DISABLED"]
    before = len(x.message.get_all())
    x.pool.detect_nonhomogeneous_external_auth(pool)       # one host: homogeneous
    assert len(x.message.get_all()) == before


def test_ssh_display_and_console_timeout(proc, x):
    host, pool = x.host.get_all()[0], x.pool.get_all()[0]
    x.host.disable_ssh(host)
    assert (proc.marks / "ssh-off").exists() and not x.host.get_ssh_enabled(host)
    x.pool.enable_ssh(pool)
    assert (proc.marks / "ssh-on").exists() and x.host.get_ssh_enabled(host)
    x.pool.set_ssh_enabled_timeout(pool, "600")
    assert x.host.get_ssh_enabled_timeout(host) == "600"
    assert failure(x.pool.set_ssh_enabled_timeout, pool, "-1")[0] == "INVALID_VALUE"
    x.pool.set_ssh_auto_mode(pool, True)
    assert x.host.get_ssh_auto_mode(host)
    x.pool.set_console_idle_timeout(pool, "900")
    assert x.host.get_console_idle_timeout(host) == "900"
    assert "TMOUT=900" in (proc.marks / "tmout.sh").read_text()
    x.pool.set_console_idle_timeout(pool, "0")
    assert not (proc.marks / "tmout.sh").exists()
    assert x.host.get_display(host) == "enabled"
    assert x.host.disable_display(host) == "disable_on_reboot"
    assert x.host.enable_display(host) == "enabled"
    assert x.host.disable_display(host) == "disable_on_reboot"
    x.host.disable_display(host)
    assert x.host.get_display(host) == "disable_on_reboot"
    x.host.enable_display(host)


def test_clock(proc, x):
    host = x.host.get_all()[0]
    zones = x.host.list_timezones(host)
    assert "UTC" in zones and "Europe/Paris" in zones and not any(
        z.startswith(("posix/", "right/")) for z in zones)
    assert isinstance(x.host.get_ntp_synchronized(host), bool)
    assert x.host.get_sched_gran(host) == "cpu"
    x.host.set_sched_gran(host, "cpu")
    assert failure(x.host.set_sched_gran, host, "core")[0] == "OPERATION_NOT_ALLOWED"
    when = xmlrpc.client.DateTime("20300102T03:04:05Z")
    assert failure(x.host.set_servertime, host, when) == \
        ["NOT_ALLOWED_WHEN_NTP_IS_ENABLED", host]
    x.host.set_ntp_mode(host, "Disabled")
    try:
        x.host.set_servertime(host, when)
        assert (proc.marks / "time").read_text().strip() == "2030-01-02T03:04:05Z"
    finally:
        x.host.set_ntp_mode(host, "Factory")


def _ca_pem(name: str) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crl = (x509.CertificateRevocationListBuilder().issuer_name(subject)
           .last_update(now).next_update(now + datetime.timedelta(days=1))
           .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            crl.public_bytes(serialization.Encoding.PEM).decode())


def test_trusted_certificates_and_crls(proc, x):
    cert, crl = _ca_pem("test-ca")
    x.pool.install_ca_certificate("corp-ca.pem", cert)
    assert x.pool.certificate_list() == ["corp-ca.pem"]
    recs = [r for r in x.Certificate.get_all_records().values() if r["name"] == "corp-ca.pem"]
    assert len(recs) == 1 and recs[0]["type"] == "ca"
    assert failure(x.pool.certificate_install, "corp-ca.pem", cert) == \
        ["CERTIFICATE_ALREADY_EXISTS", "corp-ca.pem"]
    assert failure(x.pool.certificate_install, "../etc", cert) == \
        ["CERTIFICATE_NAME_INVALID", "../etc"]
    assert failure(x.pool.certificate_install, "junk.pem", "not a pem") == \
        ["CERTIFICATE_CORRUPT", "junk.pem"]
    x.pool.crl_install("corp.crl", crl)
    assert x.pool.crl_list() == ["corp.crl"]
    assert failure(x.pool.crl_install, "bad.crl", cert) == ["CRL_CORRUPT", "bad.crl"]
    x.pool.crl_uninstall("corp.crl")
    assert failure(x.pool.crl_uninstall, "corp.crl") == ["CRL_DOES_NOT_EXIST", "corp.crl"]
    x.pool.certificate_sync()
    x.pool.uninstall_ca_certificate("corp-ca.pem", False)
    assert x.pool.certificate_list() == []
    assert not any(r["name"] == "corp-ca.pem"
                   for r in x.Certificate.get_all_records().values())
    assert failure(x.pool.certificate_uninstall, "corp-ca.pem") == \
        ["CERTIFICATE_DOES_NOT_EXIST", "corp-ca.pem"]
    pool = x.pool.get_all()[0]
    x.pool.install_trusted_certificate(pool, False, cert, [])
    peer = next(r for r, rec in x.Certificate.get_all_records().items()
                if rec["type"] == "pinned")
    x.pool.uninstall_trusted_certificate(pool, peer)
    server_cert = next(r for r, rec in x.Certificate.get_all_records().items()
                       if rec["type"] == "host")
    assert failure(x.pool.uninstall_trusted_certificate, pool, server_cert)[0] == \
        "OPERATION_NOT_ALLOWED"


def test_updates_and_pool_settings(x):
    pool, host = x.pool.get_all()[0], x.host.get_all()[0]
    assert failure(x.pool.sync_updates, pool, False, "", "", "", "") == \
        ["NO_REPOSITORY_ENABLED"]
    assert failure(x.pool.check_update_readiness, pool, False) == ["NO_REPOSITORY_ENABLED"]
    assert failure(x.host.apply_updates, host, "abc") == ["NO_REPOSITORY_ENABLED"]
    assert failure(x.pool.add_repository, pool, "OpaqueRef:none")[0] == "HANDLE_INVALID"
    assert failure(x.pool.configure_repository_proxy, pool, "ftp://p", "", "") == \
        ["INVALID_REPOSITORY_PROXY_URL", "ftp://p"]
    assert failure(x.pool.configure_repository_proxy, pool, "http://proxy:3128", "u", "") \
        == ["INVALID_REPOSITORY_PROXY_CREDENTIAL"]
    x.pool.configure_repository_proxy(pool, "http://proxy:3128", "u", "secret")
    rec = x.pool.get_record(pool)
    assert (rec["repository_proxy_url"], rec["repository_proxy_username"]) == \
        ("http://proxy:3128", "u")
    assert "secret" not in repr(rec)
    x.pool.disable_repository_proxy(pool)
    assert x.pool.get_repository_proxy_url(pool) == ""
    assert failure(x.pool.configure_update_sync, pool, "weekly", "7") == \
        ["INVALID_UPDATE_SYNC_DAY", "7"]
    x.pool.configure_update_sync(pool, "weekly", "3")
    assert (x.pool.get_update_sync_frequency(pool), x.pool.get_update_sync_day(pool)) == \
        ("weekly", "3")
    x.pool.reset_telemetry_uuid(pool)
    x.pool.add_to_guest_agent_config(pool, "auto_update_enabled", "true")
    assert failure(x.pool.add_to_guest_agent_config, pool, "auto_update_url", "nope")[0] \
        == "INVALID_VALUE"
    assert failure(x.pool.add_to_guest_agent_config, pool, "other", "1")[0] == \
        "INVALID_VALUE"
    assert x.pool.get_guest_agent_config(pool) == {"auto_update_enabled": "true"}
    x.pool.remove_from_guest_agent_config(pool, "auto_update_enabled")
    assert x.pool.get_guest_agent_config(pool) == {}
    x.pool.enable_tls_verification()
    assert x.pool.get_tls_verification_enabled(pool)
    x.pool.disable_ssl_legacy(pool)
    assert not x.host.get_ssl_legacy(host)
    assert failure(x.pool.enable_ssl_legacy, pool) == ["MESSAGE_REMOVED"]
    assert failure(x.pool.test_archive_target, pool, {}) == ["MESSAGE_REMOVED"]
    assert failure(x.host.set_cpu_features, host, "x") == ["MESSAGE_REMOVED"]
    assert failure(x.pool.initialize_wlb, "no-port", "", "", "", "") == \
        ["WLB_URL_INVALID", "no-port"]
    assert failure(x.host.power_on, host) == ["HOST_IS_LIVE", host]
    x.pool.disable_client_certificate_auth(pool)
    # Secure Boot readiness from the pool's UEFI certificates (a base64 tar)
    assert x.pool.get_guest_secureboot_readiness(pool) == "not_ready"
    x.pool.set_custom_uefi_certificates(pool, _uefi_tar("PK.auth", "KEK.auth", "db.auth"))
    assert x.pool.get_guest_secureboot_readiness(pool) == "ready_no_dbx"
    x.pool.set_custom_uefi_certificates(pool, _uefi_tar("PK.auth", "KEK.auth", "db.auth",
                                                        "dbx.auth"))
    assert x.pool.get_guest_secureboot_readiness(pool) == "ready"


def _uefi_tar(*names) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"auth"))
    return base64.b64encode(buffer.getvalue()).decode()


def test_host_information(proc, x):
    host = x.host.get_all()[0]
    methods = x.host.list_methods()
    assert "VM.start" in methods and "host.list_methods" in methods
    agents = x.host.get_tracked_user_agents(host)
    assert "xmlrpc" in agents or any("python" in a.lower() for a in agents), agents
    assert x.host.get_uncooperative_resident_VMs(host) == []
    assert "<system-status-capabilities>" in x.host.get_system_status_capabilities(host)
    x.host.refresh_pack_info(host)
    assert x.host.get_software_version(host)["linux"] == os.uname().release
    x.host.backup_rrds(host, 0.0)
    x.host.sync_data(host)
    x.host.rescan_drivers(host)
    x.host.apply_recommended_guidances(host)
    assert failure(x.host.bugreport_upload, host, "file:///etc/passwd", {})[0] == \
        "INVALID_VALUE"
    assert failure(x.host.send_debug_keys, host, "q")[0] == "NOT_IMPLEMENTED"
    sr = next(r for r, rec in x.SR.get_all_records().items() if rec["PBDs"])
    assert failure(x.host.enable_local_storage_caching, host, sr) == ["HOST_NOT_DISABLED"]
    x.pool.enable_local_storage_caching(x.pool.get_all()[0])     # no SR can: skipped
    assert x.host.get_local_cache_sr(host) == "OpaqueRef:NULL"
    assert failure(x.SR.make, host, {}, "0", "", "", "file", "", {}) == \
        ["MESSAGE_DEPRECATED"]


def test_message_destroy_all(x):
    pool_uuid = x.pool.get_uuid(x.pool.get_all()[0])
    for priority in ("1", "5", "5"):
        x.message.create("TEST_MSG", priority, "Pool", pool_uuid, "body")
    assert failure(x.message.destroy_all, {"priorty": "5"})[0] == "INVALID_VALUE"
    assert failure(x.message.destroy_all, {"before": "yesterday"})[0] == "INVALID_VALUE"
    x.message.destroy_all({"priority": "5", "before": "20991231T00:00:00Z"})
    left = [m for m in x.message.get_all_records().values() if m["name"] == "TEST_MSG"]
    assert [m["priority"] for m in left] == ["1"]
    x.message.destroy_all({"after": "2000-01-01T00:00:00"})
    assert x.message.get_all() == []


def test_local_root_only_and_db_file(proc, x):
    assert failure(x.session.create_from_db_file, "/nonexistent.db")[0] == "INTERNAL_ERROR"
    assert failure(x.session.create_from_db_file, __file__)[0] == "NOT_IMPLEMENTED"
    x.host.emergency_disable_tls_verification()
    assert not x.host.get_tls_verification_enabled(x.host.get_all()[0])
    x.host.emergency_reenable_tls_verification()
    x.host.emergency_clear_mandatory_guidance()
    time.sleep(0)


def test_https_only_closes_the_redirect_port(tmp_path):
    port = free_port()
    p = ServerProcess(str(tmp_path), env={"XAPI_HTTP_REDIRECT_PORT": str(port)}).start()

    def ask() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
            return s.recv(4096)
    try:
        x = p.session().xenapi
        pool = x.pool.get_all()[0]
        assert ask().startswith(b"HTTP/1.1 301")
        x.pool.set_https_only(pool, True)
        assert x.host.get_https_only(x.host.get_all()[0])
        assert ask() == b""
        x.pool.set_https_only(pool, False)
        assert ask().startswith(b"HTTP/1.1 301")
    finally:
        p.stop()
