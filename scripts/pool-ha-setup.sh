#!/usr/bin/env bash
# Pool HA (README "Pool HA"): make this host one of the three that hold the pool
# database: an etcd member (Patroni's consensus store) and a Patroni managing its
# PostgreSQL 15, with synchronous replication, all from Debian's packages, TLS between
# the hosts, and passwords derived from the pool secret (every host that has the
# secret derives the same ones; nothing else to hand around).
#
#   pool-ha-setup.sh --name h1 --address 10.0.0.1 \
#       --members h1=10.0.0.1,h2=10.0.0.2,h3=10.0.0.3 \
#       --secret-file /var/lib/xapi-py/ptoken --ca-dir /etc/xapi-py/pool-ca [--new-ca]
#       [--allow CIDR]... [--root DIR] [--no-install] [--no-start] [--join]
#
# --join: this host joins a running cluster (a third host, or one back after
# pool.eject): its etcd starts with cluster state "existing", to be added as a learner
# first and promoted once caught up (services/pool/ha_members.py does both, one
# membership change at a time); --members then lists the running members and this one.
#
# Watchdog: Patroni is configured with `watchdog: mode: automatic` on /dev/watchdog,
# so a leader whose Patroni hangs is reset by the kernel before another host is
# promoted. Without a hardware watchdog the script loads Linux's softdog and lets the
# postgres user open the device; where neither exists (a container) Patroni runs
# without one and says so in its log.
#
# TLS: one pool CA signs every host's certificate (its address as subject alternative
# name). `--new-ca` makes the CA on the first host; copy the CA dir (ca.pem, ca.key)
# to the two others before running the script there. etcd (peers and clients) and
# PostgreSQL (clients and replication: hostssl only) require certificates of that CA;
# Patroni's REST API serves one. Only the listed hosts (and `--allow` networks, e.g. an
# administrator's) may log in to PostgreSQL, with a password, over TLS. `--root DIR` writes everything under DIR (a test,
# or a look before installing) and starts nothing. Prints the xapi.toml lines.
set -euo pipefail

NAME="" ADDRESS="" MEMBERS="" SECRET_FILE="/var/lib/xapi-py/ptoken" CA_DIR=""
NEW_CA=0 JOIN=0 ALLOW=() ROOT="" INSTALL=1 START=1 DATA="/var/lib/xapi-py-ha" PG_BIN=/usr/lib/postgresql/15/bin
# Patroni's timings (loop_wait + 2 * retry_timeout <= ttl): a dead leader is replaced
# after about ttl seconds, and a new coordinator serves some 4-8 s later (README "Pool
# HA"), so ttl 15 keeps the 30 s goal with room. A leader whose Patroni cannot renew
# its key for ttl seconds (a host stalled that long) loses it: a shorter ttl would
# fail over on stalls of a loaded host.
TTL=15 LOOP_WAIT=2 RETRY_TIMEOUT=5
# The watchdog fires this long before the leader key would expire (Patroni's rule:
# safety_margin < ttl - loop_wait).
WATCHDOG_SAFETY_MARGIN=5
die() { echo "pool-ha-setup: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --name) NAME=$2; shift 2;;
    --address) ADDRESS=$2; shift 2;;
    --members) MEMBERS=$2; shift 2;;
    --secret-file) SECRET_FILE=$2; shift 2;;
    --ca-dir) CA_DIR=$2; shift 2;;
    --new-ca) NEW_CA=1; shift;;
    --join) JOIN=1; shift;;
    --allow) ALLOW+=("$2"); shift 2;;
    --root) ROOT=$2; INSTALL=0; START=0; shift 2;;
    --data-dir) DATA=$2; shift 2;;
    --ttl) TTL=$2; shift 2;;
    --no-install) INSTALL=0; shift;;
    --no-start) START=0; shift;;
    *) die "unknown argument: $1";;
  esac
done
[ -n "$NAME" ] && [ -n "$ADDRESS" ] && [ -n "$MEMBERS" ] && [ -n "$CA_DIR" ] \
  || die "--name, --address, --members and --ca-dir are required"
[[ "$NAME" =~ ^[A-Za-z0-9_-]+$ ]] || die "--name: letters, digits, - and _ only"
[ -r "$SECRET_FILE" ] || die "cannot read the pool secret in $SECRET_FILE"
IFS=, read -r -a PEERS <<< "$MEMBERS"
[ "${#PEERS[@]}" -ge 3 ] || die "--members: three hosts or more (two fail over only by hand)"
case ",$MEMBERS," in *",$NAME=$ADDRESS,"*) ;; *) die "--members must list $NAME=$ADDRESS";; esac

