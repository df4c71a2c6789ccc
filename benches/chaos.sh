#!/usr/bin/env bash
# LATER chaos: do single-transaction jobs run exactly once when pglater or PostgreSQL crashes
# under them?
#
# Starts its own throwaway PostgreSQL (as the `postgres` OS user when run as root; trust auth,
# loopback only, PostgreSQL's default durability: fsync and synchronous_commit on, so an
# immediate restart loses nothing that was acknowledged) and pglater in front of it (--auth
# trust, --workers $WORKERS, --instance-name chaos-1; the job store and the jobs' database are
# both database `postgres` of that server). Creates chaos.marks (n integer) with no unique
# constraint, then submits $JOBS jobs through pglater from one psql session, each one Query
# holding two statements, so one implicit transaction:
#   LATER INSERT INTO chaos.marks VALUES (<n>); SELECT pg_sleep(<random 0.000-0.500>)
# All are acknowledged (durable in the store) before the first fault. $FIRST_FAULT seconds
# later, while they run, the fault of $MODE:
#   kill          kill -9 pglater and start it again at once with the same flags and instance
#                 name (so it rescues its previous incarnation's jobs); $KILLS times, each
#                 0.5-1.5 s (random) after the restarted pglater accepts connections
#   pg-immediate  pg_ctl restart -m immediate of PostgreSQL (the store's and the jobs' server),
#                 $RESTARTS times, 0.5-1.5 s apart; pglater keeps running
# Then it waits (up to $TIMEOUT s) until every job is terminal in the store and prints: jobs
# by state and SQLSTATE, a histogram of attempts, how many jobs' markers are in chaos.marks
# 0, 1 or 2+ times, the state x marker table, and a verdict against the target of the commit
# fence (DESIGN.md, architecture decision 5):
#   all $JOBS succeeded, every marker exactly once, none failed with 40003 (outcome unknown)
#
# Exit status: 0 when the target is met, 2 when it is not (jobs failed, stuck, lost or run
# twice), 1 when the run itself broke. A bench script, not a test: run it by hand or as a check.
#
# Environment (defaults in brackets):
#   MODE        kill | pg-immediate                                   [kill]
#   JOBS        jobs submitted                                        [300]
#   WORKERS     pglater --workers (jobs in flight at a fault)         [8]
#   KILLS       kill -9 + restarts of pglater in MODE=kill            [3]
#   RESTARTS    immediate restarts of PostgreSQL in MODE=pg-immediate [1]
#   FIRST_FAULT seconds from the last acknowledgement to the first fault  [1]
#   TIMEOUT     seconds to wait after the faults for every job to end [300]
#   NO_BUILD=1  use the existing binary instead of running cargo build --release
#   PGLATER_BIN the pglater binary                                    [target/release/pglater]
#   PGLATER_LOG pglater's log filter (its own default: info)
#   KEEP_DIR=1  keep the work directory (logs, data) after exit
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

MODE=${MODE:-kill}
JOBS=${JOBS:-300}
WORKERS=${WORKERS:-8}
KILLS=${KILLS:-3}
RESTARTS=${RESTARTS:-1}
FIRST_FAULT=${FIRST_FAULT:-1}
TIMEOUT=${TIMEOUT:-300}
INSTANCE=chaos-1

case $MODE in
kill) faults=$KILLS ;;
pg-immediate) faults=$RESTARTS ;;
*) die "MODE must be kill or pg-immediate, not '$MODE'" ;;
esac

# ---------------------------------------------------------------------------------------------
# prerequisites
pg_ensure_installed
bench_build

# ---------------------------------------------------------------------------------------------
# set-up
bench_workdir /tmp/pglater-chaos.XXXXXX
bench_pg_start "log_min_messages = warning"
pglater_port=$(pg_free_port)

# Starts pglater on $pglater_port, appending to its log (the same flags every time).
start_pglater() {
    "$pglater_bin" --listen "127.0.0.1:$pglater_port" --upstream "127.0.0.1:$pg_port" \
        --auth trust --workers "$WORKERS" --instance-name "$INSTANCE" \
        >>"$work/pglater.log" 2>&1 &
    pglater_pid=$!
    wait_for_port "$pglater_port" 60 "$pglater_pid" || {
        tail -n 20 "$work/pglater.log" >&2
        die "pglater did not start"
    }
}

