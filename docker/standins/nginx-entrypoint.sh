#!/bin/sh
# What the official nginx image's /docker-entrypoint.sh does that the cluster relies on, in its
# order: with NGINX_ENTRYPOINT_LOCAL_RESOLVERS set, NGINX_LOCAL_RESOLVERS = the nameservers of
# /etc/resolv.conf; then the executable /docker-entrypoint.d/*.envsh are sourced and *.sh run;
# then every /etc/nginx/templates/*.template becomes /etc/nginx/conf.d/* with the defined
# environment variables substituted (nginx's own $variables are left alone).
set -eu
if [ "${1:-}" = nginx ]; then
    if [ -n "${NGINX_ENTRYPOINT_LOCAL_RESOLVERS:-}" ]; then
        NGINX_LOCAL_RESOLVERS=$(awk 'BEGIN{ORS=" "} $1=="nameserver" {if ($2 ~ ":") {print "["$2"]"} else {print $2}}' /etc/resolv.conf)
        export NGINX_LOCAL_RESOLVERS
    fi
    for script in /docker-entrypoint.d/*; do
        [ -x "$script" ] || continue
        case "$script" in
            *.envsh) . "$script" ;;
            *.sh) "$script" ;;
        esac
    done
    if [ -d /etc/nginx/templates ]; then
        defined=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
        for template in /etc/nginx/templates/*.template; do
            [ -f "$template" ] || continue
            name=$(basename "$template" .template)
            envsubst "$defined" < "$template" > "/etc/nginx/conf.d/$name"
        done
    fi
fi
exec "$@"
