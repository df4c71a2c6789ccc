#!/usr/bin/env bash
# LATER soak: does one pglater instance stay flat while it runs a million trivial jobs?
#
# Starts its own throwaway PostgreSQL (as the `postgres` OS user when run as root; trust auth,
# loopback only, max_connections=200, shared_buffers=256MB, fsync=off + synchronous_commit=off
# like benches/later.sh) and one pglater in front of it (--auth trust, job store in database
# `postgres` of that server, short retention so ended jobs are removed while the run goes on,
# metrics on a loopback port). Then $CLIENTS pgbench clients submit $JOBS x `LATER SELECT 1`
# (pgbench -t per client, throttled to $RATE LATERs/s in total), and every $SAMPLE seconds a
# sampler records:
#   submitted  jobs submitted so far = ended + backlog (the two are read a moment apart, so
#              this can be off by the few jobs that end in between)
#   ended      jobs this pglater finished, every final state (pglater_jobs_finished_total
#              from its /metrics; the store cannot say, retention removes ended jobs)
#   backlog    jobs in the store not ended yet (scheduled, queued or running)
#   clients    client connections open in pglater (pgbench's; pglater_client_connections_open)
#   RSS_MB     pglater's resident memory (VmRSS of /proc/<pid>/status)
#   fds        pglater's open file descriptors (entries of /proc/<pid>/fd)
#   up_conns   upstream connections: client backends in pg_stat_activity other than the
#              sampler's own. Nobody else connects to this cluster, so all are pglater's:
#              the pgbench clients' relayed sessions, job workers' connections and its store
#              connections. store_conns: those with application_name 'pglater' (the store and
#              control connections; job connections carry the submitter's application_name)
#   store_MB   pg_total_relation_size of pglater.jobs + pglater.result_chunks (with indexes
#              and TOAST)
#   rows       rows in pglater.jobs (every state)
# Phases: `load` while pgbench runs, `drain` until the backlog is run, then `tail` for $TAIL
# more seconds (ended jobs expire, the store should shrink back).
#
# At the end it prints pgbench's summary, the final counts, and a verdict line comparing the
# first `load` sample at or after $WARMUP seconds with the last `load` sample, both taken while
# all $CLIENTS pgbench clients were connected (the ones that finish first close their
# sessions): flat, growing or shrinking for RSS, fds, upstream connections, store size and
# backlog (a growing backlog means the workers do not keep up with $RATE/s, and the store
# grows with it: lower RATE or raise WORKERS for a steady state). It prints figures only; the
# exit status says nothing about the verdict (non-zero only when the run itself broke).
#
# Durations: $JOBS / $RATE seconds of load (a million at the default rate: about 8 minutes,
# if pglater keeps up), then drain and tail. Smoke run, under a minute:
#   JOBS=20000 SAMPLE=2 RETENTION=3 benches/soak.sh
#
# Environment (defaults in brackets):
#   JOBS        jobs submitted in total (rounded up to a multiple of CLIENTS)  [1000000]
#   SAMPLE      seconds between samples                               [10]
#   RATE        LATERs per second over all clients (pgbench -R); 0: as fast as they are
#               acknowledged (the backlog then grows with the difference of the two rates)  [2000]
#   CLIENTS     pgbench clients                                       [8]
#   THREADS     pgbench -j                                            [2]
#   WORKERS     pglater --workers                                     [8]
#   RETENTION   pglater --retention-secs (later.retention_secs)       [30]
#   WARMUP      seconds before the verdict's first sample             [RETENTION + SAMPLE]
#               (the store only levels off once the first ended jobs pass their retention)
#   TAIL        seconds sampled after the backlog is run              [RETENTION + 2 x SAMPLE]
#   DRAIN_TIMEOUT  seconds to wait for the backlog after pgbench ends [600]
#   NO_BUILD=1  use the existing binary instead of running cargo build --release
#   PGLATER_BIN the pglater binary                                    [target/release/pglater]
#   PGLATER_LOG pglater's log filter  [warn: its default, info, writes a line per finished job,
#               a million lines here; the counts of warnings and errors are printed at the end]
#   KEEP_DIR=1  keep the work directory (logs, data, samples) after exit
#
# pgbench, pglater and PostgreSQL share this machine's cores.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

