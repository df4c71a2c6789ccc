#!/usr/bin/env bash
# LATER benchmark: how fast pglater acknowledges, runs and replays asynchronous jobs.
#
# Starts its own throwaway PostgreSQL (as the `postgres` OS user when run as root; trust auth,
# loopback only, max_connections=200, shared_buffers=256MB) and pglater in front of it
# (target/release/pglater --auth trust, job store in database `postgres` of that server, the
# default). Then measures, printing figures and their targets (no pass/fail):
#   (a) ack rate: pgbench -n -M simple -c $CLIENTS -j $THREADS -T $DURATION with a script
#       holding `LATER SELECT 1`: its tps is the rate of acknowledged (committed) LATERs, with
#       the workers running the jobs meanwhile. The backlog it leaves is drained (and timed)
#       before the next part.
#   (b) end-to-end rate of trivial jobs: $JOBS x `LATER SELECT 1` submitted by $CLIENTS pgbench
#       clients as fast as they are acknowledged; jobs/s = count / (max(finished_at) -
#       min(submitted_at)) once all are terminal.
#   (c) pickup latency, commit to start: started_at - submitted_at (p50, p99) of jobs submitted
#       at a moderate rate (pgbench -R $RATE for $DURATION s), so the queue is not saturated.
#   (d) replay: time to FETCH LATER a $FETCH_ROWS-row result with psql (>/dev/null) against the
#       same SELECT run directly on PostgreSQL and relayed through pglater; median of $RUNS.
#
# Durability: by default the cluster runs with fsync=off, synchronous_commit=off and
# full_page_writes=off (like benches/relay.sh), which takes disk flushes out of the figures;
# DURABLE=1 keeps PostgreSQL's defaults (each acknowledged LATER then waits for a WAL flush,
# shared by a group commit).
#
# Environment (defaults in brackets):
#   DURATION   seconds of (a) and of (c)                        [10]
#   CLIENTS    pgbench clients for (a) and (b)                  [32]
#   THREADS    pgbench -j                                       [2]
#   JOBS       jobs submitted in (b)                            [20000]
#   RATE       LATERs per second in (c)                         [500]
#   FETCH_ROWS rows of the result fetched in (d)                [1000000]
#   RUNS       runs of each timing in (d)                       [3]
#   WORKERS    pglater --workers                                [24; pglater's default is 8]
#              (a job waits for the group commits of its start and of its end, so the
#              end-to-end rate of trivial jobs grows with the jobs in flight, while in (a)
#              the workers take CPU from the acknowledgements; figures of earlier commits,
#              before claims under a backlog gathered the idle workers: 16 workers gave
#              ~5,000 jobs/s e2e and ~23,000 acks/s, 32 gave ~6,900 e2e and 18,000-21,000 acks)
#   DRAIN_TIMEOUT  seconds to wait for a backlog to be run      [600]
#   DURABLE=1  fsync and synchronous_commit on (see above)
#   NO_BUILD=1 use the existing binary instead of running cargo build --release
#   PGLATER_BIN  the pglater binary                             [target/release/pglater]
#   PGLATER_LOG  pglater's log filter (its own default: info, one line per finished job)
#   KEEP_DIR=1 keep the work directory (logs, data) after exit
#   PG_SETTINGS  extra postgresql.conf lines, ';'-separated      []
#   JOB_SQL    the job of (a), (b) and (c)                      [SELECT 1]
#              (`SELECT 1` is a plain query, which runs without the commit fence; a
#              writing one shows the fence's cost: JOB_SQL='INSERT INTO bench_t VALUES (1)'
#              with JOB_SETUP='CREATE TABLE bench_t (a int)')
#   JOB_SETUP  SQL run on the upstream (database postgres) before (a)  []
#
# pgbench, pglater and PostgreSQL share this machine's cores: every figure includes the
# other two's CPU use.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-32}
THREADS=${THREADS:-2}
JOBS=${JOBS:-20000}
RATE=${RATE:-500}
FETCH_ROWS=${FETCH_ROWS:-1000000}
RUNS=${RUNS:-3}
WORKERS=${WORKERS:-24}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
DURABLE=${DURABLE:-0}
JOB_SQL=${JOB_SQL:-SELECT 1}
JOB_SETUP=${JOB_SETUP:-}

# ---------------------------------------------------------------------------------------------
# prerequisites
pg_ensure_installed
command -v pgbench >/dev/null 2>&1 || apt_install postgresql-contrib
command -v pgbench >/dev/null 2>&1 || die "pgbench not found"

bench_build

# ---------------------------------------------------------------------------------------------
# set-up
bench_workdir /tmp/pglater-later-bench.XXXXXX

settings=("max_connections = 200" "shared_buffers = 256MB" "log_min_messages = warning")
if [ "$DURABLE" != 1 ]; then
    settings+=("fsync = off" "synchronous_commit = off" "full_page_writes = off")
fi
# Extra postgresql.conf lines, ';'-separated (e.g. auto_explain to see the store's plans).
if [ -n "${PG_SETTINGS:-}" ]; then
    IFS=';' read -r -a extra <<<"$PG_SETTINGS"
    settings+=("${extra[@]}")
