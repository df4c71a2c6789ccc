#!/usr/bin/env bash
# Long fuzzing pass over every decoder of client bytes (tests/fuzz.rs: start-up packets,
# framing, the intercepted Query and Parse/Bind paths, the command lexer, the binary
# converter and row shaping). `cargo test` runs a short pass of the same targets.
#
# Builds the targets optimised, with overflow checks and debug assertions on (cargo profile
# `fuzz`, so an arithmetic overflow is a finding, not a silent wrap), runs every target for
# its share of the duration, and prints per target the cases run and the findings (each with
# the minimal input proptest shrank it to), then the totals. No PostgreSQL is needed.
#
# Usage: benches/fuzz.sh [SECONDS]     the whole run's duration [180]
#        benches/fuzz.sh --cases N     N cases per target instead
# Environment: FUZZ_THREADS targets run at once [2]; PGLATER_FUZZ_SEED replays a run (each
# target prints its seed). Exit status: non-zero when a target has findings.
set -euo pipefail
cd "$(dirname "$0")/.."

threads=${FUZZ_THREADS:-2}
mode=secs
total=180
case "${1:-}" in
    --cases) mode=cases; total=${2:?--cases needs a number} ;;
    "") ;;
    *) total=$1 ;;
esac

echo "building the fuzz targets (profile fuzz: optimised, overflow checks on)..." >&2
cargo test --profile fuzz --test fuzz --no-run >&2
targets=$(cargo test -q --profile fuzz --test fuzz -- --list 2>/dev/null | grep -c ': test$')

if [ "$mode" = secs ]; then
    per=$(( total * threads / targets ))
    [ "$per" -ge 1 ] || per=1
    export PGLATER_FUZZ_SECS=$per
    unset PGLATER_FUZZ_CASES
    echo "fuzzing $targets targets, ${per} s each, $threads at a time (about ${total} s)" >&2
else
    export PGLATER_FUZZ_CASES=$total
    unset PGLATER_FUZZ_SECS
    echo "fuzzing $targets targets, $total cases each, $threads at a time" >&2
fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --show-output: each target's lines come whole, after the run (not interleaved).
cargo test -q --profile fuzz --test fuzz -- --show-output --test-threads="$threads" \
    >"$log" 2>&1 || status=$?

# Per target: cases, findings (and each finding with its minimal input).
grep -E '^fuzz |^  finding in |^    minimal input: ' "$log" | cut -c1-2000 || true
awk '/^fuzz / {
        n++; cases += $3
        for (i = 1; i <= NF; i++) if ($i ~ /^findings,?$/) findings += $(i - 1)
     }
     END { printf "total: %d targets, %d cases, %d findings\n", n, cases, findings }' "$log"
grep -E '^test result' "$log" || true
if [ "$status" -ne 0 ] && ! grep -q '^  finding in ' "$log"; then
    echo "the run failed without a finding; its output:" >&2
    tail -50 "$log" >&2
fi
exit "$status"
