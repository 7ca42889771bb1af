#!/usr/bin/env bash
# Entry point of docker/podman/postgres.Dockerfile: on an empty data directory, initdb with
# POSTGRES_USER as the superuser and its password (POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD),
# POSTGRES_DB, and the init scripts of /docker-entrypoint-initdb.d run against a server that
# listens on its socket only; then the server in the foreground on every address.
set -euo pipefail

user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
password="${POSTGRES_PASSWORD:-}"
if [[ -n "${POSTGRES_PASSWORD_FILE:-}" ]]; then password="$(head -n 1 "$POSTGRES_PASSWORD_FILE")"; fi
[[ -n "$password" ]] || { echo "postgres-entrypoint: set POSTGRES_PASSWORD_FILE or POSTGRES_PASSWORD" >&2; exit 1; }

if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
    pwfile="$(mktemp)"
    printf '%s\n' "$password" >"$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 -D "$PGDATA" >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
    if [[ "$db" != postgres ]]; then
        psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d postgres -c "CREATE DATABASE \"$db\"" >/dev/null
    fi
    for script in /docker-entrypoint-initdb.d/*; do
        case "$script" in
            *.sql) echo "postgres-entrypoint: running $script" >&2
                psql -v ON_ERROR_STOP=1 -h /var/run/postgresql -U "$user" -d "$db" -f "$script" >/dev/null ;;
            *.sh) echo "postgres-entrypoint: running $script" >&2
                PGHOST=/var/run/postgresql PGUSER="$user" PGDATABASE="$db" bash "$script" ;;
            *) ;;
        esac
    done
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    echo "postgres-entrypoint: initialised $PGDATA (user $user, database $db)" >&2
fi

if [[ "${1:-}" == postgres ]]; then
    shift
    exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql "$@"
fi
exec "$@"
