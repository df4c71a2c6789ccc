#!/usr/bin/env bash
# Connection-rate benchmark of pglater's logins: relay.sh's select-connect workload (pgbench -S
# -C: a new connection, with its SCRAM login, per transaction) against
#   - direct:      PostgreSQL itself (pg_hba: scram-sha-256 for role bench)
#   - users:       pglater with role bench in [[users]] (its password in the config)
#   - passthrough: pglater with auth_user + auth_query (bench is looked up at each login, its
#                  ClientKey recovered from the SCRAM proof and used for the upstream login)
# both pglater instances with --no-later (the relay's logins only). ROUNDS rounds, the order of
# the targets rotating every round; prints the median TPS (= connections/s) of each and the
# ratios.
#
# Environment (defaults in brackets):
#   DURATION   seconds per pgbench run   [10]
#   ROUNDS     rounds                    [5]
#   CLIENTS    pgbench -c                [8]
#   THREADS    pgbench -j                [2]
#   NO_BUILD=1 use the existing target/release/pglater; PGLATER_BIN the binary to use
#   KEEP_DIR=1 keep the work directory
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
TARGETS=(direct users passthrough)
BENCH_PASSWORD=bench-connect-pw
AUTH_PASSWORD=bench-auth-pw

pg_ensure_installed
command -v pgbench >/dev/null 2>&1 || apt_install postgresql-contrib
bench_build

users_pid=
passthrough_pid=
# shellcheck disable=SC2317 # called by bench_cleanup
bench_stop_extra() {
    for p in $users_pid $passthrough_pid; do stop_pid "$p" 10; done
}
bench_workdir /tmp/pglater-connect.XXXXXX
bench_pg_start "max_connections = 200" "fsync = off" "synchronous_commit = off" \
    "password_encryption = 'scram-sha-256'" "log_min_messages = warning"
# Everyone but postgres logs in with SCRAM over TCP.
printf 'local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n' |
    as_pg tee "$work/pg/data/pg_hba.conf" >/dev/null
psql -X -q -p "$pg_port" -v ON_ERROR_STOP=1 <<SQL
SELECT pg_reload_conf();
CREATE ROLE bench LOGIN PASSWORD '$BENCH_PASSWORD';
CREATE ROLE pglater_auth LOGIN PASSWORD '$AUTH_PASSWORD';
CREATE FUNCTION public.pglater_lookup(usr text) RETURNS TABLE (usename name, passwd text)
  LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS
  \$\$ SELECT rolname, rolpassword FROM pg_catalog.pg_authid WHERE rolname = usr \$\$;
REVOKE ALL ON FUNCTION public.pglater_lookup(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.pglater_lookup(text) TO pglater_auth;
GRANT ALL ON SCHEMA public TO bench;
SQL
log "pgbench -i -s 1 (as bench)"
PGPASSWORD=$BENCH_PASSWORD pgbench -i -s 1 -q -U bench -p "$pg_port" >"$work/init.log" 2>&1 || {
    cat "$work/init.log" >&2
    die "pgbench -i failed"
}

start_pglater() { # NAME CONFIG -> sets ${NAME}_port and ${NAME}_pid
    local name=$1 port
    port=$(pg_free_port)
    printf '%s\n' "$2" >"$work/$name.toml"
    "$pglater_bin" --config "$work/$name.toml" --listen "127.0.0.1:$port" \
        --upstream "127.0.0.1:$pg_port" --no-later >"$work/$name.log" 2>&1 &
    local pid=$!
    wait_for_port "$port" 60 "$pid" || {
        cat "$work/$name.log" >&2
        die "pglater ($name) did not start"
    }
    printf -v "${name}_port" '%s' "$port"
    printf -v "${name}_pid" '%s' "$pid"
}
start_pglater users "$(printf 'auth = "scram"\n[[users]]\nname = "bench"\npassword = "%s"\n' "$BENCH_PASSWORD")"
start_pglater passthrough "$(printf 'auth = "scram"\nauth_user = "pglater_auth"\nauth_query = "SELECT usename, passwd FROM public.pglater_lookup($1)"\n[[users]]\nname = "pglater_auth"\npassword = "%s"\n' "$AUTH_PASSWORD")"

target_port() {
    case $1 in
    direct) echo "$pg_port" ;;
    users) echo "$users_port" ;;
    passthrough) echo "$passthrough_port" ;;
    esac
}
export PGPASSWORD=$BENCH_PASSWORD
for t in "${TARGETS[@]}"; do
    psql -X -q -At -U bench -p "$(target_port "$t")" -c 'select 1' >/dev/null 2>"$work/check-$t.log" || {
        cat "$work/check-$t.log" >&2
        die "$t does not answer a query"
    }
done

run() { # TARGET -> TPS or fail
    local out
    if out=$(pgbench -U bench -p "$(target_port "$1")" -c "$CLIENTS" -j "$THREADS" \
        -T "$DURATION" -S -M simple -C 2>&1); then
        awk '/^tps = / { print $3; exit }' <<<"$out"
    else
        printf '%s\n' "$out" >&2
        echo fail
    fi
}

declare -A results
for ((r = 0; r < ROUNDS; r++)); do
    for ((i = 0; i < ${#TARGETS[@]}; i++)); do
        t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
        tps=$(run "$t")
        log "round $((r + 1))/$ROUNDS  $t: $tps connections/s"
        results[$t]="${results[$t]:-} $tps"
    done
done

median() {
    printf '%s\n' "$@" | awk '$1 == "fail" { bad = 1 } $1 != "" && $1 != "fail" { v[n++] = $1 }
        END { if (bad || !n) { print "fail"; exit }
              for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
              if (n % 2) printf "%.1f\n", v[int(n / 2)]; else printf "%.1f\n", (v[n / 2 - 1] + v[n / 2]) / 2 }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "fail" || b == "fail" || b + 0 == 0) print "-"; else printf "%.3f\n", a / b }'; }
echo "pglater login benchmark: pgbench -S -M simple -C -c $CLIENTS -j $THREADS -T $DURATION, $ROUNDS rounds, $(nproc) cores"
printf '%-12s %22s %12s\n' target "median connections/s" "/ direct"
# shellcheck disable=SC2086 # space-separated numbers
d=$(median ${results[direct]})
for t in "${TARGETS[@]}"; do
    # shellcheck disable=SC2086
    m=$(median ${results[$t]})
    printf '%-12s %22s %12s\n' "$t" "$m" "$(ratio "$m" "$d")"
done
