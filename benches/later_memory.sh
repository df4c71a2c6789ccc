#!/usr/bin/env bash
# LATER memory benchmark: pglater's resident memory while it captures and replays a job
# whose result is about 1 GB (target: well under 100 MB in both, since neither capture nor
# replay may hold a whole result in memory).
#
# Starts its own throwaway PostgreSQL (as the `postgres` OS user when run as root; trust auth,
# loopback only, fsync=off) and pglater in front of it (--auth trust; job store in database
# `postgres` of that server). Then, sampling pglater's /proc/<pid>/status every 50 ms (VmRSS)
# and reading its exact peak (VmHWM, reset between phases through /proc/<pid>/clear_refs):
#   capture  LATER SELECT g, repeat('x', $WIDTH) FROM generate_series(1, $ROWS) g
#            (about ROWS x (WIDTH + 21) bytes of DataRows), until the job has succeeded
#   replay   psql -X -At -c "FETCH LATER <id>" >/dev/null (psql itself holds the whole
#            result: its own peak is printed too when /usr/bin/time exists)
#   slow     the same FETCH read by a small raw-protocol client that discards what it reads
#            at only $SLOW_MBPS MB/s (python3; skipped without it or with SLOW_MBPS=0): a slow
#            reader must not make pglater buffer the result
# and prints the peaks with the target, plus the job store's disk use.
#
# Disk: the result is stored in the store database (pglater.result_chunks, stored
# uncompressed) and goes through the WAL, so the cluster under $TMPDIR (default /tmp) grows by
# about twice the result size for a while. The script checks that $NEED_MB MB are free there
# before it starts; all of it is removed on exit.
#
# Environment (defaults in brackets):
#   ROWS       rows of the result                      [1000000]
#   WIDTH      characters per row's text column        [1000]
#   NEED_MB    free space required in the temp dir     [3072]
#   SLOW_MBPS  read rate of the slow reader, MB/s; 0 skips it   [100]
#   NO_BUILD=1 use the existing binary instead of running cargo build --release
#   PGLATER_BIN  the pglater binary                    [target/release/pglater]
#   KEEP_DIR=1 keep the work directory (logs, data) after exit
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/lib/pg.sh
. "$root/scripts/lib/pg.sh"

ROWS=${ROWS:-1000000}
WIDTH=${WIDTH:-1000}
NEED_MB=${NEED_MB:-3072}
SLOW_MBPS=${SLOW_MBPS:-100}
tmp_base=${TMPDIR:-/tmp}

# ---------------------------------------------------------------------------------------------
# prerequisites
free_mb=$(df -Pm "$tmp_base" | awk 'NR == 2 { print $4 }')
log "disk: $free_mb MB free in $tmp_base; this run needs about $NEED_MB MB (result stored + WAL)"
[ "$free_mb" -ge "$NEED_MB" ] || die "not enough free space in $tmp_base ($free_mb MB < $NEED_MB MB): set TMPDIR"

pg_ensure_installed
bench_build

# ---------------------------------------------------------------------------------------------
# set-up
sampler_pid=
# shellcheck disable=SC2317 # called by bench_cleanup
bench_stop_extra() {
    if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
}
bench_workdir "$tmp_base/pglater-memory-bench.XXXXXX"
bench_pg_start \
    "shared_buffers = 256MB" \
    "fsync = off" \
    "synchronous_commit = off" \
    "full_page_writes = off" \
    "log_min_messages = warning"
disk_before=$(du -sm "$work/pg" | awk '{ print $1 }')

bench_pglater_start --auth trust

store() { psql -X -q -At -p "$pg_port" -v ON_ERROR_STOP=1 -c "$1"; }
via() { psql -X -q -At -p "$pglater_port" -v ON_ERROR_STOP=1 -c "$1"; }

# ---------------------------------------------------------------------------------------------
# memory sampling
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$pglater_pid/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f\n", k / 1024 }'; }
hwm_reset_ok=1
reset_hwm() {
    if ! { echo 5 >"/proc/$pglater_pid/clear_refs"; } 2>/dev/null; then
        hwm_reset_ok=0
    fi
}
start_sampler() { # OUT
    (
        while kill -0 "$pglater_pid" 2>/dev/null; do
            awk '$1 == "VmRSS:" { print $2 }' "/proc/$pglater_pid/status" 2>/dev/null || true
            sleep 0.05
        done
    ) >"$1" &
    sampler_pid=$!
}
stop_sampler() {
    kill "$sampler_pid" 2>/dev/null || true
    wait "$sampler_pid" 2>/dev/null || true
    sampler_pid=
}
max_of() { sort -n "$1" | tail -n 1; }

