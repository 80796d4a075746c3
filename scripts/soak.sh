#!/usr/bin/env bash
# The two soaks of tests/soak.rs for 30 minutes each (release build), side by
# side in two processes so that each one's RSS is its own, then their memory
# figures: RSS between the warm-up and the end, and the least-squares slope
# of RSS over the second half of the run in MiB an hour (flat memory: near 0).
#   BINANCE_UDS_SOAK_SECS=N   another length (default 1800)
#   SOAK_LOG_DIR=DIR          where the full outputs go (default target/soak)
# Exits non-zero when a soak fails.
set -euo pipefail
cd "$(dirname "$0")/.."

export BINANCE_UDS_SOAK_SECS="${BINANCE_UDS_SOAK_SECS:-1800}"
dir="${SOAK_LOG_DIR:-target/soak}"
mkdir -p "$dir"

cargo test --release --test soak --no-run
echo "soaks of ${BINANCE_UDS_SOAK_SECS} s each, started $(date -u +%H:%M:%S) UTC; outputs in $dir/"
pids=()
for t in soak_under_random_faults resync_soak_under_random_faults; do
    cargo test --release --test soak -- --exact "$t" --nocapture >"$dir/$t.log" 2>&1 &
    pids+=("$!")
done
status=0
for p in "${pids[@]}"; do
    wait "$p" || status=1
done

for t in soak_under_random_faults resync_soak_under_random_faults; do
    echo "== $t: $(grep -E '^test .* \.\.\. ' "$dir/$t.log" | sed 's/^test //' || echo 'no result')"
    grep -E 'RSS|open orders' "$dir/$t.log" || true
done
exit "$status"
