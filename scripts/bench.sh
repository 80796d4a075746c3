#!/usr/bin/env bash
# The benchmarks: binance-uds side by side with the raw floor of its own
# stack, against the local exchange on loopback. Builds in release mode, runs
# `cargo bench --bench uds` (about a minute), prints the table and writes
# BENCHMARKS.md (its "## Profile" section is kept as written).
#   UDS_BENCH_QUICK=1          a short smoke run; BENCHMARKS.md is not written
#   UDS_BENCH_ONLY=cold,warm,events,scale   only those sections (not written)
#   UDS_BENCH_OUT=PATH         write the report there instead
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== building (release): the library, the local exchange, the benchmark"
cargo build --release -p binance-uds -p local-exchange
cargo bench --bench uds --no-run

# Row 7 compares with Python's `websockets` package; install it if missing.
if command -v python3 >/dev/null; then
    if ! python3 -c 'import websockets.asyncio.client' 2>/dev/null; then
        echo "== installing the Python websockets package (row 7)"
        python3 -m pip install --quiet websockets ||
            echo "   (could not install websockets: row 7 is skipped)"
    fi
else
    echo "   (no python3: row 7 is skipped)"
fi

echo "== running (about a minute; the machine should be otherwise idle)"
cargo bench --bench uds
