#!/bin/sh
# One pod of the redis StatefulSet. The primary is the one the sentinels name (after a failover
# any pod may be); with no sentinel answering (the first start) it is INITIAL_PRIMARY, pod 0.
# Every pod announces its stable DNS name (ANNOUNCE_HOST), not its IP, which changes when the
# pod is recreated. As compose's redis: AOF on the volume (DATA_DIR), fsynced before each reply.
set -eu
. "$(dirname "$0")/sentinels.sh"

if found=$(sentinel_primary); then
    # shellcheck disable=SC2086  # "host port"
    set -- $found
else
    set -- "$INITIAL_PRIMARY" "$REDIS_PORT"
fi
primary_host=$1 primary_port=$2

set -- --port "$REDIS_PORT" --dir "$DATA_DIR" --appendonly yes --appendfsync always \
    --protected-mode no --replica-announce-ip "$ANNOUNCE_HOST"
if [ "$primary_host" != "$ANNOUNCE_HOST" ]; then
    echo "replica of $primary_host:$primary_port"
    set -- "$@" --replicaof "$primary_host" "$primary_port"
else
    echo "primary"
fi
exec redis-server "$@"
