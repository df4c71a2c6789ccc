#!/usr/bin/env bash
# Relay benchmark: pgbench straight to PostgreSQL vs through pglater vs through PgBouncer.
#
# Starts its own throwaway PostgreSQL (as the `postgres` OS user when run as root) tuned a
# little for the benchmark -- max_connections=200, shared_buffers=256MB, and fsync=off +
# synchronous_commit=off + full_page_writes=off, which are unsafe for real data but fine for a
# throwaway cluster: they take disk flushes out of the write workload so it measures the relay
# more than the disk. Loads `pgbench -i -s $SCALE`, then starts, on loopback:
#   - pglater  (target/release/pglater, --auth trust: one fresh upstream session per client)
#   - PgBouncer (pool_mode=session, auth_type=trust)
# and runs each workload against each target in turn, ROUNDS times (the order of the targets
# rotates every round), and prints the median TPS per workload and target plus the ratios.
# The machine's speed drifts between rounds by more than the proxies differ (the same target
# measured 32k-42k TPS in one run), so the last column is the median of each round's own
# pglater/PgBouncer ratio: runs close together in time compared with each other.
# Everything it started is stopped on exit.
#
# Environment (defaults in brackets):
#   DURATION   seconds per pgbench run                     [10]
#   ROUNDS     rounds (each runs every workload x target)  [5]
#   CLIENTS    pgbench -c                                  [8]
#   THREADS    pgbench -j                                  [2]
#   SCALE      pgbench -i -s                               [10]
#   WORKLOADS  space-separated list out of: select-simple select-extended select-prepared
#              tpcb-simple select-connect (-S with a new connection per transaction, -C)
#              [select-simple select-extended select-prepared tpcb-simple]
#   WARMUP     seconds of a warm-up select run per target before round 1 (0: none)  [3]
#   NO_BUILD=1 use the existing target/release/pglater instead of running cargo build
#   PGLATER_BIN  the pglater binary to benchmark           [target/release/pglater]
#   KEEP_DIR=1 keep the work directory (logs, data) after exit
# Total time is about ROUNDS x 3 x (number of workloads) x DURATION seconds, plus set-up.
#
# Note: pgbench, the proxy and PostgreSQL all share this machine's cores, so a proxy's CPU use
# shows up as lower TPS; compare the ratios, not the absolute numbers, across machines.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
SCALE=${SCALE:-10}
WORKLOADS=${WORKLOADS:-select-simple select-extended select-prepared tpcb-simple}
WARMUP=${WARMUP:-3}
TARGETS=(direct pglater pgbouncer)

workload_args() {
    case $1 in
    select-simple) echo "-S -M simple" ;;
    select-extended) echo "-S -M extended" ;;
    select-prepared) echo "-S -M prepared" ;;
    tpcb-simple) echo "-M simple" ;;
    select-connect) echo "-S -M simple -C" ;;
    *) die "unknown workload '$1'" ;;
    esac
}
for w in $WORKLOADS; do workload_args "$w" >/dev/null; done

# ---------------------------------------------------------------------------------------------
# prerequisites
pg_ensure_installed
command -v pgbench >/dev/null 2>&1 || apt_install postgresql-contrib
command -v pgbouncer >/dev/null 2>&1 || apt_install pgbouncer
command -v pgbench >/dev/null 2>&1 || die "pgbench not found"
command -v pgbouncer >/dev/null 2>&1 || die "pgbouncer not found"

bench_build

# ---------------------------------------------------------------------------------------------
# set-up
pgbouncer_pid=
# shellcheck disable=SC2317 # called by bench_cleanup
bench_stop_extra() {
    if [ -n "$pgbouncer_pid" ]; then stop_pid "$pgbouncer_pid" 10; fi
}
bench_workdir /tmp/pglater-bench.XXXXXX
bench_pg_start \
    "max_connections = 200" \
    "shared_buffers = 256MB" \
    "fsync = off" \
    "synchronous_commit = off" \
    "full_page_writes = off" \
    "log_min_messages = warning"

log "pgbench -i -s $SCALE"
pgbench -i -s "$SCALE" -q -p "$pg_port" >"$work/pgbench-init.log" 2>&1 || {
    cat "$work/pgbench-init.log" >&2
    die "pgbench -i failed"
}

bench_pglater_start --auth trust

pgbouncer_port=$(pg_free_port)
mkdir -p "$work/bouncer"
printf '"postgres" ""\n' >"$work/bouncer/userlist.txt"
cat >"$work/bouncer/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgbouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $work/bouncer/userlist.txt
pool_mode = session
max_client_conn = 1000
default_pool_size = 150
max_db_connections = 0
logfile = $work/bouncer/pgbouncer.log
pidfile =
ignore_startup_parameters = extra_float_digits
EOF
if [ "$(id -u)" -eq 0 ]; then chown -R postgres: "$work/bouncer"; fi
log "starting PgBouncer on 127.0.0.1:$pgbouncer_port (log: $work/bouncer/pgbouncer.log)"
if [ "$(id -u)" -eq 0 ]; then
    pgbouncer -u postgres "$work/bouncer/pgbouncer.ini" >"$work/bouncer/stderr.log" 2>&1 &
else
    pgbouncer "$work/bouncer/pgbouncer.ini" >"$work/bouncer/stderr.log" 2>&1 &
