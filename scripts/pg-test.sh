#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store tests; never touches the system cluster.
#
#   eval "$(scripts/pg-test.sh start [DIR])"   # prints export lines on stdout, logs on stderr
#   pytest tests/test_store*.py                # uses VERITEE_TEST_POSTGRES_URL
#   scripts/pg-test.sh stop "$VERITEE_TEST_POSTGRES_DIR"
#
# start: initdb into DIR/data (DIR defaults to a new temporary directory), trust auth on
#   loopback only, listen on 127.0.0.1 at the first free port from $VERITEE_PG_PORT (default
#   54329), Unix socket inside DIR, durability off (fsync, synchronous_commit) since the data
#   is disposable; create role `veritee` and database `veritee_test` owned by it. Run as root,
#   the server runs as the `postgres` user (DIR is chowned to it). Starting a DIR that already
#   holds a cluster reuses it; if it is running already, only the exports are printed.
#   Prints:  export VERITEE_TEST_POSTGRES_URL=postgresql+psycopg://veritee@127.0.0.1:PORT/veritee_test
#            export VERITEE_TEST_POSTGRES_DIR=DIR
# stop: stop the cluster in DIR; removes DIR too when `start` created it as a temp directory.
set -euo pipefail

usage() { echo "usage: $0 start [DIR] | stop DIR | url DIR" >&2; exit 2; }
log() { echo "pg-test: $*" >&2; }

pg_bindir() {
    if [[ -n "${PG_BINDIR:-}" ]]; then echo "$PG_BINDIR"; return; fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z "$found" ]] && command -v pg_config >/dev/null; then found=$(pg_config --bindir); fi
    if [[ -z "$found" || ! -x "$found/initdb" ]]; then
        log "no PostgreSQL server binaries found (apt-get install -y postgresql, or set PG_BINDIR)"
        exit 1
    fi
    echo "$found"
}

# Run a command as the cluster owner: `postgres` when we are root, else ourselves.
as_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
    local port=${VERITEE_PG_PORT:-54329}
    local last=$((port + 100))
    while port_in_use "$port"; do
        port=$((port + 1))
        if ((port > last)); then log "no free port from ${VERITEE_PG_PORT:-54329}"; exit 1; fi
    done
    echo "$port"
}

print_exports() {
    local dir=$1 port
    port=$(cat "$dir/port")
    echo "export VERITEE_TEST_POSTGRES_URL=postgresql+psycopg://veritee@127.0.0.1:$port/veritee_test"
    echo "export VERITEE_TEST_POSTGRES_DIR=$dir"
}

start() {
    local dir=${1:-} bin port
    bin=$(pg_bindir)
    if [[ -z "$dir" ]]; then
        dir=$(mktemp -d "${TMPDIR:-/tmp}/veritee-pg.XXXXXX")
        touch "$dir/.temporary"
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    if [[ $(id -u) -eq 0 ]]; then
        id postgres >/dev/null 2>&1 || { log "user postgres is missing (install postgresql)"; exit 1; }
        chown postgres: "$dir"
        as_owner test -w "$dir" || { log "$dir is not writable by user postgres: give a DIR it can reach (e.g. under /tmp), or none"; exit 1; }
    fi
    if [[ -f "$dir/data/PG_VERSION" ]] && as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
        log "already running in $dir"
        print_exports "$dir"
        return
    fi
    if [[ ! -f "$dir/data/PG_VERSION" ]]; then
        as_owner "$bin/initdb" -D "$dir/data" --auth-local=trust --auth-host=trust \
            --encoding=UTF8 --locale=C.UTF-8 --no-instructions >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    port=$(free_port)
    as_owner sh -c "echo $port > '$dir/port'"
    as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start -o \
        "-c listen_addresses=127.0.0.1 -p $port -k '$dir' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        >&2 || { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$bin/psql" -h 127.0.0.1 -p "$port" -d postgres -v ON_ERROR_STOP=1 -q >&2 <<'SQL'
SELECT 'CREATE ROLE veritee LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'veritee') \gexec
SELECT 'CREATE DATABASE veritee_test OWNER veritee' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'veritee_test') \gexec
SQL
    log "PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port, data in $dir"
    print_exports "$dir"
}

stop() {
    local dir=${1:-} bin
    [[ -n "$dir" && -d "$dir" ]] || usage
    bin=$(pg_bindir)
    if [[ -f "$dir/data/PG_VERSION" ]]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || true
    fi
    if [[ -f "$dir/.temporary" ]]; then
        rm -rf -- "$dir"
    fi
}

case "${1:-start}" in
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    url) [[ -n "${2:-}" && -f "$2/port" ]] || usage; print_exports "$2" ;;
    *) usage ;;
esac