store() { psql -X -q -At -p "$pg_port" -v ON_ERROR_STOP=1 -c "$1"; }
since() { awk -v s="$1" -v n="$(date +%s.%N)" 'BEGIN { printf "%.1f\n", n - s }'; }
# a random pause of 0.5-1.5 s
pause() { sleep "$(awk -v r="$RANDOM" 'BEGIN { printf "%.3f\n", 0.5 + r / 32767 }')"; }

log "starting pglater on 127.0.0.1:$pglater_port --workers $WORKERS --instance-name $INSTANCE (log: $work/pglater.log)"
start_pglater
store "CREATE SCHEMA chaos; CREATE TABLE chaos.marks (n integer);
       CREATE TABLE chaos.submitted (n integer PRIMARY KEY, id bigint NOT NULL)"

{
    echo "pglater chaos: MODE=$MODE"
    echo "  pglater:    $pglater_bin ($(bench_binary_note)), --workers $WORKERS"
    echo "  PostgreSQL: $(store 'show server_version') (fsync=on, synchronous_commit=on); store and jobs: database postgres"
    echo "  jobs:       $JOBS x LATER INSERT INTO chaos.marks VALUES (<n>); SELECT pg_sleep(<0-0.5 s>)"
    echo "  faults:     $faults x $MODE, the first ${FIRST_FAULT}s after the last acknowledgement"
} >&2

# ---------------------------------------------------------------------------------------------
# submit: one psql session; `\;` keeps both statements in one Query (one implicit transaction)
for ((n = 1; n <= JOBS; n++)); do
    printf 'LATER INSERT INTO chaos.marks VALUES (%d)\\; SELECT pg_sleep(%d.%03d);\n' \
        "$n" 0 $((RANDOM % 501))
done >"$work/submit.sql"
log "submitting $JOBS jobs through pglater"
t0=$(date +%s.%N)
psql -X -q -At -p "$pglater_port" -v ON_ERROR_STOP=1 -f "$work/submit.sql" >"$work/ids"
[ "$(wc -l <"$work/ids")" -eq "$JOBS" ] || die "expected $JOBS job ids, got $(wc -l <"$work/ids")"
awk '{ print NR "\t" $1 }' "$work/ids" >"$work/submitted.tsv"
store "\\copy chaos.submitted FROM '$work/submitted.tsv'" >/dev/null
log "$JOBS jobs acknowledged in $(since "$t0")s"

# ---------------------------------------------------------------------------------------------
# faults
sleep "$FIRST_FAULT"
fault_times=()
for ((i = 1; i <= faults; i++)); do
    at=$(since "$t0")
    fault_times+=("${at}s")
    case $MODE in
    kill)
        running=$(store "SELECT count(*) FROM pglater.jobs WHERE state = 'running'")
        log "fault $i/$faults at ${at}s: kill -9 pglater ($running jobs running)"
        kill -KILL "$pglater_pid"
        wait "$pglater_pid" 2>/dev/null || true
        start_pglater
        log "pglater restarted ($(since "$t0")s)"
        ;;
    pg-immediate)
        running=$(store "SELECT count(*) FROM pglater.jobs WHERE state = 'running'")
        log "fault $i/$faults at ${at}s: pg_ctl restart -m immediate ($running jobs running)"
        as_pg "$PG_BINDIR/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" \
            -m immediate -w -t 60 restart >/dev/null ||
            die "PostgreSQL did not restart (see $work/pg/postgres.log)"
        log "PostgreSQL restarted ($(since "$t0")s)"
        ;;
    esac
    if [ "$i" -lt "$faults" ]; then pause; fi
done

# ---------------------------------------------------------------------------------------------
# wait until every job is terminal (a job missing from the store cannot end: not waited for)
pending_sql="SELECT count(*) FROM chaos.submitted s JOIN pglater.jobs j USING (id)
              WHERE j.state NOT IN ('succeeded', 'failed', 'cancelled')"