JOBS=${JOBS:-1000000}
SAMPLE=${SAMPLE:-10}
RATE=${RATE:-2000}
CLIENTS=${CLIENTS:-8}
THREADS=${THREADS:-2}
WORKERS=${WORKERS:-8}
RETENTION=${RETENTION:-30}
WARMUP=${WARMUP:-$(awk -v r="$RETENTION" -v s="$SAMPLE" 'BEGIN { print r + s }')}
TAIL=${TAIL:-$(awk -v r="$RETENTION" -v s="$SAMPLE" 'BEGIN { print r + 2 * s }')}
DRAIN_TIMEOUT=${DRAIN_TIMEOUT:-600}
export PGLATER_LOG=${PGLATER_LOG:-warn}

# ---------------------------------------------------------------------------------------------
# prerequisites
pg_ensure_installed
command -v pgbench >/dev/null 2>&1 || apt_install postgresql-contrib
command -v pgbench >/dev/null 2>&1 || die "pgbench not found"
command -v curl >/dev/null 2>&1 || apt_install curl

bench_build

# ---------------------------------------------------------------------------------------------
# set-up
pgbench_pid=
# shellcheck disable=SC2317 # called by bench_cleanup
bench_stop_extra() {
    if [ -n "$pgbench_pid" ]; then stop_pid "$pgbench_pid" 5; fi
}
bench_workdir /tmp/pglater-soak.XXXXXX
bench_pg_start "max_connections = 200" "shared_buffers = 256MB" "log_min_messages = warning" \
    "fsync = off" "synchronous_commit = off" "full_page_writes = off"
metrics_port=$(pg_free_port)
bench_pglater_start --auth trust --workers "$WORKERS" --retention-secs "$RETENTION" \
    --metrics-listen "127.0.0.1:$metrics_port"

store() { psql -X -q -At -p "$pg_port" -v ON_ERROR_STOP=1 -c "$1"; }
via() { psql -X -q -At -p "$pglater_port" -v ON_ERROR_STOP=1 -c "$1"; }

via 'select 1' >/dev/null || die "pglater does not answer a query"
printf 'LATER SELECT 1;\n' >"$work/later.sql"

per_client=$(((JOBS + CLIENTS - 1) / CLIENTS))
total=$((per_client * CLIENTS))
rate_args=()
if [ "$RATE" != 0 ]; then rate_args=(-R "$RATE"); fi

{
    echo "pglater soak"
    echo "  pglater:    $pglater_bin ($(bench_binary_note)), --workers $WORKERS, --retention-secs $RETENTION"
    echo "  PostgreSQL: $(store 'show server_version') (fsync=off, synchronous_commit=off); job store: database postgres on it"
    echo "  load:       $total x LATER SELECT 1 from $CLIENTS pgbench clients ($per_client each), $(
        if [ "$RATE" != 0 ]; then echo "$RATE/s in total"; else echo "unthrottled"; fi)"
    echo "  samples:    every ${SAMPLE}s; verdict from the first load sample at >= ${WARMUP}s to the last"
    echo "  machine:    $(nproc) cores; pgbench, pglater and PostgreSQL share them"
} >&2