if [ "$INSTALL" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  missing=()
  for p in postgresql-15 patroni etcd-server etcd-client openssl python3; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

ETC="$ROOT/etc" DATA="$ROOT$DATA"
TLS="$ETC/xapi-py/pool-ha"
mkdir -p "$TLS" "$ETC/patroni" "$ETC/etcd" "$ETC/default" "$DATA"
CA_DIR="$ROOT$CA_DIR"

# -- passwords: HMAC-SHA256 of a purpose under the pool secret ----------------------
derive() {
  python3 -c 'import hmac,hashlib,sys; s=open(sys.argv[1],"rb").read().strip(); print(hmac.new(s, b"xapi-py pool-ha " + sys.argv[2].encode(), hashlib.sha256).hexdigest())' \
    "$SECRET_FILE" "$1"
}
SUPERUSER_PASSWORD=$(derive postgres-superuser)
REPLICATION_PASSWORD=$(derive postgres-replication)
REWIND_PASSWORD=$(derive postgres-rewind)
REST_PASSWORD=$(derive patroni-rest)
CLUSTER_TOKEN="xapi-pool-$(derive etcd-cluster | cut -c1-16)"

# -- certificates ----------------------------------------------------------------------
if [ "$NEW_CA" = 1 ] && [ ! -f "$CA_DIR/ca.key" ]; then
  mkdir -p "$CA_DIR" && chmod 700 "$CA_DIR"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
    -subj "/CN=xapi-py pool CA" -keyout "$CA_DIR/ca.key" -out "$CA_DIR/ca.pem" 2>/dev/null
fi
[ -f "$CA_DIR/ca.key" ] && [ -f "$CA_DIR/ca.pem" ] \
  || die "no pool CA in $CA_DIR: --new-ca on the first host, then copy the dir here"
cp "$CA_DIR/ca.pem" "$TLS/ca.pem"
if [ ! -f "$TLS/host.pem" ]; then
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$NAME" \
    -keyout "$TLS/host.key" -out "$TLS/host.csr" 2>/dev/null
  printf 'subjectAltName=IP:%s,IP:127.0.0.1,DNS:%s\nextendedKeyUsage=serverAuth,clientAuth\n' \
    "$ADDRESS" "$NAME" > "$TLS/host.ext"
  openssl x509 -req -in "$TLS/host.csr" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca.key" \
    -CAcreateserial -days 3650 -extfile "$TLS/host.ext" -out "$TLS/host.pem" 2>/dev/null
  rm -f "$TLS/host.csr" "$TLS/host.ext"
fi
chown -R postgres:postgres "$TLS" "$DATA"
chmod 600 "$TLS/host.key"

# -- etcd ------------------------------------------------------------------------------
initial="" endpoints=""
for peer in "${PEERS[@]}"; do
  initial+="${initial:+,}${peer%%=*}=https://${peer#*=}:2380"
  endpoints+="${endpoints:+, }'${peer#*=}:2379'"
done
cat > "$ETC/etcd/etcd.yml" <<EOF
name: '$NAME'
data-dir: '$DATA/etcd'
listen-peer-urls: 'https://$ADDRESS:2380'
initial-advertise-peer-urls: 'https://$ADDRESS:2380'
listen-client-urls: 'https://$ADDRESS:2379,https://127.0.0.1:2379'
advertise-client-urls: 'https://$ADDRESS:2379'
initial-cluster: '$initial'
initial-cluster-state: '$( [ "$JOIN" = 1 ] && echo existing || echo new )'
initial-cluster-token: '$CLUSTER_TOKEN'
enable-grpc-gateway: true
# a member cut off one way (hears nobody, is heard) must not unseat the leader with
# ever higher election terms: it asks first whether it could win (etcd >= 3.4)
pre-vote: true
client-transport-security:
  cert-file: '$TLS/host.pem'
  key-file: '$TLS/host.key'
  trusted-ca-file: '$TLS/ca.pem'
  client-cert-auth: true
peer-transport-security:
  cert-file: '$TLS/host.pem'
  key-file: '$TLS/host.key'
  trusted-ca-file: '$TLS/ca.pem'
  client-cert-auth: true
EOF
echo "DAEMON_ARGS=\"--config-file $ETC/etcd/etcd.yml\"" > "$ETC/default/etcd"

# -- Patroni and PostgreSQL ------------------------------------------------------------
subnets=""
for peer in "${PEERS[@]}"; do subnets+="    - hostssl replication replicator ${peer#*=}/32 scram-sha-256
    - hostssl all all ${peer#*=}/32 scram-sha-256
"; done
for net in "${ALLOW[@]}"; do subnets+="    - hostssl all all $net scram-sha-256
"; done
cat > "$ETC/patroni/config.yml" <<EOF
scope: xapi-pool
name: '$NAME'
restapi:
  listen: '$ADDRESS:8008'
  connect_address: '$ADDRESS:8008'
  certfile: '$TLS/host.pem'
  keyfile: '$TLS/host.key'
  cafile: '$TLS/ca.pem'
  authentication: {username: 'patroni', password: '$REST_PASSWORD'}
etcd3:
  hosts: [$endpoints]
  protocol: https
  cacert: '$TLS/ca.pem'
  cert: '$TLS/host.pem'
  key: '$TLS/host.key'
bootstrap:
  dcs:
    ttl: $TTL
    loop_wait: $LOOP_WAIT
    retry_timeout: $RETRY_TIMEOUT
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      parameters:
        synchronous_commit: 'on'
        wal_log_hints: 'on'
        # a replica retries streaming this often once its primary is gone (5 s by
        # default): after a failover, the new primary's first synchronous commit
        # waits until its standby's next try
        wal_retrieve_retry_interval: '500ms'
        ssl: 'on'
        ssl_cert_file: '$TLS/host.pem'
        ssl_key_file: '$TLS/host.key'
        ssl_ca_file: '$TLS/ca.pem'
  initdb: [{encoding: UTF8}, {auth-local: peer}]
watchdog:
  mode: automatic
  device: /dev/watchdog
  safety_margin: $WATCHDOG_SAFETY_MARGIN
postgresql:
  listen: '$ADDRESS:5432'
  connect_address: '$ADDRESS:5432'
  data_dir: '$DATA/pgdata'
  bin_dir: '$PG_BIN'
  pgpass: '$DATA/pgpass'
  parameters:
    unix_socket_directories: '$DATA'
  authentication:
    superuser: {username: postgres, password: '$SUPERUSER_PASSWORD', sslmode: verify-ca, sslrootcert: '$TLS/ca.pem'}
    replication: {username: replicator, password: '$REPLICATION_PASSWORD', sslmode: verify-ca, sslrootcert: '$TLS/ca.pem'}
    rewind: {username: rewinder, password: '$REWIND_PASSWORD', sslmode: verify-ca, sslrootcert: '$TLS/ca.pem'}
  pg_hba:
    - local all all peer
$subnets
EOF
chown postgres:postgres "$ETC/patroni/config.yml"
chmod 600 "$ETC/patroni/config.yml" "$ETC/etcd/etcd.yml"

# The watchdog device for Patroni (run as postgres): softdog if the host has no
# hardware one, loaded at every boot, the device owned by postgres.
mkdir -p "$ETC/modules-load.d" "$ETC/udev/rules.d"
echo softdog > "$ETC/modules-load.d/xapi-py-softdog.conf"
echo 'KERNEL=="watchdog", OWNER="postgres", GROUP="postgres", MODE="0600"' \
  > "$ETC/udev/rules.d/61-xapi-py-watchdog.rules"
if [ "$START" = 1 ]; then
  [ -e /dev/watchdog ] || modprobe softdog 2>/dev/null \
    || echo "pool-ha-setup: no /dev/watchdog and no softdog: Patroni runs without a watchdog" >&2
  [ -e /dev/watchdog ] && chown postgres:postgres /dev/watchdog
fi

if [ "$START" = 1 ] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
  systemctl enable --now etcd
  systemctl enable --now patroni
fi

# xapi-py's own password for the pool database, in a libpq password file (root only).
hosts="" PGPASS="$ETC/xapi-py/pool-ha.pgpass"
: > "$PGPASS" && chmod 600 "$PGPASS"
for peer in "${PEERS[@]}"; do
  hosts+="${hosts:+,}${peer#*=}:5432"
  echo "${peer#*=}:5432:*:postgres:$SUPERUSER_PASSWORD" >> "$PGPASS"
done
cat <<EOF
# xapi.toml of this host (README "Pool HA"); start the server with PGPASSFILE=$PGPASS
patroni_url = "https://$ADDRESS:8008"
patroni_ca_file = "$TLS/ca.pem"
ha_database_url = "postgresql://postgres@$hosts/xapi_pool?target_session_attrs=read-write&sslmode=verify-ca&sslrootcert=$TLS/ca.pem"
EOF