fi
bench_pg_start "${settings[@]}"
bench_pglater_start --auth trust --workers "$WORKERS"

# store SQL -> its output (unaligned, tuples only), straight to PostgreSQL
store() { psql -X -q -At -p "$pg_port" -v ON_ERROR_STOP=1 -c "$1"; }
# the same through pglater
via() { psql -X -q -At -p "$pglater_port" -v ON_ERROR_STOP=1 -c "$1"; }

via 'select 1' >/dev/null || die "pglater does not answer a query"
if [ -n "$JOB_SETUP" ]; then
    store "$JOB_SETUP" >/dev/null
fi
printf 'LATER %s;\n' "$JOB_SQL" >"$work/later.sql"

# Jobs submitted since TS (a clock_timestamp() text) that are not terminal yet.
open_since() {
    store "SELECT count(*) FROM pglater.jobs WHERE submitted_at >= '$1'
             AND state NOT IN ('succeeded', 'failed', 'cancelled')"
}
# Wait until every job submitted since TS is terminal; prints the seconds it took.
wait_terminal_since() {
    local since=$1 start now left
    start=$(date +%s.%N)
    while :; do
        left=$(open_since "$since")
        [ "$left" -eq 0 ] && break
        now=$(date +%s.%N)
        if awk -v s="$start" -v n="$now" -v t="$DRAIN_TIMEOUT" 'BEGIN { exit !(n - s > t) }'; then
            die "$left jobs still not terminal after ${DRAIN_TIMEOUT}s (see $work/pglater.log)"
        fi
        # Each look scans the jobs table: often enough, without taking much CPU from the run.
        sleep 1
    done
    awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", n - s }'
}
now_ts() { store 'SELECT clock_timestamp()'; }

# pgbench ARGS... -> its output (fails loudly)
bench() {
    local out
    if ! out=$(pgbench -n -M simple -p "$pglater_port" -f "$work/later.sql" "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "pgbench $* failed"
    fi
    printf '%s\n' "$out" >>"$work/pgbench.log"
    printf '%s\n' "$out"
}
tps_of() { awk '/^tps = / { printf "%.0f\n", $3; exit }'; }

{
    echo "pglater LATER benchmark"
    echo "  pglater:    $pglater_bin ($(bench_binary_note)), --workers $WORKERS"
    echo "  PostgreSQL: $(store 'show server_version') ($(
        if [ "$DURABLE" = 1 ]; then echo "fsync=on, synchronous_commit=on"; else echo "fsync=off, synchronous_commit=off"; fi
    ), shared_buffers=256MB); job store: database postgres on it"
    echo "  machine:    $(nproc) cores; pgbench, pglater and PostgreSQL share them"
} >&2

