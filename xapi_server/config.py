"""Settings: defaults < config file (TOML) < XAPI_* environment < command line.

The config file is `--config FILE`, else `$XAPI_CONFIG`, else `/etc/xapi-py/xapi.toml`
when it exists. Keys are the field names below (`data_dir = "/srv/xapi"`); the
environment uses them upper-cased with an XAPI_ prefix (`XAPI_DATA_DIR`).
"""
from __future__ import annotations

import argparse
import os
import tomllib
from dataclasses import dataclass, fields

DEFAULT_CONFIG_FILE = "/etc/xapi-py/xapi.toml"


@dataclass
class Settings:
    data_dir: str = "/var/lib/xapi-py"
    # Where the records are kept: "" is the standalone host's SQLite file in data_dir;
    # a postgresql:// URL (libpq's form; a password may also come from PGPASSWORD or
    # ~/.pgpass) keeps them in PostgreSQL, the pool database (README "Pool database").
    database_url: str = ""
    listen: str = "0.0.0.0"
    port: int = 8443
    libvirt_uri: str = "auto"          # auto | qemu:///system | qemu:///embed?... | test:///default
    domain_type: str = "auto"          # auto | kvm | qemu
    max_body_bytes: int = 16 * 1024 * 1024
    # An RPC reply above this many bytes goes out gzip-compressed to a client that
    # accepts gzip (the XenAPI SDK asks for it); 0: never, as xapi. Loopback and fast
    # links are quicker plain (README, Scale): this is for clients on slow links.
    rpc_gzip_min_bytes: int = 0
    # Failed logins wait, per (client address, user name): auth_failure_delay for each of
    # the first auth_cheap_failures in a row (a typo is cheap), then twice as long per
    # further failure, up to auth_failure_max_delay. Attempts of one pair take turns.
    auth_failure_delay: float = 1.0
    auth_cheap_failures: int = 3
    auth_failure_max_delay: float = 30.0
    local_auth_max_threads: int = 8    # password checks at once (xapi's pool setting)
    login_failures_alert: int = 5      # failures in a row of one pair that raise a message
    session_idle_timeout: float = 86400.0
    # Caps on one user's sessions (all of them; those with one originator): a login over
    # a cap ends that user's oldest session, never another user's.
    max_sessions_per_user: int = 500
    max_sessions_per_originator: int = 100
    audit_max_bytes: int = 10 * 1024 * 1024
    audit_backups: int = 5
    audit_group: str = ""              # "": audit files 0600; else 0640 and this group's
    audit_flood_window: float = 60.0   # failed logins past 20 in this many seconds are
                                       # summarised (audit.py)
    # Limits (issue 8). At max_connections open, a new connection replaces the one idle
    # longest; when all are busy, it gets HTTP 503. A client that has not sent its
    # request line and headers within header_timeout seconds, or its body within
    # body_timeout, is disconnected (slowloris).
    max_connections: int = 1000
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    # An idle connection between requests is closed after this: 12 h, stunnel's default
    # idle timeout (xapi's TLS front). SDKs reuse a kept-alive connection after any pause
    # and Python's xmlrpc does not retry an SSLEOFError; idle connections give way to new
    # ones when max_connections is reached (http/sockets.py), so they cost no budget.
    keep_alive_timeout: float = 12 * 3600.0
    # Every accepted socket counts from accept to close (http/sockets.py): a TLS handshake
    # (and the TLS goodbye at close) must finish within tls_timeout; request line and
    # headers over max_header_bytes get HTTP 431; an xe (/cli) client that neither sends
    # nor reads for cli_idle_timeout while the server waits on it is dropped.
    tls_timeout: float = 10.0
    max_header_bytes: int = 32 * 1024
    cli_idle_timeout: float = 300.0
    # A data handler (disk/VM import and export, consoles: http/raw.py) drops a client
    # that neither sends nor reads for this long while the server waits on it.
    transfer_idle_timeout: float = 300.0
    # The host-internal NAT network (services/network/nat.py): the host's address on it
    # with the prefix ("10.213.0.1/24"); guests get the rest by DHCP. "": none (the
    # default here; scripts/run-server.sh and the service's xapi.toml turn it on).
    nat_network: str = ""
    # What host.reboot / host.shutdown run (a few seconds after they answer; tests set
    # something harmless).
    host_reboot_command: str = "/sbin/shutdown -r now"
    host_shutdown_command: str = "/sbin/shutdown -h now"
    # What host.enable_ssh / disable_ssh, set_servertime ("{time}": ISO 8601, UTC) and
    # restart_agent run; pool.set_console_idle_timeout writes TMOUT to this shell
    # profile ("": the field only). Tests set harmless ones.
    ssh_enable_command: str = "systemctl enable --now ssh"
    ssh_disable_command: str = "systemctl disable --now ssh"
    set_time_command: str = "date -u -s {time}"
    agent_restart_command: str = "systemctl restart xapi-py"
    console_timeout_profile: str = "/etc/profile.d/xapi-py-console-timeout.sh"
    # host.call_plugin runs executables of plugins_dir (xapi's /etc/xapi.d/plugins),
    # host.call_extension those of extensions_dir, each for at most plugin_timeout
    # seconds, its output capped at plugin_max_output bytes.
    plugins_dir: str = "/etc/xapi.d/plugins"
    extensions_dir: str = "/etc/xapi.d/extensions"
    plugin_timeout: float = 300.0
    plugin_max_output: int = 16 * 1024 * 1024
    # Where host.bios_strings are read at every start: the kernel's named DMI strings
    # and its raw SMBIOS structures (for the OEM strings).
    dmi_dir: str = "/sys/class/dmi/id"
    dmi_entries_dir: str = "/sys/firmware/dmi/entries"
    max_blob_bytes: int = 64 * 1024 * 1024     # one blob's bytes (PUT /blob)
    # The management NIC under its network's bridge (services/network/uplink.py): at
    # every start when true (else only when host.management_reconfigure / PIF.plug asks),
    # its addresses and routes move to the bridge and back again unless the probe address
    # (default: the gateway) answers ping within management_probe_timeout seconds.
    management_bridge: bool = False
    management_probe: str = ""
    management_probe_timeout: float = 15.0
    # Pools (README "Pools"): a member tells the coordinator it is alive this often; the
    # coordinator marks a member not live after this long without hearing from it.
    pool_heartbeat_interval: float = 30.0
    host_assumed_dead_interval: float = 600.0
    # The coordinator pushes a copy of the pool database to each member this often
    # (xapi's pool_db_sync_interval), besides pool.sync_database: a member taking over
    # in an emergency starts from a recent copy.
    pool_db_sync_interval: float = 300.0
    # Pool HA (README "Pool HA"): this host's Patroni REST API ("": no HA), the
    # replicated pool database a host that becomes Patroni's leader takes over (libpq
    # multi-host URL with target_session_attrs=read-write), how often Patroni is asked.
    patroni_url: str = ""
    patroni_ca_file: str = ""          # the pool CA its https REST API is checked against
    ha_database_url: str = ""
    ha_poll_interval: float = 1.0
    # The lock manager this host's libvirt runs QEMU under ("lockd": virtlockd, or
    # "sanlock", as set in qemu.conf's lock_manager; "" none). Only with one on both
    # hosts may the VMs of a dead host start on another (api/pool_ha_recovery.py).
    vm_lock_manager: str = ""
    # pool.eject of a host of the replicated pool database: how it stops its services
    # ({service}: patroni, then etcd) once out of the cluster (services/pool/ha_members).
    ha_service_stop_command: str = "systemctl disable --now {service}.service"
    # Live migration (README "Pools"): how this host's libvirtd reaches a destination
    # host's ({address}: its host.address), where the destination QEMU listens for the
    # memory stream, and whether that stream is encrypted (TLS, libvirt's certificates).
    migration_peer_uri: str = "qemu+tls://{address}/system"
    migration_data_uri: str = "tcp://{address}"
    migration_tls: bool = True
    # host.set_hostname_live runs this with the new name appended.
    hostname_command: str = "hostnamectl set-hostname"
    # host.syslog_reconfigure: the rsyslog drop-in that forwards to
    # host.logging[syslog_destination] (removed when there is none), then this command.
    syslog_forward_file: str = "/etc/rsyslog.d/60-xapi-py-forward.conf"
    syslog_restart_command: str = "systemctl restart rsyslog"
    max_auto_callers: int = 1000       # Caller records the rate limiter makes by itself
    max_pending_tasks_per_user: int = 500   # then TOO_MANY_PENDING_TASKS
    # Messages kept (xapi's message GC keeps message_limit, 10000): over a cap the oldest
    # go, of the whole pool or of the one object the new message is about.
    max_messages: int = 10000
    max_messages_per_object: int = 1000
    http_redirect_port: int = 0        # 0: off; else a plain-HTTP port that only redirects
    pam_service: str = ""              # e.g. "login": system accounts may log in via PAM
    # Direct-boot kernels and ramdisks (VM.PV_kernel/PV_ramdisk) must resolve into
    # <data_dir>/boot, xapi's /var/lib/xcp/guest, or one of these ":"-separated folders.
    boot_dirs: str = ""
    # A folder above a disk, ISO or kernel that the hypervisor's QEMU user cannot search:
    # "acl" gives that user alone search (x) permission by an ACL entry, as virt-install
    # does; "refuse" fails SR.create / VM.start with the folder named.
    qemu_search_fix: str = "acl"
    # Metrics (services/metrics): seconds between samples of the host and its VMs (5, as
    # xcp-rrdd; 1 for tests: the archives keep xapi's 5 s rows either way), and the
    # bearer token a Prometheus server may scrape GET /metrics with ("": sessions only).
    metrics_interval: int = 5
    metrics_bearer_token: str = ""
    log_level: str = "INFO"
    # The built web console served at GET / (http/webui.py); "": ui/dist beside the package.
    web_dir: str = ""

    @property
    def db_path(self) -> str:
        return os.path.join(self.data_dir, "xapi.db")

    @property
    def database(self) -> str:
        """What the store opens: the PostgreSQL URL when one is set, else the file."""
        return self.database_url or self.db_path

    @property
    def cert_dir(self) -> str:
        return os.path.join(self.data_dir, "certs")


