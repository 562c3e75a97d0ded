"""Server certificate rotation without a restart, Certificate records, validation errors,
RBAC, expiry alerts, restart durability, TLS 1.2 floor, the plain-HTTP redirect port, and
`xe host-server-certificate-install`: all against the real server process."""
import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(__file__))
from serverproc import (ROOT_PASSWORD, ServerProcess, add_local_user, free_port,  # noqa: E402
                        logged_in)

from xapi_server.http.tls import write_identity  # noqa: E402
from sdk_failures import failure

XE = os.path.join(os.path.dirname(sys.executable), "xe")
UTC = datetime.timezone.utc
DAY = datetime.timedelta(days=1)


# -- certificates made here, with cryptography (and openssl for what it refuses to make) --

def pem(obj) -> str:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM).decode()
    return obj.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def fp(cert: x509.Certificate) -> str:
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, 64, 2))


def name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def issue(subject_key, cn, issuer=None, ca=False, not_before=None, not_after=None,
          digest=hashes.SHA256()):
    """A certificate for subject_key, signed by issuer=(key, cert) or self-signed."""
    now = datetime.datetime.now(UTC)
    issuer_key, issuer_cert = issuer or (subject_key, None)
    builder = (x509.CertificateBuilder().subject_name(name(cn))
               .issuer_name(issuer_cert.subject if issuer_cert else name(cn))
               .public_key(subject_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(not_before or now - DAY)
               .not_valid_after(not_after or now + 365 * DAY)
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, digest)


@pytest.fixture(scope="module")
def pki():
    """A root CA, an intermediate CA under it, and a maker of leaves the intermediate signs."""
    root_key = ec.generate_private_key(ec.SECP384R1())
    root = issue(root_key, "test root", ca=True)
    mid_key = ec.generate_private_key(ec.SECP256R1())
    mid = issue(mid_key, "test intermediate", issuer=(root_key, root), ca=True)

    class PKI:
        root_pem, mid_pem = pem(root), pem(mid)

        @staticmethod
        def leaf(key=None, **kw):
            key = key or rsa.generate_private_key(65537, 2048)
            return key, issue(key, "127.0.0.1", issuer=(mid_key, mid), **kw)
    return PKI


def rsa_key(bits=2048):
    return rsa.generate_private_key(65537, bits)


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


# -- the server, and looking at what it serves -------------------------------------------

@pytest.fixture(scope="module")
def proc(tmp_path_factory):
    redirect_port = free_port()
    p = ServerProcess(str(tmp_path_factory.mktemp("tls-data")),
                      env={"XAPI_HTTP_REDIRECT_PORT": str(redirect_port),
                           "XAPI_HEADER_TIMEOUT": "2"})
    p.redirect_port = redirect_port
    p.start()
    yield p
    p.stop()


@pytest.fixture
def root(proc):
    yield from logged_in(proc.session())


def host_of(x):
    return x.host.get_all()[0]


def served(port, ciphers=None, sni=None, **client) -> x509.Certificate:
    """The certificate a NEW TLS connection to the port is given (by default without
    SNI: clients that connect by IP address send none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    if ciphers:
        ctx.set_ciphers(ciphers)
    for key, value in client.items():
        setattr(ctx, key, value)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def install(x, key, cert, chain=""):
    x.host.install_server_certificate(host_of(x), pem(cert), pem(key), chain)


def records(x):
    return [x.Certificate.get_record(c) for c in x.host.get_certificates(host_of(x))]


# -- installing ---------------------------------------------------------------------------

def test_install_is_served_to_new_connections_without_restart(proc, root, pki):
    pid = proc.proc.pid
    before = served(proc.port)
    assert isinstance(before.public_key(), ec.EllipticCurvePublicKey)  # our self-signed one
    # A connection opened before the install keeps working (keep-alive) afterwards.
    old_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old_ctx.check_hostname, old_ctx.verify_mode = False, ssl.CERT_NONE
    old_conn = old_ctx.wrap_socket(socket.create_connection(("127.0.0.1", proc.port), 10))

    key, leaf = pki.leaf()   # RSA over ECDSA: every new client must get the RSA one
    install(root, key, leaf, pki.mid_pem)
    assert fp(served(proc.port)) == fp(leaf)
    assert fp(served(proc.port, sni="localhost")) == fp(leaf)
    assert fp(served(proc.port, maximum_version=ssl.TLSVersion.TLSv1_2)) == fp(leaf)
    # The chain is served: a client trusting only the root verifies the host.
    strict = ssl.create_default_context(cadata=pki.root_pem)
    with socket.create_connection(("127.0.0.1", proc.port), timeout=10) as raw:
        with strict.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            assert fp(x509.load_der_x509_certificate(s.getpeercert(True))) == fp(leaf)
    # The API works on a new connection, in the same process.
    fresh = proc.session()
    assert fresh.xenapi.host.get_record(host_of(fresh.xenapi))["enabled"] is True
    fresh.xenapi.session.logout()
    assert proc.proc.pid == pid and proc.proc.poll() is None
    with old_conn:
        assert fp(x509.load_der_x509_certificate(old_conn.getpeercert(True))) == fp(before)
        old_conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert old_conn.recv(12) == b"HTTP/1.1 200"

    [record] = records(root)
    assert record["type"] == "host" and record["host"] == host_of(root)
    assert record["fingerprint_sha256"] == record["fingerprint"] == fp(leaf)
    assert record["fingerprint_sha1"] == leaf.fingerprint(hashes.SHA1()).hex(":").upper()
    assert str(record["not_after"]) == leaf.not_valid_after_utc.strftime("%Y%m%dT%H:%M:%SZ")
    assert root.Certificate.get_all() == [root.host.get_certificates(host_of(root))[0]]
    assert root.host.get_server_certificate(host_of(root)) == pem(leaf)
    mode = os.stat(os.path.join(proc.data_dir, "certs", "server.key")).st_mode & 0o777
    assert mode == 0o600
    key_body = pem(key).splitlines()[1]
    with open(proc.log_path) as log, open(os.path.join(proc.data_dir, "audit.log")) as audit:
        assert key_body not in log.read() + audit.read()   # the key is never logged


def test_ecdsa_p384_key_with_sha384_is_accepted(proc, root, pki):
    key, leaf = pki.leaf(ec.generate_private_key(ec.SECP384R1()), digest=hashes.SHA384())
    install(root, key, leaf)
    assert fp(served(proc.port)) == fp(leaf)
    assert [r["fingerprint_sha256"] for r in records(root)] == [fp(leaf)]


def test_tls_1_2_floor_holds_after_reload(proc):
    # SECLEVEL=0 lets this client really offer TLS 1.1 (OpenSSL 3 would not by default).
    weak = dict(ciphers="DEFAULT:@SECLEVEL=0", minimum_version=ssl.TLSVersion.TLSv1,
                maximum_version=ssl.TLSVersion.TLSv1_1)
    with pytest.raises(ssl.SSLError):
        served(proc.port, **weak)
    # The same client allowed TLS 1.2 gets through: the refusal is the server's.
    assert served(proc.port, **{**weak, "maximum_version": ssl.TLSVersion.TLSv1_2})


def test_validation_errors(proc, root, pki, tmp_path):
    host = host_of(root)
    current = fp(served(proc.port))
    key, good = pki.leaf()
    now = datetime.datetime.now(UTC)

    def check(expected, certificate, private_key, chain=""):
        details = failure(root.host.install_server_certificate, host, certificate,
                          private_key, chain)
        assert details[:len(expected)] == expected, details
        return details

    check(["SERVER_CERTIFICATE_INVALID"], "-----BEGIN CERTIFICATE-----\nnope\n"
          "-----END CERTIFICATE-----\n", pem(key))
    check(["SERVER_CERTIFICATE_INVALID"], pem(good) + pki.mid_pem, pem(key))  # two of them
    check(["SERVER_CERTIFICATE_KEY_INVALID"], pem(good), "not a key")
    encrypted = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.BestAvailableEncryption(b"pw")).decode()
    check(["SERVER_CERTIFICATE_KEY_INVALID"], pem(good), encrypted)
    check(["SERVER_CERTIFICATE_KEY_MISMATCH"], pem(good), pem(rsa_key()))
    assert check(["SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED"], pem(good),
                 pem(rsa_key(1024))) == ["SERVER_CERTIFICATE_KEY_RSA_LENGTH_NOT_SUPPORTED",
                                         "1024"]
    assert check(["SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED"], pem(good),
                 pem(ed25519.Ed25519PrivateKey.generate()))[1] == "ed25519"
    assert check(["SERVER_CERTIFICATE_KEY_ALGORITHM_NOT_SUPPORTED"], pem(good),
                 pem(ec.generate_private_key(ec.SECP521R1())))[1] == "p521"
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
            "-pkeyopt", "rsa_keygen_primes:3", "-out", "multi.pem", cwd=tmp_path)
    check(["SERVER_CERTIFICATE_KEY_RSA_MULTI_NOT_SUPPORTED"], pem(good),
          (tmp_path / "multi.pem").read_text())

    k, expired = pki.leaf(not_before=now - 10 * DAY, not_after=now - DAY)
    details = check(["SERVER_CERTIFICATE_EXPIRED"], pem(expired), pem(k))
    assert details[2] == expired.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
    said_now = datetime.datetime.strptime(details[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert abs((said_now - now).total_seconds()) < 120
    k, early = pki.leaf(not_before=now + DAY, not_after=now + 10 * DAY)
    details = check(["SERVER_CERTIFICATE_NOT_VALID_YET"], pem(early), pem(k))
    assert details[2] == early.not_valid_before_utc.strftime("%Y-%m-%dT%H:%M:%SZ")

    # cryptography will not sign with SHA-1; openssl will.
    ec_key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "k.pem").write_text(pem(ec_key))
    openssl("req", "-x509", "-new", "-key", "k.pem", "-sha1", "-days", "2", "-subj", "/CN=x",
            "-out", "sha1.pem", cwd=tmp_path)
    check(["SERVER_CERTIFICATE_SIGNATURE_NOT_SUPPORTED"], (tmp_path / "sha1.pem").read_text(),
          pem(ec_key))

    check(["SERVER_CERTIFICATE_CHAIN_INVALID"], pem(good), pem(key), "garbage")
    check(["SERVER_CERTIFICATE_CHAIN_INVALID"], pem(good), pem(key),
          "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert failure(root.host.install_server_certificate, "OpaqueRef:nope", pem(good),
                   pem(key), "")[:2] == ["HANDLE_INVALID", "host"]
    # Nothing was replaced by any of these.
    assert fp(served(proc.port)) == current
    assert [r["fingerprint_sha256"] for r in records(root)] == [current]


def test_roles(proc, root, pki):
    for user, role in (("ro-user", "read-only"), ("admin-user", "pool-admin")):
        add_local_user(root, user, role, f"pw-{user}")
    ro = proc.session("ro-user", "pw-ro-user").xenapi
    host = host_of(ro)
    key, leaf = pki.leaf()
    for call, args in ((ro.host.install_server_certificate, (host, pem(leaf), pem(key), "")),
                       (ro.host.reset_server_certificate, (host,)),
                       (ro.host.emergency_reset_server_certificate, ())):
        details = failure(call, *args)
        assert details[0] == "RBAC_PERMISSION_DENIED", details
    assert ro.host.get_server_certificate(host).startswith("-----BEGIN CERTIFICATE-----")
    assert records(ro)  # Certificate records are readable by everyone
    # The emergency reset is for the local superuser only, not even for pool-admin.
    admin = proc.session("admin-user", "pw-admin-user").xenapi
    details = failure(admin.host.emergency_reset_server_certificate)
    assert details[:2] == ["RBAC_PERMISSION_DENIED", "host.emergency_reset_server_certificate"]
    before = fp(served(proc.port))
    root.host.emergency_reset_server_certificate()
    assert fp(served(proc.port)) != before


def test_reset_makes_a_new_self_signed_certificate(proc, root, pki):
    key, leaf = pki.leaf()
    install(root, key, leaf)
    root.host.reset_server_certificate(host_of(root))
    now_served = served(proc.port)
    assert fp(now_served) != fp(leaf)
    assert now_served.issuer == now_served.subject   # self-signed
    assert [r["fingerprint_sha256"] for r in records(root)] == [fp(now_served)]
    assert root.host.get_server_certificate(host_of(root)) == pem(now_served)


def expiry_messages(x):
    uuid = x.host.get_uuid(host_of(x))
    return sorted((m["name"], int(m["priority"]), m["body"])
                  for m in x.message.get_all_records().values()
                  if m["obj_uuid"] == uuid and m["name"].startswith("HOST_SERVER_CERTIFICATE"))


def body(text, cert):
    return (f"<body><message>{text}</message>"
            f"<date>{cert.not_valid_after_utc.strftime('%Y%m%dT%H:%M:%SZ')}</date></body>")


def test_expiring_certificate_raises_a_message_replacing_older_ones(proc, root, pki):
    now = datetime.datetime.now(UTC)
    key, leaf = pki.leaf(not_after=now + 10 * DAY)
    install(root, key, leaf)
    soon = "The TLS server certificate is expiring soon."
    assert expiry_messages(root) == [("HOST_SERVER_CERTIFICATE_EXPIRING_14", 2, body(soon, leaf))]
    key, leaf = pki.leaf(not_after=now + 5 * DAY)
    install(root, key, leaf)
    assert expiry_messages(root) == [("HOST_SERVER_CERTIFICATE_EXPIRING_07", 1, body(soon, leaf))]


# -- restarts -----------------------------------------------------------------------------

def test_installed_certificate_survives_a_restart(proc, pki):
    x = proc.session().xenapi
    key, leaf = pki.leaf()
    install(x, key, leaf, pki.mid_pem)
    proc.kill()            # no clean shutdown: the files were durable when the call returned
    proc.start()
    assert fp(served(proc.port)) == fp(leaf)
    x = proc.session().xenapi
    assert [r["fingerprint_sha256"] for r in records(x)] == [fp(leaf)]


def test_interrupted_install_is_finished_at_start(proc, pki):
    """pending.pem (committed) is applied; pending.pem.tmp (never committed) is dropped."""
    certs = os.path.join(proc.data_dir, "certs")
    key, leaf = pki.leaf()
    proc.kill()
    with open(os.path.join(certs, "pending.pem"), "w") as f:
        f.write(pem(key) + pem(leaf))
    with open(os.path.join(certs, "pending.pem.tmp"), "w") as f:
        f.write("half written")
    proc.start()
    assert fp(served(proc.port)) == fp(leaf)
    assert sorted(os.listdir(certs)) == ["server.crt", "server.key"]


def test_expired_certificate_found_at_start_raises_expired(proc, pki):
    now = datetime.datetime.now(UTC)
    key, leaf = pki.leaf(not_before=now - 10 * DAY, not_after=now - DAY)
    proc.stop()
    write_identity(os.path.join(proc.data_dir, "certs"), pem(key).encode(), pem(leaf).encode())
    proc.start()
    x = proc.session().xenapi
    assert fp(served(proc.port)) == fp(leaf)
    assert expiry_messages(x) == [("HOST_SERVER_CERTIFICATE_EXPIRED", 1,
                                   body("The TLS server certificate has expired.", leaf))]
    x.host.reset_server_certificate(host_of(x))   # and the API can recover from it


# -- the plain-HTTP redirect port ---------------------------------------------------------

def raw_http(port, request: bytes, timeout=10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data


def location(reply: bytes) -> str:
    head = reply.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 301 Moved Permanently"), head
    return next(line.split(": ", 1)[1] for line in head.split("\r\n")
                if line.lower().startswith("location:"))


def test_redirect_port_answers_get_and_post_with_301(proc):
    rp, port = proc.redirect_port, proc.port
    reply = raw_http(rp, b"GET /a/b?x=1&y=%%20z HTTP/1.1\r\nHost: myhost.example:%d\r\n\r\n" % rp)
    assert location(reply) == f"https://myhost.example:{port}/a/b?x=1&y=%20z"
    assert reply.endswith(b"\r\n\r\n") and b"content-length: 0" in reply.lower()
    assert location(raw_http(rp, b"GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n")) \
        == f"https://[::1]:{port}/"
    assert location(raw_http(rp, b"GET /x HTTP/1.0\r\n\r\n")) == f"https://127.0.0.1:{port}/x"
    with httpx.Client(follow_redirects=False, timeout=10) as client:
        for path, payload in (("/", b"<?xml version='1.0'?><methodCall><methodName>"
                                    b"session.login_with_password</methodName></methodCall>"),
                              ("/jsonrpc", b'{"method": "session.login_with_password"}'),
                              ("/cli", b"host-list\nusername=root\npassword=x")):
            r = client.post(f"http://127.0.0.1:{rp}{path}", content=payload)
            assert (r.status_code, r.headers["location"], r.content) == \
                (301, f"https://127.0.0.1:{port}{path}", b"")
        r = client.get(f"http://127.0.0.1:{rp}/audit_log?session_id=x")
        assert (r.status_code, r.headers["location"]) == \
            (301, f"https://127.0.0.1:{port}/audit_log?session_id=x")


def test_redirect_port_never_waits_for_a_body(proc):
    """A POST announcing 10 MB that never sends them is answered at once (a server
    waiting for the body would leave this client hanging until its 20 s timeout)."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", proc.redirect_port), timeout=20) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10000000\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 301")
    assert time.monotonic() - started < 5


