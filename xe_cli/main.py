"""`xe`: send the command line to the server's /cli and do what the server says.

    xe [-s host] [-p port] [-u user] [-pw password | -pwf file] [--nossl]
       [--fingerprint FP | --no-verify] <command> [name=value ...] [--flag ...]

Connection settings come from, strongest first: the command line, $XE_EXTRA_ARGS
(comma-separated, `\\,` for a literal comma), ~/.xe (key=value lines), defaults.
Everything else goes to the server, which parses it, runs the command and streams
back Print / PrintStderr / Prompt / Load / HttpGet / HttpPut / Exit orders.

Kept to the stdlib, imported lazily where it matters: `xe` is run in shell loops.
"""
import os
import sys

from . import proto
from .connect import ConnectError, Target

USAGE = """Usage: xe [-s server] [-p port] [-u username] [-pw password | -pwf password-file]
          [--nossl] [--fingerprint SHA256] [--no-verify] [--debug] <command> [args]

  -s, -h      server (default 127.0.0.1); -p port (default 443, 80 with --nossl)
  -u, -pw     user name (default root) and password; -pwf: a file with the user
              name on the first line and the password on the second
  --nossl     plain TCP
  --fingerprint FP  accept only a server certificate with this SHA-256 fingerprint
  --no-verify       do not check the server certificate (also --insecure)
  --minimal   (server side) print values only, comma-separated

Settings may also come from ~/.xe (key=value lines: server, port, username, password,
passwordfile, nossl, fingerprint, no-verify) and $XE_EXTRA_ARGS (comma-separated).

  xe help          common commands
  xe help --all    all commands
  xe help <cmd>    one command
"""

# key=value settings the client keeps for itself (never sent to the server).
_CLIENT_KEYS = {"server", "port", "username", "password", "passwordfile", "nossl", "debug",
                "debugonfail", "traceparent", "fingerprint", "no-verify"}
_SWITCHES = {"-s": "server", "-h": "server", "-p": "port", "-u": "username",
             "-pw": "password", "-pwf": "passwordfile", "--traceparent": "traceparent",
             "--fingerprint": "fingerprint"}
_FLAGS = {"--nossl": "nossl", "--debug": "debug", "--debug-on-fail": "debugonfail",
          "--no-verify": "no-verify", "--insecure": "no-verify"}


class Usage(Exception):
    pass


def _true(value: str) -> bool:
    return value.lower() in ("true", "t", "yes", "y", "1", "")


def absorb(args, settings: dict) -> list:
    """Take the client's own options out of `args` into `settings`; return the rest."""
    rest, i = [], 0
    while i < len(args):
        arg = args[i]
        if arg in _SWITCHES:
            if i + 1 >= len(args):
                raise Usage(f"option {arg} needs a value")
            settings[_SWITCHES[arg]] = args[i + 1]
            i += 2
            continue
        if arg in _FLAGS:
            settings[_FLAGS[arg]] = "true"
        elif arg.startswith("--fingerprint="):
            settings["fingerprint"] = arg.partition("=")[2]
        elif arg in ("-version", "--version"):
            raise Usage(f"ThinCLI protocol: {proto.MAJOR}.{proto.MINOR}\n")
        elif arg in ("-help", "--help"):
            raise Usage("")
        elif "=" in arg and arg.partition("=")[0] in _CLIENT_KEYS:
            key, _, value = arg.partition("=")
            settings[key] = value
        else:
            rest.append(arg)
        i += 1
    return rest


def read_rc(path: str, warn) -> tuple:
    """(~/.xe settings, extra args for the server). A malformed line voids the file, as xe."""
    settings, extra = {}, []
    try:
        with open(path) as f:
            lines = [line.strip() for line in f]
    except OSError:
        return settings, extra
    if any(line and "=" not in line for line in lines):
        warn("Error parsing rc file. No defaults loaded\n")
        return {}, []
    for line in filter(None, lines):
        key, _, value = line.partition("=")
        (settings.__setitem__(key, value) if key in _CLIENT_KEYS else extra.append(line))
    return settings, extra


def split_extra(text: str) -> list:
    """XE_EXTRA_ARGS: commas separate, `\\,` is a literal comma, other backslashes go."""
    parts, current, i = [], "", 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text):
            current += text[i + 1]
            i += 2
            continue
        if text[i] == ",":
            parts.append(current)
            current = ""
        else:
            current += text[i]
        i += 1
    parts.append(current)
    return [p for p in parts if p]


def gather(argv: list, environ) -> tuple:
    """Merge defaults < ~/.xe < XE_EXTRA_ARGS < command line. Returns (settings, args)."""
    warn = sys.stderr.write
    settings = {"server": "127.0.0.1", "username": "root", "password": "null"}
    rc_settings, rc_extra = read_rc(os.path.join(os.path.expanduser("~"), ".xe"), warn)
    settings.update(rc_settings)
    extra = absorb(split_extra(environ.get("XE_EXTRA_ARGS", "")), settings)
    args = absorb(argv, settings)
    if "passwordfile" in settings:
        try:
            with open(settings["passwordfile"]) as f:
                lines = f.read().splitlines()
            settings["username"], settings["password"] = lines[0], lines[1]
        except (OSError, IndexError):
            raise Usage("Failed to read the password file: it must hold the user name "
                        "on the first line and the password on the second") from None
    return settings, args + rc_extra + extra


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        settings, args = gather(argv, os.environ)
        if not args:
            raise Usage("")
        nossl = _true(settings.get("nossl", "false"))
        port = int(settings.get("port") or (80 if nossl else 443))
        if not 0 <= port <= 65535:
            raise Usage(f"Port out of range: {port}")
    except Usage as exc:
        if str(exc).endswith("\n"):  # -version: an answer, not a complaint
            sys.stdout.write(str(exc))
            return 0
        if str(exc):
            sys.stderr.write(f"{exc}\n")
            return 1
        sys.stdout.write(USAGE)
        return 0
    except ValueError:
        sys.stderr.write("Port must be a number\n")
        return 1
    target = Target(settings["server"], port, not nossl, settings.get("fingerprint"),
                    not _true(settings.get("no-verify", "false")), sys.stderr.write)
    from .session import run
    try:
        return run(target, args, settings, debug=_true(settings.get("debug", "false")))
    except ConnectError as exc:
        sys.stderr.write(f"{exc}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
