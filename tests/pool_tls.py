"""Certificates for the libvirt daemons of a test pool (tests/pool_harness.py): one CA
of the test's own, and per host one key and certificate naming the host's address,
good for both ends of a TLS connection (libvirtd's qemu+tls listener and client, and
QEMU's TLS migration stream), laid out under the file names libvirt and QEMU look for.

    ca = TestCA(dir)
    pki = ca.host_dir("h1", "10.96.1.11")   # pkipath= for the client, the daemon's files
    libvirtd_conf(pki, host_uuid), qemu_conf(pki)
"""
from __future__ import annotations

import os
import shutil
import subprocess

# libvirt's client names (pkipath=DIR), libvirtd's server names, QEMU's migration names.
_NAMES = {"cert": ("clientcert.pem", "servercert.pem", "client-cert.pem",
                   "server-cert.pem"),
          "key": ("clientkey.pem", "serverkey.pem", "client-key.pem", "server-key.pem"),
          "ca": ("cacert.pem", "ca-cert.pem")}


# EC P-256 keys: made at once, where an RSA 2048 key takes 0.2-1 s of CPU, and
# GnuTLS (libvirt, QEMU) takes them alike.
NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256")


def _openssl(*argv, cwd):
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True)


class TestCA:
    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.key, self.cert = (os.path.join(self.root, n) for n in ("ca.key", "ca.pem"))
        _openssl("req", "-x509", *NEW_KEY, "-nodes", "-days", "2",
                 "-subj", "/CN=xapi-py test pool CA", "-keyout", self.key, "-out",
                 self.cert, cwd=self.root)

    def host_dir(self, name: str, address: str) -> str:
        out = os.path.join(self.root, name)
        os.makedirs(out, exist_ok=True)
        ext = os.path.join(out, "ext.cnf")
        with open(ext, "w") as f:
            f.write(f"subjectAltName=IP:{address}\n"
                    "extendedKeyUsage=serverAuth,clientAuth\n"
                    "keyUsage=digitalSignature,keyEncipherment\n")
        _openssl("req", *NEW_KEY, "-nodes", "-subj", f"/CN={address}",
                 "-keyout", "key.pem", "-out", "req.csr", cwd=out)
        _openssl("x509", "-req", "-in", "req.csr", "-CA", self.cert, "-CAkey", self.key,
                 "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", "cert.pem",
                 cwd=out)
        for kind, names in _NAMES.items():
            source = self.cert if kind == "ca" else os.path.join(out, f"{kind}.pem")
            for name in names:
                shutil.copyfile(source, os.path.join(out, name))
        return out


def libvirtd_conf(pki: str, host_uuid: str) -> str:
    """TLS only (no plain TCP), the certificates above, and a host UUID of its own:
    libvirt refuses a migration between two daemons that report the same one."""
    return (f'listen_tls = 1\nlisten_tcp = 0\nhost_uuid = "{host_uuid}"\n'
            f'ca_file = "{pki}/cacert.pem"\ncert_file = "{pki}/servercert.pem"\n'
            f'key_file = "{pki}/serverkey.pem"\n')


def qemu_conf(pki: str) -> str:
    """QEMU's migration stream over TLS with the same certificates, refused in clear."""
    return (f'migrate_tls_x509_cert_dir = "{pki}"\nmigrate_tls_x509_verify = 1\n'
            'migrate_tls_force = 1\n')
