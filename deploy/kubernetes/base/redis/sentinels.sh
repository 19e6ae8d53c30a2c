# Sourced by redis-server.sh and redis-sentinel.sh (POSIX sh, busybox included).
# DISTREWARD_REDIS_SENTINELS: host:port,... (the list the service reads);
# DISTREWARD_REDIS_MASTER_NAME: the name the sentinels monitor the primary by.

# Prints "host port" of the primary the first answering sentinel names; fails when none does
# (first start of the cluster, or every sentinel down).
sentinel_primary() {
    for address in $(printf '%s' "$DISTREWARD_REDIS_SENTINELS" | tr ',' ' '); do
        answer=$(timeout 3 redis-cli -h "${address%:*}" -p "${address##*:}" --raw \
            SENTINEL get-master-addr-by-name "$DISTREWARD_REDIS_MASTER_NAME" 2>/dev/null) \
            || continue
        # shellcheck disable=SC2086  # split into host and port
        set -- $answer
        if [ "$#" -eq 2 ]; then
            echo "$1 $2"
            return 0
        fi
    done
    return 1
}