t_wait=$(date +%s.%N)
pending='?'
while :; do
    kill -0 "$pglater_pid" 2>/dev/null || {
        tail -n 20 "$work/pglater.log" >&2
        die "pglater died"
    }
    pending=$(store "$pending_sql" 2>/dev/null || echo '?')
    [ "$pending" = 0 ] && break
    if awk -v s="$t_wait" -v n="$(date +%s.%N)" -v t="$TIMEOUT" 'BEGIN { exit !(n - s > t) }'; then
        log "$pending jobs still not terminal after ${TIMEOUT}s: giving up waiting"
        break
    fi
    sleep 1
done
settled=$(since "$t0")

# ---------------------------------------------------------------------------------------------
# report
# a query's result as a table, indented
table() { psql -X -q -P footer=off -p "$pg_port" -v ON_ERROR_STOP=1 -c "$1" | sed 's/^/  /'; }
per_job="SELECT s.n, s.id, j.state, j.sqlstate, j.attempt,
                (SELECT count(*) FROM chaos.marks m WHERE m.n = s.n) AS marks
           FROM chaos.submitted s LEFT JOIN pglater.jobs j USING (id)"

echo
echo "chaos MODE=$MODE: $JOBS jobs, $faults fault(s) at ${fault_times[*]} after the first submission;"
if [ "$pending" = 0 ]; then
    echo "every job terminal ${settled}s after the first submission"
else
    echo "$pending jobs NOT terminal ${settled}s after the first submission (waited ${TIMEOUT}s after the faults)"
fi
echo
echo "jobs by state and sqlstate (MISSING: not in the store):"
table "SELECT coalesce(state, 'MISSING') AS state, coalesce(sqlstate, '') AS sqlstate, count(*) AS jobs
         FROM ($per_job) p GROUP BY 1, 2 ORDER BY 1, 2"
echo "attempts:"
table "SELECT attempt, count(*) AS jobs FROM ($per_job) p WHERE state IS NOT NULL GROUP BY 1 ORDER BY 1"
echo "each job's marker in chaos.marks:"
table "SELECT CASE WHEN marks >= 2 THEN '2+' ELSE marks::text END AS times, count(*) AS jobs
         FROM ($per_job) p GROUP BY 1 ORDER BY 1"
echo "state x marker:"
table "SELECT coalesce(state, 'MISSING') AS state, coalesce(sqlstate, '') AS sqlstate,
              CASE WHEN marks >= 2 THEN '2+' ELSE marks::text END AS marker_times, count(*) AS jobs
         FROM ($per_job) p GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"

warns=$(grep -c ' WARN ' "$work/pglater.log" || true)
errors=$(grep -c ' ERROR ' "$work/pglater.log" || true)
echo "pglater's log: $warns warning lines, $errors error lines; the kinds (fields cut off):"
grep -E ' (WARN|ERROR) ' "$work/pglater.log" |
    sed -E 's/^[^ ]+ +(WARN|ERROR) +[^ ]+: //; s/ [a-z_.]+=.*$//' |
    sort | uniq -c | sort -rn | head -n 8 | sed 's/^/  /' || true

read -r succeeded once not_once unknown < <(store "SELECT count(*) FILTER (WHERE state = 'succeeded'),
        count(*) FILTER (WHERE marks = 1), count(*) FILTER (WHERE marks <> 1),
        count(*) FILTER (WHERE sqlstate = '40003')
   FROM ($per_job) p" | tr '|' ' ')
echo
echo "target: $JOBS succeeded, every marker exactly once, 0 failed with 40003"
echo "seen:   $succeeded succeeded, $once markers exactly once ($not_once not), $unknown with 40003"
if [ "$succeeded" -eq "$JOBS" ] && [ "$once" -eq "$JOBS" ] && [ "$unknown" -eq 0 ]; then
    echo "verdict: target met"
else
    echo "verdict: target NOT met"
    exit 2
fi
