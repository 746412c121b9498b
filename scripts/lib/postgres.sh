# Starts a throwaway PostgreSQL server on a free loopback port (installing PostgreSQL from Debian's packages when
# it is missing) and exports CARAVAN_TEST_POSTGRES_URL. Source this file, call caravan_postgres_start, and the
# server is stopped and its files removed when the shell exits.

caravan_postgres_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

caravan_postgres_start() {
    local bin
    if ! bin=$(caravan_postgres_bin); then
        echo "PostgreSQL is not installed; installing it from Debian's packages..." >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2
        apt-get install -y -qq postgresql >&2
        bin=$(caravan_postgres_bin) || { echo "error: PostgreSQL could not be installed" >&2; return 1; }
    fi

    CARAVAN_PG_DIR=$(mktemp -d /tmp/caravan-pg.XXXXXX)
    local user=""
    if [ "$(id -u)" = 0 ]; then
        # PostgreSQL refuses to run as root.
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        user=postgres
        chown "$user" "$CARAVAN_PG_DIR"
    fi
    local port
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
    run_as() { if [ -n "$user" ]; then runuser -u "$user" -- "$@"; else "$@"; fi; }

    run_as "$bin/initdb" -D "$CARAVAN_PG_DIR/data" -U caravan --auth=trust --no-sync >"$CARAVAN_PG_DIR/initdb.log" 2>&1 \
        || { cat "$CARAVAN_PG_DIR/initdb.log" >&2; return 1; }
    # Tests trade durability for speed; benchmarks (CARAVAN_PG_DURABLE=1) keep PostgreSQL's defaults.
    local durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    [ "${CARAVAN_PG_DURABLE:-0}" = 1 ] && durability=""
    # CARAVAN_PG_SETTINGS adds server settings, e.g. "-c log_min_duration_statement=0" to time every statement.
    durability="$durability ${CARAVAN_PG_SETTINGS:-}"
    run_as "$bin/pg_ctl" -D "$CARAVAN_PG_DIR/data" -l "$CARAVAN_PG_DIR/server.log" -w -t 60 \
        -o "-p $port -k $CARAVAN_PG_DIR -c listen_addresses=127.0.0.1 $durability -c max_connections=400" \
        start >/dev/null || { cat "$CARAVAN_PG_DIR/server.log" >&2; return 1; }
    CARAVAN_PG_BIN=$bin
    CARAVAN_PG_USER=$user
    export CARAVAN_TEST_POSTGRES_URL="postgres://caravan@127.0.0.1:$port/postgres?sslmode=disable"
    trap caravan_postgres_stop EXIT
    echo "PostgreSQL is running on 127.0.0.1:$port (data in $CARAVAN_PG_DIR)" >&2
}

caravan_postgres_stop() {
    if [ -n "${CARAVAN_PG_DIR:-}" ] && [ -d "$CARAVAN_PG_DIR/data" ]; then
        if [ -n "${CARAVAN_PG_USER:-}" ]; then
            runuser -u "$CARAVAN_PG_USER" -- "$CARAVAN_PG_BIN/pg_ctl" -D "$CARAVAN_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        else
            "$CARAVAN_PG_BIN/pg_ctl" -D "$CARAVAN_PG_DIR/data" -m immediate stop >/dev/null 2>&1 || true
        fi
        rm -rf "$CARAVAN_PG_DIR"
    fi
}
