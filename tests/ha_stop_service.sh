#!/bin/sh
# What `systemctl disable --now <service>.service` does on a real host, for a node of
# tests/ha_harness.py's cluster: SIGTERM to the node's etcd or Patroni (the processes
# started with <node dir>/<service>.yml), then wait until they are gone. The servers of
# tests/ha_pool.py run it as their ha_service_stop_command (pool.eject of a host).
# Usage: ha_stop_service.sh <node dir> <service>
config="$1/$2.yml"
pids=$(pgrep -f -- "$config")
[ -n "$pids" ] && kill -TERM $pids
tries=0
while pgrep -f -- "$config" >/dev/null; do
    tries=$((tries + 1))
    if [ "$tries" -gt 600 ]; then
        echo "$2 of $1 did not stop in 60 s" >&2
        exit 1
    fi
    sleep 0.1
done
