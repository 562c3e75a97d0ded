"""Opening a connection to the server, and checking who answers.

Unlike xapi's own `xe` (which never checks the certificate), we do trust-on-first-use:
the SHA-256 fingerprint of the server certificate is remembered per host:port in
`$XDG_CONFIG_HOME/xe/known_hosts` (default `~/.config/xe/known_hosts`), and a different
certificate later is refused. `--fingerprint` pins one for a single run; `--no-verify`
skips the check. The check runs right after the TLS handshake, before anything (the
password included) is sent.
"""
import hashlib
import os
import socket
import ssl

LOCAL_SOCKET = "/var/lib/xcp/xapi"  # xapi's local socket: used for 127.0.0.1 when present


class ConnectError(Exception):
    """A failure to reach or to trust the server; the message is shown to the user."""


def known_hosts_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "xe", "known_hosts")


def format_fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def _normal(fp: str) -> str:
    return fp.replace(":", "").replace(" ", "").lower()


def _read_known(path: str) -> dict:
    known = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2 and not line.startswith("#"):
                    known[parts[0]] = parts[1]
    except FileNotFoundError:
        pass
    return known


def _remember(path: str, key: str, fp: str):
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "a") as f:
        f.write(f"{key} {fp}\n")


def check_certificate(der: bytes, host: str, port: int, pinned: str | None, warn) -> None:
    """Raise ConnectError unless the certificate is the pinned, known or a first-seen one."""
    seen = format_fingerprint(der)
    if pinned:
        if _normal(pinned) != _normal(seen):
            raise ConnectError(
                f"The certificate of {host}:{port} does not match the pinned fingerprint.\n"
                f"  pinned:    {pinned}\n  presented: {seen}\nRefusing to connect.")
        return
    key = f"{host}:{port}"
    path = known_hosts_path()
    known = _read_known(path).get(key)
    if known is None:
        _remember(path, key, seen)
        warn(f"Trusting the certificate of {key} on first use (SHA-256 {seen}); "
             f"stored in {path}\n")
    elif _normal(known) != _normal(seen):
        raise ConnectError(
            f"WARNING: the certificate of {key} has CHANGED. This may be an attack, or the "
            f"server got a new certificate.\n  known:     {known}\n  presented: {seen}\n"
            f"Refusing to connect. If the change is expected, remove the line for {key} "
            f"from {path},\nor run once with --fingerprint {seen}.")


class Target:
    """Where and how to connect: one per xe run, reused for HttpGet/HttpPut."""

    def __init__(self, host, port, use_tls, pinned=None, verify=True, warn=None):
        self.host, self.port, self.use_tls = host, port, use_tls
        self.pinned, self.verify = pinned, verify
        self.warn = warn or (lambda text: None)
        self._ctx = None

    def _context(self) -> ssl.SSLContext:
        if self._ctx is None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            # Identity is checked by fingerprint below, not by a CA chain: xapi hosts
            # have self-signed certificates.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self._ctx = ctx
        return self._ctx

    def open(self, host=None, port=None) -> socket.socket:
        host, port = host or self.host, port or self.port
        if host == "127.0.0.1" and os.path.exists(LOCAL_SOCKET) and host == self.host:
            sock = socket.socket(socket.AF_UNIX)
            try:
                sock.connect(LOCAL_SOCKET)
                return sock
            except OSError:
                sock.close()
        try:
            raw = socket.create_connection((host, port))
        except socket.gaierror:
            raise ConnectError(f"Host '{host}' not found.") from None
        except OSError:
            raise ConnectError("Unable to contact server. Please check server and port "
                               "settings.") from None
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if not self.use_tls:
            return raw
        try:
            sock = self._context().wrap_socket(raw, server_hostname=host)
        except (ssl.SSLError, OSError) as exc:
            raw.close()
            raise ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from None
        if self.verify:
            try:
                check_certificate(sock.getpeercert(binary_form=True), host, port,
                                  self.pinned, self.warn)
            except ConnectError:
                sock.close()
                raise
        return sock
