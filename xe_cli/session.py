"""One conversation with the server's /cli: request, handshake, then obey its commands."""
import os
import struct
import sys

from . import proto
from .connect import ConnectError

CHUNK_SIZE = 64 * 1024


class Lost(Exception):
    pass


class Channel:
    def __init__(self, sock):
        self.sock = sock

    def read_exact(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            piece = self.sock.recv(n - len(data))
            if not piece:
                raise Lost()
            data += piece
        return data

    def read_message(self):
        (length,) = struct.unpack("<i", self.read_exact(4))
        return proto.parse(self.read_exact(length))

    def send(self, data: bytes):
        self.sock.sendall(data)

    def send_blob(self, chunks):
        for data in chunks:
            if data:
                self.send(proto.chunk_header(len(data)) + data)
        self.send(proto.end_header())


def permitted_files(args) -> set:
    """Files the server may read or write: only those named as a value on the command
    line (a server must not be able to ask for ~/.ssh/id_rsa)."""
    return {os.path.realpath(a.partition("=")[2]) for a in args if "=" in a}


def _request(target, args, settings) -> bytes:
    body = "\n".join([*args, f"username={settings['username']}",
                      f"password={settings['password']}"]).encode()
    head = (f"POST /cli HTTP/1.0\r\nUser-agent: xe-cli/Unix/{proto.MAJOR}.{proto.MINOR}\r\n"
            f"originator: cli\r\ncontent-length: {len(body)}\r\n")
    if settings.get("traceparent") or os.environ.get("TRACEPARENT"):
        head += f"traceparent: {settings.get('traceparent') or os.environ['TRACEPARENT']}\r\n"
    return head.encode() + b"\r\n" + body


def _handshake(chan: Channel):
    try:
        magic = chan.read_exact(len(proto.MAGIC))
    except (Lost, OSError):
        raise ConnectError("Unable to contact server. Please check server and port "
                           "settings.") from None
    if magic.startswith(b"HTTP"):
        raise ConnectError("Server internal error.")
    if magic != proto.MAGIC:
        raise ConnectError("The server does not speak the thin CLI protocol.")
    major, minor = struct.unpack("<ii", chan.read_exact(8))
    if major != proto.MAJOR:
        raise ConnectError(f"Protocol version mismatch: server {major}.{minor}, "
                           f"client {proto.MAJOR}.{proto.MINOR}")
    chan.send(proto.greeting())


def run(target, args, settings, debug=False) -> int:
    sock = target.open()
    out, err = sys.stdout, sys.stderr
    permitted = permitted_files(args)
    try:
        chan = Channel(sock)
        chan.send(_request(target, args, settings))
        _handshake(chan)
        while True:
            try:
                kind, tag, params = chan.read_message()
            except (Lost, OSError, proto.ProtocolError):
                err.write("Lost connection to the server.\n")
                return 1
            if kind != proto.COMMAND:
                err.write("Unexpected message from the server.\n")
                return 1
            if tag == proto.PRINT:
                out.write(params[0] + "\n")
            elif tag == proto.PRINT_STDERR:
                out.flush()
                err.write(params[0])
            elif tag == proto.DEBUG:
                if debug:
                    err.write(f"debug: {params[0]}\n")
            elif tag == proto.EXIT:
                out.flush()
                return params[0]
            elif tag == proto.ERROR:
                out.flush()
                err.write(f"Error code: {params[0]}\nError parameters: "
                          f"{', '.join(params[1])}\n")
            elif tag == proto.PROMPT:
                out.flush()
                line = sys.stdin.readline()
                chan.send_blob([line.rstrip("\n").encode()])
            elif tag == proto.LOAD:
                _load(chan, params[0], permitted, err)
            elif tag in (proto.HTTP_GET, proto.HTTP_PUT):
                from .transfer import transfer
                ok = transfer(target, tag == proto.HTTP_PUT, params[0], params[1],
                              permitted, err)
                chan.send(proto.response(proto.OK if ok else proto.FAILED))
            elif tag == proto.HTTP_CONNECT:   # xe console
                from .console import attach
                out.flush()
                ok = attach(target, params[0], err,
                            heartbeat=lambda: chan.send(proto.response(proto.WAIT)))
                chan.send(proto.response(proto.OK if ok else proto.FAILED))
    finally:
        sock.close()


def _load(chan, filename, permitted, err):
    if os.path.realpath(filename) not in permitted:
        err.write(f"File not permitted: {filename}\n")
        return chan.send(proto.response(proto.FAILED))
    try:
        f = open(filename, "rb")
    except OSError as exc:
        err.write(f"Failed to open {filename}: {exc.strerror}\n")
        return chan.send(proto.response(proto.FAILED))
    with f:
        chan.send(proto.response(proto.OK))
        chan.send_blob(iter(lambda: f.read(CHUNK_SIZE), b""))