fi
pgbouncer_pid=$!
wait_for_port "$pgbouncer_port" 30 "$pgbouncer_pid" || {
    cat "$work/bouncer/stderr.log" "$work/bouncer/pgbouncer.log" >&2 || true
    die "PgBouncer did not start"
}

target_port() {
    case $1 in
    direct) echo "$pg_port" ;;
    pglater) echo "$pglater_port" ;;
    pgbouncer) echo "$pgbouncer_port" ;;
    esac
}

# Check every target answers before spending minutes on it.
for t in "${TARGETS[@]}"; do
    psql -X -q -At -p "$(target_port "$t")" -c 'select 1' >/dev/null 2>"$work/check-$t.log" || {
        cat "$work/check-$t.log" >&2
        die "$t does not answer a query"
    }
done

# ---------------------------------------------------------------------------------------------
# runs
# run_pgbench TARGET SECONDS ARGS... -> prints TPS, or "fail"
run_pgbench() {
    local target=$1 secs=$2 out
    shift 2
    # shellcheck disable=SC2068 # ARGS are single words on purpose
    if out=$(pgbench -p "$(target_port "$target")" -c "$CLIENTS" -j "$THREADS" -T "$secs" \
        $@ 2>&1); then
        printf '%s\n' "$out" >>"$work/pgbench.log"
        awk '/^tps = / { print $3; exit }' <<<"$out"
    else
        printf '%s\n' "$out" >>"$work/pgbench.log"
        printf 'pgbench against %s failed:\n%s\n' "$target" "$out" >&2
        echo fail
    fi
}

declare -A results round_tps round_ratios
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "fail" || b == "fail" || b + 0 == 0) print "-"; else printf "%.3f\n", a / b }'
}
pg_version=$(psql -X -At -p "$pg_port" -c 'show server_version')
{
    echo "pglater relay benchmark"
    echo "  pglater:    $pglater_bin (commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'))"
    echo "  PostgreSQL: $pg_version (fsync=off, synchronous_commit=off, shared_buffers=256MB)"
    echo "  PgBouncer:  $(pgbouncer --version | head -n 1) (pool_mode=session)"
    echo "  pgbench:    -c $CLIENTS -j $THREADS -T $DURATION, scale $SCALE, $ROUNDS rounds, median TPS"
    echo "  machine:    $(nproc) cores; pgbench, proxies and PostgreSQL share them"
} >&2

if [ "$WARMUP" -gt 0 ]; then
    for t in "${TARGETS[@]}"; do
        log "warm-up: $t (${WARMUP}s)"
        run_pgbench "$t" "$WARMUP" -S >/dev/null
    done
fi

for ((r = 0; r < ROUNDS; r++)); do
    for w in $WORKLOADS; do
        for ((i = 0; i < ${#TARGETS[@]}; i++)); do
            t=${TARGETS[$(((i + r) % ${#TARGETS[@]}))]}
            # shellcheck disable=SC2046 # split the workload's flags
            tps=$(run_pgbench "$t" "$DURATION" $(workload_args "$w"))
            log "round $((r + 1))/$ROUNDS  $w  $t: $tps tps"
            results[$w,$t]="${results[$w,$t]:-} $tps"
            round_tps[$t]=$tps
        done
        round_ratios[$w]="${round_ratios[$w]:-} $(ratio "${round_tps[pglater]}" "${round_tps[pgbouncer]}")"
    done
done

# ---------------------------------------------------------------------------------------------
# report
median() { # DECIMALS values... ("fail" anywhere -> fail)
    local decimals=$1
    shift
    printf '%s\n' "$@" | awk -v d="$decimals" '
        $1 == "fail" { bad = 1 }
        $1 != "" && $1 != "fail" { v[n++] = $1 }
        END {
            if (bad || n == 0) { print "fail"; exit }
            # insertion sort: n is small
            for (i = 1; i < n; i++) { x = v[i]; for (j = i - 1; j >= 0 && v[j] > x; j--) v[j + 1] = v[j]; v[j + 1] = x }
            if (n % 2) printf "%.*f\n", d, v[int(n / 2)]
            else printf "%.*f\n", d, (v[n / 2 - 1] + v[n / 2]) / 2
        }'
}

echo
printf '%-16s %14s %14s %14s %15s %17s %18s %20s\n' workload "direct TPS" "pglater TPS" \
    "pgbouncer TPS" pglater/direct pgbouncer/direct pglater/pgbouncer "median round ratio"
for w in $WORKLOADS; do
    # shellcheck disable=SC2086 # the lists are space-separated numbers
    d=$(median 1 ${results[$w,direct]})
    # shellcheck disable=SC2086
    l=$(median 1 ${results[$w,pglater]})
    # shellcheck disable=SC2086
    b=$(median 1 ${results[$w,pgbouncer]})
    # shellcheck disable=SC2086 # one ratio per round ("-" for a failed run)
    m=$(median 3 $(printf '%s\n' ${round_ratios[$w]} | sed 's/^-$/fail/'))
    printf '%-16s %14s %14s %14s %15s %17s %18s %20s\n' "$w" "$d" "$l" "$b" \
        "$(ratio "$l" "$d")" "$(ratio "$b" "$d")" "$(ratio "$l" "$b")" "$m"
done