wait_done() { # job id -> final state
    local state
    while :; do
        state=$(store "SELECT state FROM pglater.jobs WHERE id = $1")
        case $state in
        succeeded | failed | cancelled)
            echo "$state"
            return
            ;;
        esac
        kill -0 "$pglater_pid" 2>/dev/null || die "pglater died (see $work/pglater.log)"
        sleep 0.2
    done
}
secs_since() { awk -v s="$1" -v e="$(date +%s%N)" 'BEGIN { printf "%.1f\n", (e - s) / 1e9 }'; }

idle_rss=$(status_kb VmRSS)
idle_hwm=$(status_kb VmHWM)
log "idle: VmRSS $(mb "$idle_rss") MB, VmHWM $(mb "$idle_hwm") MB"

# ---------------------------------------------------------------------------------------------
# capture
sql="SELECT g, repeat('x', $WIDTH) FROM generate_series(1, $ROWS) g"
log "capture: LATER $sql"
reset_hwm
start_sampler "$work/rss-capture"
t0=$(date +%s%N)
job=$(via "LATER $sql")
state=$(wait_done "$job")
capture_secs=$(secs_since "$t0")
stop_sampler
capture_hwm=$(status_kb VmHWM)
capture_rss=$(max_of "$work/rss-capture")
[ "$state" = succeeded ] || die "job $job ended $state: $(store "SELECT sqlstate, error FROM pglater.jobs WHERE id = $job")"
read -r result_bytes result_rows < <(store "SELECT result_bytes, result_rows FROM pglater.jobs WHERE id = $job" | tr '|' ' ')
log "capture: job $job, $result_rows rows, $(mb $((result_bytes / 1024))) MB of messages in ${capture_secs}s; peak $(mb "$capture_hwm") MB"

chunks_mb=$(store "SELECT round(pg_total_relation_size('pglater.result_chunks') / 1048576.0, 1)")
db_mb=$(store "SELECT round(pg_database_size('postgres') / 1048576.0, 1)")
wal_mb=$(store "SELECT round(sum(size) / 1048576.0, 1) FROM pg_ls_waldir()")
disk_after=$(du -sm "$work/pg" | awk '{ print $1 }')

# ---------------------------------------------------------------------------------------------
# replay with psql
log "replay: psql -X -At -c \"FETCH LATER $job\" >/dev/null"
reset_hwm
start_sampler "$work/rss-replay"
t0=$(date +%s%N)
psql_peak=
if [ -x /usr/bin/time ]; then
    /usr/bin/time -f '%M' -o "$work/psql-time" psql -X -At -p "$pglater_port" -v ON_ERROR_STOP=1 \
        -c "FETCH LATER $job" >/dev/null
    psql_peak=$(mb "$(tail -n 1 "$work/psql-time")")
else
    psql -X -At -p "$pglater_port" -v ON_ERROR_STOP=1 -c "FETCH LATER $job" >/dev/null
fi
replay_secs=$(secs_since "$t0")
stop_sampler
replay_hwm=$(status_kb VmHWM)
replay_rss=$(max_of "$work/rss-replay")
log "replay: ${replay_secs}s; peak $(mb "$replay_hwm") MB${psql_peak:+ (psql itself: $psql_peak MB)}"

# ---------------------------------------------------------------------------------------------
# replay to a slow reader
slow_hwm='' slow_rss='' slow_secs='' slow_note=''
if [ "$SLOW_MBPS" != 0 ] && command -v python3 >/dev/null 2>&1; then
    cat >"$work/slow_reader.py" <<'EOF'
# Minimal PostgreSQL client: trust login as postgres, one simple Query, read the reply at a
# limited rate and discard it; prints "<bytes> <datarows> <errors>".
import socket, struct, sys, time