# ---------------------------------------------------------------------------------------------
# (a) acknowledged LATER rate
log "(a) ack rate: pgbench -c $CLIENTS -j $THREADS -T $DURATION, LATER $JOB_SQL"
t_a=$(now_ts)
ack_tps=$(bench -c "$CLIENTS" -j "$THREADS" -T "$DURATION" | tps_of)
backlog=$(open_since "$t_a")
log "(a) $ack_tps acknowledged LATERs/s; $backlog jobs left to run; draining"
drain_secs=$(wait_terminal_since "$t_a")
read -r a_count a_secs < <(store "SELECT count(*), extract(epoch FROM max(finished_at) - min(submitted_at))
                                  FROM pglater.jobs WHERE submitted_at >= '$t_a'" | tr '|' ' ')
a_rate=$(awk -v n="$a_count" -v s="$a_secs" 'BEGIN { printf "%.0f\n", (s > 0 ? n / s : 0) }')
log "(a) backlog drained in ${drain_secs}s: $a_count jobs, first submit to last finish ${a_secs}s ($a_rate jobs/s)"

# ---------------------------------------------------------------------------------------------
# (b) end-to-end rate
per_client=$(((JOBS + CLIENTS - 1) / CLIENTS))
log "(b) end-to-end: $((per_client * CLIENTS)) x LATER $JOB_SQL from $CLIENTS clients"
t_b=$(now_ts)
submit_tps=$(bench -c "$CLIENTS" -j "$THREADS" -t "$per_client" | tps_of)
wait_terminal_since "$t_b" >/dev/null
read -r b_count b_failed b_secs < <(store "SELECT count(*), count(*) FILTER (WHERE state <> 'succeeded'),
                                              extract(epoch FROM max(finished_at) - min(submitted_at))
                                         FROM pglater.jobs WHERE submitted_at >= '$t_b'" | tr '|' ' ')
e2e_rate=$(awk -v n="$b_count" -v s="$b_secs" 'BEGIN { printf "%.0f\n", (s > 0 ? n / s : 0) }')
log "(b) $b_count jobs ($b_failed not succeeded) in ${b_secs}s: $e2e_rate jobs/s (submitted at $submit_tps/s)"

# ---------------------------------------------------------------------------------------------
# (c) pickup latency at a moderate rate
lat_clients=4
log "(c) pickup latency: pgbench -R $RATE -c $lat_clients -T $DURATION"
t_c=$(now_ts)
bench -c "$lat_clients" -j "$THREADS" -R "$RATE" -T "$DURATION" >/dev/null
wait_terminal_since "$t_c" >/dev/null
read -r c_count p50 p99 pmax < <(store "SELECT count(*),
        round((1000 * extract(epoch FROM percentile_cont(0.5) WITHIN GROUP (ORDER BY started_at - submitted_at)))::numeric, 2),
        round((1000 * extract(epoch FROM percentile_cont(0.99) WITHIN GROUP (ORDER BY started_at - submitted_at)))::numeric, 2),
        round((1000 * extract(epoch FROM max(started_at - submitted_at)))::numeric, 2)
    FROM pglater.jobs WHERE submitted_at >= '$t_c'" | tr '|' ' ')
log "(c) $c_count jobs: pickup p50 ${p50} ms, p99 ${p99} ms, max ${pmax} ms"

# ---------------------------------------------------------------------------------------------
# (d) FETCH LATER of a large result vs the same SELECT run directly
big_sql="SELECT g, md5(g::text) FROM generate_series(1, $FETCH_ROWS) g"
log "(d) capturing: LATER $big_sql"
t_d=$(now_ts)
big_id=$(via "LATER $big_sql")
wait_terminal_since "$t_d" >/dev/null
read -r d_state d_bytes d_capture < <(store "SELECT state, result_bytes, extract(epoch FROM finished_at - started_at)
                                           FROM pglater.jobs WHERE id = $big_id" | tr '|' ' ')
[ "$d_state" = succeeded ] || die "job $big_id ended $d_state"
log "(d) job $big_id: $d_bytes result bytes captured in ${d_capture}s"

# seconds a command takes (its output discarded)
timeit() {
    local s e
    s=$(date +%s%N)
    "$@" >/dev/null
    e=$(date +%s%N)
    awk -v s="$s" -v e="$e" 'BEGIN { printf "%.3f\n", (e - s) / 1e9 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
fetch_t=() direct_t=() relay_t=()
for ((r = 1; r <= RUNS; r++)); do
    fetch_t+=("$(timeit psql -X -p "$pglater_port" -c "FETCH LATER $big_id")")
    direct_t+=("$(timeit psql -X -p "$pg_port" -c "$big_sql")")
    relay_t+=("$(timeit psql -X -p "$pglater_port" -c "$big_sql")")
    log "(d) run $r/$RUNS: FETCH LATER ${fetch_t[-1]}s, direct ${direct_t[-1]}s, relayed ${relay_t[-1]}s"
done
fetch_med=$(median "${fetch_t[@]}")
direct_med=$(median "${direct_t[@]}")
relay_med=$(median "${relay_t[@]}")

# ---------------------------------------------------------------------------------------------
# report
meets() { # value op target -> "yes"/"no"
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 < t + 0); print (ok ? "yes" : "no") }'
}
echo
printf '%-46s %14s %12s %5s\n' figure measured target met
printf '%-46s %14s %12s %5s\n' "(a) acknowledged LATERs/s (-c $CLIENTS)" "$ack_tps" ">= 20000" "$(meets "$ack_tps" ">=" 20000)"
printf '%-46s %14s %12s %5s\n' "(a) backlog run, jobs/s ($a_count jobs)" "$a_rate" "" ""
printf '%-46s %14s %12s %5s\n' "(b) end-to-end trivial jobs/s ($b_count jobs)" "$e2e_rate" ">= 5000" "$(meets "$e2e_rate" ">=" 5000)"
printf '%-46s %14s %12s %5s\n' "(b) not succeeded" "$b_failed" "0" "$(meets "$b_failed" "<" 1)"
printf '%-46s %14s %12s %5s\n' "(c) pickup p50, ms (-R $RATE, $c_count jobs)" "$p50" "< 5" "$(meets "$p50" "<" 5)"
printf '%-46s %14s %12s %5s\n' "(c) pickup p99, ms" "$p99" "< 25" "$(meets "$p99" "<" 25)"
printf '%-46s %14s %12s %5s\n' "(c) pickup max, ms" "$pmax" "" ""
printf '%-46s %14s %12s %5s\n' "(d) capture of $FETCH_ROWS rows, s (job run)" "$d_capture" "" ""
printf '%-46s %14s %12s %5s\n' "(d) psql FETCH LATER, s (median of $RUNS)" "$fetch_med" "" ""
printf '%-46s %14s %12s %5s\n' "(d) psql same SELECT direct, s" "$direct_med" "" ""
printf '%-46s %14s %12s %5s\n' "(d) psql same SELECT through pglater, s" "$relay_med" "" ""
printf '%-46s %14s %12s %5s\n' "(d) FETCH LATER / direct" \
    "$(awk -v a="$fetch_med" -v b="$direct_med" 'BEGIN { printf "%.2f\n", (b > 0 ? a / b : 0) }')" "" ""
