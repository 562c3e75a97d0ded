"""Opening a connection to the server, and checking who answers.

Unlike xapi's own `xe` (which never checks the certificate), we do trust-on-first-use:
the SHA-256 fingerprint of the server certificate is remembered per host:port in
`$XDG_CONFIG_HOME/xe/known_hosts` (default `~/.config/xe/known_hosts`), and a different
certificate later is refused. `--fingerprint` pins one for a single run; `--no-verify`
skips the check. The check runs right after the TLS handshake, before anything (the
password included) is sent.
"""
import os

try:
    # The C layers directly: the `ssl` and `socket` modules cost ~14 ms of start-up
    # (enum conversions, re, selectors ...) and xe runs once per command in scripts.
    import _socket
    import _ssl

    class _Socket(_socket.socket):
        """A plain socket that `_ssl` can hold a weak reference to."""

    _FAST = hasattr(_ssl._SSLContext, "_wrap_socket")
except (ImportError, AttributeError):  # another Python: the public modules below
    _FAST = False

LOCAL_SOCKET = "/var/lib/xcp/xapi"  # xapi's local socket: used for 127.0.0.1 when present


class ConnectError(Exception):
    """A failure to reach or to trust the server; the message is shown to the user."""


def known_hosts_path() -> str:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "xe", "known_hosts")


def format_fingerprint(der: bytes) -> str:
    try:
        from _sha256 import sha256
    except ImportError:
        from hashlib import sha256
    digest = sha256(der).hexdigest().upper()
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


class _TlsConn:
    """recv/sendall/close over an `_ssl` object, like ssl.SSLSocket's."""

    def __init__(self, raw, tls):
        self.raw, self.tls = raw, tls

    def recv(self, n: int) -> bytes:
        try:
            return self.tls.read(n)
        except _ssl.SSLError:   # close_notify or a ragged end: the stream is over
            return b""

    def sendall(self, data: bytes):
        view = memoryview(data)
        while view:
            view = view[self.tls.write(view):]

    def peer_der(self) -> bytes:
        return self.tls.getpeercert(True)

    def shutdown(self, how):
        """Half-close (the end of an upload of unknown length): TCP's, under TLS."""
        self.raw.shutdown(how)

    def close(self):
        self.raw.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _addresses(host: str, port: int):
    """Literal addresses skip getaddrinfo: glibc loads its NSS modules on the first
    call, which alone costs several milliseconds."""
    for family in (_socket.AF_INET, _socket.AF_INET6):
        try:
            _socket.inet_pton(family, host)
        except OSError:
            continue
        addr = (host, port) if family == _socket.AF_INET else (host, port, 0, 0)
        return [(family, _socket.SOCK_STREAM, 0, "", addr)]
    return _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)


def _connect(host: str, port: int):
    if not _FAST:
        import socket
        return socket.create_connection((host, port))
    last = None
    for family, kind, proto_, _, addr in _addresses(host, port):
        sock = _Socket(family, kind, proto_)
        try:
            sock.connect(addr)
            return sock
        except OSError as exc:
            sock.close()
            last = exc
    raise last or OSError("no address")


class Target:
    """Where and how to connect: one per xe run, reused for HttpGet/HttpPut."""

    def __init__(self, host, port, use_tls, pinned=None, verify=True, warn=None):
        self.host, self.port, self.use_tls = host, port, use_tls
        self.pinned, self.verify = pinned, verify
        self.warn = warn or (lambda text: None)
        self._ctx = None

    def _context(self):
        if self._ctx is None:
            if _FAST:
                ctx = _ssl._SSLContext(_ssl.PROTOCOL_TLS_CLIENT)
                ctx.minimum_version = _ssl.PROTO_TLSv1_2
            else:
                import ssl
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            # Identity is checked by fingerprint below, not by a CA chain: xapi hosts
            # have self-signed certificates.
            ctx.check_hostname = False
            ctx.verify_mode = 0  # CERT_NONE
            self._ctx = ctx
        return self._ctx

    def _tls(self, raw, host):
        if _FAST:
            tls = self._context()._wrap_socket(raw, False, host, owner=None, session=None)
            tls.do_handshake()
            return _TlsConn(raw, tls)
        sock = self._context().wrap_socket(raw, server_hostname=host)
        sock.peer_der = lambda: sock.getpeercert(binary_form=True)
        return sock

    def open(self, host=None, port=None):
        host, port = host or self.host, port or self.port
        family = _socket if _FAST else __import__("socket")
        if host == "127.0.0.1" and host == self.host and os.path.exists(LOCAL_SOCKET):
            sock = (_Socket if _FAST else family.socket)(family.AF_UNIX, family.SOCK_STREAM)
            try:
                sock.connect(LOCAL_SOCKET)
                return sock
            except OSError:
                sock.close()
        try:
            raw = _connect(host, port)
        except family.gaierror:
            raise ConnectError(f"Host '{host}' not found.") from None
        except OSError:
            raise ConnectError("Unable to contact server. Please check server and port "
                               "settings.") from None
        raw.setsockopt(family.IPPROTO_TCP, family.TCP_NODELAY, 1)
        if not self.use_tls:
            return raw
        try:
            sock = self._tls(raw, host)
        except OSError as exc:   # SSLError is an OSError
            raw.close()
            raise ConnectError(f"TLS handshake with {host}:{port} failed: {exc}") from None
        if self.verify:
            try:
                check_certificate(sock.peer_der(), host, port, self.pinned, self.warn)
            except ConnectError:
                sock.close()
                raise
        return sock