port, sql, mbps = int(sys.argv[1]), sys.argv[2].encode(), float(sys.argv[3])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
params = b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
buf, pos, total, rows, errors, readies = bytearray(), 0, 0, 0, 0, 0
start = None
while True:
    chunk = s.recv(256 * 1024)
    if not chunk:
        sys.exit("connection closed before the reply ended")
    buf += chunk
    if start is not None:
        total += len(chunk)
        ahead = total / (mbps * 1e6) - (time.monotonic() - start)
        if ahead > 0:
            time.sleep(ahead)
    done = False
    while len(buf) - pos >= 5:
        length = int.from_bytes(buf[pos + 1:pos + 5], "big")
        if len(buf) - pos < 1 + length:
            break
        tag = buf[pos]
        pos += 1 + length
        if tag == ord("D"):
            rows += 1
        elif tag == ord("E"):
            errors += 1
        elif tag == ord("Z"):
            readies += 1
            if readies == 1:  # logged in: ask
                s.sendall(b"Q" + struct.pack("!i", 4 + len(sql) + 1) + sql + b"\0")
                start = time.monotonic()
            else:
                done = True
                break
    del buf[:pos]
    pos = 0
    if done:
        break
s.sendall(b"X\0\0\0\4")
print(total, rows, errors)
EOF
    log "slow reader: FETCH LATER $job read at $SLOW_MBPS MB/s"
    reset_hwm
    start_sampler "$work/rss-slow"
    t0=$(date +%s%N)
    read -r slow_bytes slow_rows slow_errors < <(python3 "$work/slow_reader.py" "$pglater_port" \
        "FETCH LATER $job" "$SLOW_MBPS")
    slow_secs=$(secs_since "$t0")
    stop_sampler
    slow_hwm=$(status_kb VmHWM)
    slow_rss=$(max_of "$work/rss-slow")
    log "slow reader: $slow_rows rows, $slow_errors errors, $(mb $((slow_bytes / 1024))) MB in ${slow_secs}s; peak $(mb "$slow_hwm") MB"
    [ "$slow_rows" = "$result_rows" ] || slow_note="(got $slow_rows of $result_rows rows!)"
else
    slow_note="skipped (SLOW_MBPS=0 or no python3)"
fi

# ---------------------------------------------------------------------------------------------
# report
verdict() { awk -v v="$1" 'BEGIN { print (v + 0 < 100 ? "yes" : "no") }'; }
echo
echo "pglater memory: a $(mb $((result_bytes / 1024))) MB result ($result_rows rows of $WIDTH chars)"
echo "  pglater $pglater_bin ($(bench_binary_note)); $(nproc) cores"
if [ "$hwm_reset_ok" != 1 ]; then
    echo "  note: /proc/<pid>/clear_refs could not reset VmHWM: peaks are since start"
fi
printf '%-34s %12s %14s %9s %7s %5s\n' phase "peak VmHWM" "max VmRSS seen" seconds target met
printf '%-34s %9s MB %11s MB %9s %7s %5s\n' "idle after start" "$(mb "$idle_hwm")" "$(mb "$idle_rss")" "" "" ""
printf '%-34s %9s MB %11s MB %9s %7s %5s\n' "capture (job run + store)" "$(mb "$capture_hwm")" \
    "$(mb "$capture_rss")" "$capture_secs" "<100MB" "$(verdict "$(mb "$capture_hwm")")"
printf '%-34s %9s MB %11s MB %9s %7s %5s\n' "replay to psql" "$(mb "$replay_hwm")" \
    "$(mb "$replay_rss")" "$replay_secs" "<100MB" "$(verdict "$(mb "$replay_hwm")")"
if [ -n "$slow_hwm" ]; then
    printf '%-34s %9s MB %11s MB %9s %7s %5s %s\n' "replay to a ${SLOW_MBPS} MB/s reader" "$(mb "$slow_hwm")" \
        "$(mb "$slow_rss")" "$slow_secs" "<100MB" "$(verdict "$(mb "$slow_hwm")")" "$slow_note"
else
    printf '%-34s %s\n' "replay to a slow reader" "$slow_note"
fi
if [ -n "$psql_peak" ]; then echo "  psql's own peak RSS during replay: $psql_peak MB (it holds the whole result)"; fi
echo "job store disk use: result_chunks $chunks_mb MB, database postgres $db_mb MB, WAL $wal_mb MB;"
echo "  cluster directory $disk_before MB before the job, $disk_after MB after ($work/pg)"