# ---------------------------------------------------------------------------------------------
# sampling
elapsed() { awk -v s="$t0" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", n - s }'; }
# Prints one sample's fields:
#   ended backlog clients rss_kb fds up_conns store_conns store_bytes rows
sample() {
    local metrics ended clients rss fds db
    kill -0 "$pglater_pid" 2>/dev/null || {
        tail -n 20 "$work/pglater.log" >&2
        die "pglater died"
    }
    metrics=$(curl -sf --max-time 5 "http://127.0.0.1:$metrics_port/metrics") ||
        die "no answer from pglater's metrics endpoint"
    ended=$(awk '$1 ~ /^pglater_jobs_finished_total\{/ { s += $2 } END { print s + 0 }' <<<"$metrics")
    clients=$(awk '$1 == "pglater_client_connections_open" { print $2 }' <<<"$metrics")
    rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pglater_pid/status")
    fds=$(find "/proc/$pglater_pid/fd" -mindepth 1 -maxdepth 1 | wc -l)
    db=$(store "SELECT (SELECT count(*) FROM pglater.jobs WHERE state IN ('scheduled', 'queued', 'running')),
                       (SELECT count(*) FROM pg_stat_activity
                         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()),
                       (SELECT count(*) FROM pg_stat_activity
                         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
                           AND application_name = 'pglater'),
                       pg_total_relation_size('pglater.jobs') + pg_total_relation_size('pglater.result_chunks'),
                       (SELECT count(*) FROM pglater.jobs)" | tr '|' ' ')
    # shellcheck disable=SC2086 # db is five numbers
    set -- $db
    echo "$ended $1 ${clients:-0} $rss $fds $2 $3 $4 $5"
}
header_fmt='%8s  %-5s  %10s  %10s  %8s  %7s  %7s  %5s  %8s  %11s  %8s  %8s\n'
row_fmt='%8s  %-5s  %10d  %10d  %8d  %7d  %7.1f  %5d  %8d  %11d  %8.1f  %8d\n'
print_header() {
    # shellcheck disable=SC2059
    printf "$header_fmt" elapsed phase submitted ended backlog clients RSS_MB fds up_conns store_conns store_MB rows
}
# elapsed phase ended backlog clients rss_kb fds up_conns store_conns store_bytes rows -> table row
print_row() {
    # shellcheck disable=SC2059
    printf "$row_fmt" "$1" "$2" $(($3 + $4)) "$3" "$4" "$5" \
        "$(awk -v k="$6" 'BEGIN { print k / 1024 }')" "$7" "$8" "$9" \
        "$(awk -v b="${10}" 'BEGIN { print b / 1048576 }')" "${11}"
}

# ---------------------------------------------------------------------------------------------
# the run
log "submitting: pgbench -n -M simple -c $CLIENTS -j $THREADS -t $per_client ${rate_args[*]}"
echo
print_header
printf '%s\n' "$(print_header)" >"$work/samples"
t0=$(date +%s.%N)
pgbench -n -M simple -p "$pglater_port" -f "$work/later.sql" -c "$CLIENTS" -j "$THREADS" \
    -t "$per_client" "${rate_args[@]}" >"$work/pgbench.log" 2>&1 &
pgbench_pid=$!
pgbench_rc=
phase=load
drain_start=
tail_start=
n=0
: >"$work/samples.raw"
while :; do
    n=$((n + 1))
    # sleep until t0 + n x SAMPLE (samples stay on the grid whatever a sample costs)
    wait_s=$(awk -v s="$t0" -v k="$n" -v p="$SAMPLE" -v now="$(date +%s.%N)" \
        'BEGIN { w = s + k * p - now; printf "%.3f\n", (w > 0 ? w : 0) }')
    sleep "$wait_s"
    if [ "$phase" = load ] && ! kill -0 "$pgbench_pid" 2>/dev/null; then
        if wait "$pgbench_pid"; then pgbench_rc=0; else pgbench_rc=$?; fi
        pgbench_pid=
        phase=drain
        drain_start=$(elapsed)
    fi
    read -r ended backlog clients rss fds conns store_conns store_bytes rows < <(sample)
    at=$(elapsed)
    echo "$at $phase $ended $backlog $clients $rss $fds $conns $store_conns $store_bytes $rows" >>"$work/samples.raw"
    print_row "$at" "$phase" "$ended" "$backlog" "$clients" "$rss" "$fds" "$conns" "$store_conns" \
        "$store_bytes" "$rows" |
        tee -a "$work/samples"
    case $phase in
    drain)
        if [ "$backlog" -eq 0 ]; then
            phase="tail"
            tail_start=$at
        elif awk -v a="$at" -v d="$drain_start" -v t="$DRAIN_TIMEOUT" 'BEGIN { exit !(a - d > t) }'; then
            log "backlog of $backlog jobs not run after ${DRAIN_TIMEOUT}s; stopping"
            break
        fi
        ;;
    tail)
        if awk -v a="$at" -v s="$tail_start" -v t="$TAIL" 'BEGIN { exit !(a - s >= t) }'; then break; fi
        ;;
    esac