def make_data_dir(path: str):
    """The data dir may be entered but not listed by others (0711): QEMU, running as
    libvirt-qemu under qemu:///system, must reach disk images and kernels below it,
    while the database, keys and passwords inside are private files (0600)."""
    os.makedirs(path, mode=0o711, exist_ok=True)
    os.chmod(path, 0o711)


def _coerce(kind, value):
    if kind is bool or kind == "bool":
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off", ""):
            return False
        raise ValueError(f"not a boolean: {value!r}")
    if kind is int or kind == "int":
        return int(value)
    if kind is float or kind == "float":
        return float(value)
    return str(value)


def load(argv: list[str] | None = None, environ=os.environ) -> Settings:
    parser = argparse.ArgumentParser(prog="xapi-server",
                                     description="XenAPI-compatible management server")
    parser.add_argument("--config", help="TOML config file")
    parser.add_argument("--data-dir", dest="data_dir")
    parser.add_argument("--listen", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--port", type=int, help="HTTPS port (default 8443)")
    parser.add_argument("--libvirt-uri", dest="libvirt_uri")
    parser.add_argument("--log-level", dest="log_level")
    args = parser.parse_args(argv)

    settings = Settings()
    kinds = {f.name: f.type for f in fields(Settings)}
    path = args.config or environ.get("XAPI_CONFIG") or (
        DEFAULT_CONFIG_FILE if os.path.exists(DEFAULT_CONFIG_FILE) else None)
    if path:
        with open(path, "rb") as f:
            for key, value in tomllib.load(f).items():
                if key not in kinds:
                    parser.error(f"{path}: unknown setting {key!r}")
                setattr(settings, key, _coerce(kinds[key], value))
    for name, kind in kinds.items():
        env = environ.get(f"XAPI_{name.upper()}")
        if env is not None:
            setattr(settings, name, _coerce(kind, env))
    for name in kinds:
        value = getattr(args, name, None)
        if value is not None:
            setattr(settings, name, value)
    return settings
