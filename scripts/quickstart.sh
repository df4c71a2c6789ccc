#!/usr/bin/env bash
# Bring pglater up in front of a local PostgreSQL, in the foreground. Ctrl-C stops it.
#
# Without PGLATER_UPSTREAM (the default): installs PostgreSQL from Debian packages if initdb is
# missing, builds pglater (cargo build --release), starts a throwaway PostgreSQL cluster (as the
# `postgres` OS user, in a temp dir under /tmp, on a free loopback port, trust auth, loopback
# only) and runs
#     pglater --listen 127.0.0.1:6432 --upstream 127.0.0.1:<port> --auth trust
# On exit the throwaway cluster is stopped and its directory removed.
#
# With PGLATER_UPSTREAM=host:port: builds pglater and runs it with config.toml (or
# $PGLATER_CONFIG) in front of that server; users and passwords come from the config file.
#
# Environment: PGLATER_LISTEN (default 127.0.0.1:6432), PGLATER_UPSTREAM, PGLATER_CONFIG,
# KEEP_CLUSTER=1 to leave the throwaway cluster's directory in place after exit.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

listen=${PGLATER_LISTEN:-127.0.0.1:6432}
listen_host=${listen%:*}
listen_port=${listen##*:}

command -v cargo >/dev/null 2>&1 || die "cargo not found: install Rust from https://rustup.rs"

cd "$root"
if [ -n "${PGLATER_UPSTREAM:-}" ]; then
    log "cargo build --release"
    cargo build --release
    config=${PGLATER_CONFIG:-$root/config.toml}
    log "pglater in front of $PGLATER_UPSTREAM, config $config (users come from it)"
    log "connect with: psql -h <listen host> -p <listen port> -U <user> <database>"
    # PGLATER_UPSTREAM (and PGLATER_LISTEN, PGLATER_AUTH, ... when set) override the file.
    exec "$root/target/release/pglater" --config "$config"
fi

pg_ensure_installed
log "cargo build --release"
cargo build --release

if (: <"/dev/tcp/127.0.0.1/$listen_port") 2>/dev/null; then
    die "something already listens on port $listen_port: stop it or set PGLATER_LISTEN=127.0.0.1:<port>"
fi

pgdir=$(mktemp -d /tmp/pglater-quickstart.XXXXXX)
pg_port=$(pg_free_port)
pglater_pid=

# shellcheck disable=SC2317 # called through the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$pglater_pid" ]; then
        stop_pid "$pglater_pid" 10
    fi
    pg_cluster_stop "$pgdir"
    if [ "${KEEP_CLUSTER:-0}" = 1 ]; then
        log "kept $pgdir"
    else
        rm -rf "$pgdir"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

pg_cluster_start "$pgdir" "$pg_port"

log "starting pglater --listen $listen --upstream 127.0.0.1:$pg_port --auth trust"
"$root/target/release/pglater" --listen "$listen" --upstream "127.0.0.1:$pg_port" --auth trust &
pglater_pid=$!

if ! wait_for_port "$listen_port" 60 "$pglater_pid"; then
    die "pglater did not start listening on $listen"
fi
cat >&2 <<EOF

pglater is listening on $listen, relaying to the throwaway PostgreSQL on 127.0.0.1:$pg_port.
Connect with:

    psql -h $listen_host -p $listen_port -U postgres postgres

Press Ctrl-C to stop pglater and the throwaway cluster.

EOF

set +e
wait "$pglater_pid"
rc=$?
set -e
pglater_pid=
log "pglater exited with status $rc"
exit "$rc"
