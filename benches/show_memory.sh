#!/usr/bin/env bash
# SHOW LATER memory benchmark (finding 5 of the security issue): pglater's resident memory
# while clients send SHOW LATER over many jobs and never read the reply. Before SHOW LATER
# streamed, each such client made pglater hold its whole listing (100,000 jobs, six clients:
# VmRSS from 159 to 516 MB); streamed, a session holds a few pages of rows whatever the number
# of jobs, and the store is not held for it.
#
# Starts its own throwaway PostgreSQL (as the `postgres` OS user when run as root; trust auth,
# loopback only, fsync=off) and pglater in front of it (--auth trust; job store in database
# `postgres` of that server). Then:
#   1. adds $JOBS ended jobs of user postgres straight into the store (scripts of
#      $SCRIPT_BYTES bytes), and reads one whole SHOW LATER with psql (warm-up; timed);
#   2. opens $CLIENTS raw-protocol connections (python3) that each send SHOW LATER and never
#      read, and samples pglater's VmRSS (/proc/<pid>/status) every 50 ms for $HOLD_SECS s;
#   3. meanwhile, through psql: a LATER, SHOW LATER of that job and FETCH LATER ... WAIT (timed:
#      other sessions must not wait for the stalled ones);
# and prints VmRSS before, the most seen while the clients stall, and the growth.
#
# Compare two builds with PGLATER_BIN (and NO_BUILD=1), e.g. the commit before streaming and
# this one.
#
# Environment (defaults in brackets):
#   JOBS          jobs in the store                          [100000]
#   SCRIPT_BYTES  bytes of each job's script                 [300]
#   CLIENTS       clients that send SHOW LATER and never read [6]
#   HOLD_SECS     seconds the stalled clients are watched    [5]
#   NO_BUILD=1    use the existing binary instead of running cargo build --release
#   PGLATER_BIN   the pglater binary                         [target/release/pglater]
#   KEEP_DIR=1    keep the work directory (logs, data) after exit
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

JOBS=${JOBS:-100000}
SCRIPT_BYTES=${SCRIPT_BYTES:-300}
CLIENTS=${CLIENTS:-6}
HOLD_SECS=${HOLD_SECS:-5}

command -v python3 >/dev/null 2>&1 || die "python3 is needed for the clients that do not read"
pg_ensure_installed
bench_build

# ---------------------------------------------------------------------------------------------
# set-up
stall_pid=
# shellcheck disable=SC2317 # called by bench_cleanup
bench_stop_extra() {
    if [ -n "$stall_pid" ]; then kill "$stall_pid" 2>/dev/null || true; fi
}
bench_workdir /tmp/pglater-show-bench.XXXXXX
bench_pg_start "fsync = off" "synchronous_commit = off" "full_page_writes = off" \
    "log_min_messages = warning"
bench_pglater_start --auth trust

store() { psql -X -q -At -p "$pg_port" -v ON_ERROR_STOP=1 -c "$1"; }
via() { psql -X -q -At -p "$pglater_port" -v ON_ERROR_STOP=1 -c "$1"; }
rss_kb() { awk '$1 == "VmRSS:" { print $2 }' "/proc/$pglater_pid/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }
secs_since() { awk -v s="$1" -v e="$(date +%s%N)" 'BEGIN { printf "%.2f\n", (e - s) / 1e9 }'; }

via 'select 1' >/dev/null || die "pglater does not answer a query"

# ---------------------------------------------------------------------------------------------
# jobs, and one whole listing read
log "adding $JOBS jobs of $SCRIPT_BYTES-byte scripts"
store "INSERT INTO pglater.jobs (id, owner, database, script, state, submitted_at, run_at,
                                 started_at, finished_at)
       SELECT g, 'postgres', 'postgres',
              convert_to(rpad('SELECT ' || g || ' -- ', $SCRIPT_BYTES, 'x'), 'UTF8'),
              'succeeded', t, t, t, t
         FROM generate_series(1, $JOBS) g,
              LATERAL (SELECT now() - interval '1 hour' + g * interval '1 ms') s(t)"
t0=$(date +%s%N)
listed=$(via 'SHOW LATER' | wc -l)
read_secs=$(secs_since "$t0")
[ "$listed" = "$JOBS" ] || die "SHOW LATER listed $listed jobs, not $JOBS"
log "psql read SHOW LATER of $listed jobs in ${read_secs}s"

# ---------------------------------------------------------------------------------------------
# clients that never read
cat >"$work/stall.py" <<'EOF'
# N connections: trust login as postgres, send SHOW LATER, never read; hold until killed.
import socket, struct, sys, time

port, n = int(sys.argv[1]), int(sys.argv[2])
params = b"user\0postgres\0database\0postgres\0\0"
conns = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
    buf = b""
    while not buf.endswith(b"Z\0\0\0\5I"):  # up to ReadyForQuery (idle)
        buf += s.recv(65536)
    sql = b"SHOW LATER\0"
    s.sendall(b"Q" + struct.pack("!i", 4 + len(sql)) + sql)
    conns.append(s)
print("stalled", flush=True)
time.sleep(3600)
EOF
before=$(rss_kb)
log "VmRSS before: $(mb "$before") MB; $CLIENTS clients send SHOW LATER and do not read"
python3 "$work/stall.py" "$pglater_port" "$CLIENTS" >"$work/stall.out" &
stall_pid=$!
for _ in $(seq 100); do grep -q stalled "$work/stall.out" 2>/dev/null && break; sleep 0.1; done
grep -q stalled "$work/stall.out" || die "the stalled clients did not start"

t0=$(date +%s%N)
job=$(via "LATER SELECT 'served' AS s")
via "SHOW LATER $job" >/dev/null
via "FETCH LATER $job WAIT 30" >/dev/null
others_secs=$(secs_since "$t0")
log "meanwhile LATER, SHOW LATER <id> and FETCH LATER <id> WAIT took ${others_secs}s"

most=$(rss_kb)
end=$(($(date +%s) + HOLD_SECS))
while [ "$(date +%s)" -lt "$end" ]; do
    now=$(rss_kb)
    [ "$now" -gt "$most" ] && most=$now
    sleep 0.05
done
kill "$stall_pid" 2>/dev/null || true
wait "$stall_pid" 2>/dev/null || true
stall_pid=

# ---------------------------------------------------------------------------------------------
# report
echo
echo "pglater SHOW LATER memory: $JOBS jobs ($SCRIPT_BYTES-byte scripts), $CLIENTS clients that do not read"
echo "  pglater $pglater_bin ($(bench_binary_note)); $(nproc) cores"
printf '%-48s %10s\n' "VmRSS before" "$(mb "$before") MB"
printf '%-48s %10s\n' "most VmRSS seen over ${HOLD_SECS}s of stalled clients" "$(mb "$most") MB"
printf '%-48s %10s\n' "growth" "$(mb $((most - before))) MB"
printf '%-48s %10s\n' "LATER + SHOW + FETCH WAIT meanwhile" "${others_secs} s"
printf '%-48s %10s\n' "psql reading the whole listing (warm-up)" "${read_secs} s"