def test_redirect_port_rejects_bad_requests_and_slow_clients(proc):
    rp = proc.redirect_port
    for bad in (b"GET / HTTP/1.1\r\nHost: evil.example/path\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
                b"GARBAGE\r\n\r\n"):
        assert raw_http(rp, bad).startswith(b"HTTP/1.1 400 Bad Request"), bad
    with socket.create_connection(("127.0.0.1", rp), timeout=30) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")              # and then nothing (slowloris)
        started = time.monotonic()
        assert s.recv(4096) == b""                      # closed, no answer
        assert time.monotonic() - started < 15
    assert location(raw_http(rp, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))  # still serving


# -- xe ---------------------------------------------------------------------------------

def test_xe_installs_a_certificate_from_client_files(proc, pki, tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    env.pop("XE_EXTRA_ARGS", None)

    def xe(*argv, pin):
        return subprocess.run([XE, "-s", "127.0.0.1", "-p", str(proc.port), "-pw", ROOT_PASSWORD,
                               "--fingerprint", pin, *argv], env=env, capture_output=True,
                              text=True, timeout=60)

    key, leaf = pki.leaf()
    for file_name, text in (("c.pem", pem(leaf)), ("k.pem", pem(key)),
                            ("chain.pem", pki.mid_pem)):
        (tmp_path / file_name).write_text(text)
    old = fp(served(proc.port))
    r = xe("host-server-certificate-install", f"certificate={tmp_path / 'c.pem'}",
           f"private-key={tmp_path / 'k.pem'}", f"certificate-chain={tmp_path / 'chain.pem'}",
           pin=old)
    assert r.returncode == 0, r.stderr
    assert fp(served(proc.port)) == fp(leaf)
    r = xe("certificate-list", "params=fingerprint-sha256", "--minimal", pin=fp(leaf))
    assert (r.returncode, r.stdout.strip()) == (0, fp(leaf))
    r = xe("host-get-server-certificate", pin=fp(leaf))
    assert r.stdout == pem(leaf)
    r = xe("host-server-certificate-install", f"certificate={tmp_path / 'missing.pem'}",
           f"private-key={tmp_path / 'k.pem'}", pin=fp(leaf))
    assert r.returncode == 1 and "Failed to read certificate" in r.stderr
    r = xe("host-reset-server-certificate", pin=fp(leaf))
    assert r.returncode == 0 and fp(served(proc.port)) != fp(leaf)
