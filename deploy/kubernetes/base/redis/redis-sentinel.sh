#!/bin/sh
# One pod of the redis-sentinel StatefulSet. Its configuration lives on its volume (DATA_DIR):
# a sentinel rewrites it as it learns the primary, the replicas, the other sentinels and the
# epoch, and a restarted sentinel carries on from there. On the first start it monitors the
# primary the other sentinels name, or INITIAL_PRIMARY, once that answers (a sentinel refuses
# to start on a name that does not resolve yet).
set -eu
. "$(dirname "$0")/sentinels.sh"

conf=$DATA_DIR/sentinel.conf
if [ ! -s "$conf" ]; then
    if found=$(sentinel_primary); then
        # shellcheck disable=SC2086  # "host port"
        set -- $found
    else
        set -- "$INITIAL_PRIMARY" "$REDIS_PORT"
    fi
    until timeout 3 redis-cli -h "$1" -p "$2" PING >/dev/null 2>&1; do
        echo "waiting for the primary $1:$2"
        sleep 2
    done
    name=$DISTREWARD_REDIS_MASTER_NAME
    cat > "$conf.new" <<CONF
port $SENTINEL_PORT
protected-mode no
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $ANNOUNCE_HOST
sentinel monitor $name $1 $2 $SENTINEL_QUORUM
sentinel down-after-milliseconds $name $SENTINEL_DOWN_AFTER_MILLISECONDS
sentinel failover-timeout $name $SENTINEL_FAILOVER_TIMEOUT_MILLISECONDS
sentinel parallel-syncs $name 1
CONF
    mv "$conf.new" "$conf"
fi
exec redis-server "$conf" --sentinel