done

# ---------------------------------------------------------------------------------------------
# report
echo
echo "pgbench (exit status $pgbench_rc):"
grep -E '^(number of (transactions|failed)|latency average|rate limit schedule lag|tps =)' \
    "$work/pgbench.log" | sed 's/^/  /' || true
if [ "$pgbench_rc" != 0 ]; then
    echo "  pgbench failed; its last lines:"
    tail -n 5 "$work/pgbench.log" | sed 's/^/    /'
fi

metrics=$(curl -sf --max-time 5 "http://127.0.0.1:$metrics_port/metrics" || true)
ends_by_state=$(awk -F'[{}" ]+' '$1 == "pglater_jobs_finished_total" && $4 > 0 { printf "%s%s %d", sep, $3, $4; sep = ", " }' <<<"$metrics")
echo "jobs submitted by pgbench: $total; ended in this pglater: ${ends_by_state:-none}"
echo "pglater's store at the end: $(store "SELECT coalesce(string_agg(state || ' ' || n, ', ' ORDER BY state), 'empty')
                                           FROM (SELECT state, count(*) AS n FROM pglater.jobs GROUP BY state) s")"
warns=$(grep -c ' WARN ' "$work/pglater.log" || true)
errors=$(grep -c ' ERROR ' "$work/pglater.log" || true)
echo "pglater's log: $warns warning lines, $errors error lines (PGLATER_LOG=$PGLATER_LOG)"
if [ $((warns + errors)) -gt 0 ]; then
    # the message kinds only: fields (key=value, which may name jobs) are cut off
    grep -E ' (WARN|ERROR) ' "$work/pglater.log" |
        sed -E 's/^[^ ]+ +(WARN|ERROR) +[^ ]+: //; s/ [a-z_.]+=.*$//' |
        sort | uniq -c | sort -rn | head -n 5 | sed 's/^/  /'
fi

# verdict: first load sample at or after WARMUP vs the last load sample, all clients connected
verdict=$(awk -v w="$WARMUP" -v c="$CLIENTS" '
    $2 == "load" && $1 >= w && $5 == c { if (!seen) { split($0, f); seen = 1 } split($0, l); n++ }
    function judge(name, a, b, tol, unit,   d, word) {
        d = b - a
        word = (d > tol) ? "growing" : (d < -tol) ? "shrinking" : "flat"
        return sprintf("%s %s (%g -> %g%s)", name, word, a, b, unit)
    }
    function max(a, b) { return a > b ? a : b }
    END {
        if (n < 2) {
            print "too short to judge: fewer than two load samples after the warm-up with every client connected"
            exit
        }
        rss_a = int(f[6] / 102.4) / 10; rss_b = int(l[6] / 102.4) / 10
        st_a = int(f[10] / 104857.6) / 10; st_b = int(l[10] / 104857.6) / 10
        printf "%ss -> %ss, %d more jobs ended: %s; %s; %s; %s; %s\n", f[1], l[1], l[3] - f[3],
            judge("RSS", rss_a, rss_b, max(rss_a * 0.1, 5), " MB"),
            judge("fds", f[7], l[7], 5, ""),
            judge("upstream conns", f[8], l[8], 2, ""),
            judge("store", st_a, st_b, max(st_a * 0.25, 8), " MB"),
            judge("backlog", f[4], l[4], max(f[4] * 0.5, 1000), " jobs")
    }' "$work/samples.raw")
echo "verdict: $verdict"
echo "  (flat: RSS within max(10%, 5 MB), fds within 5, connections within 2, store within"
echo "  max(25%, 8 MB), backlog within max(50%, 1000 jobs))"
