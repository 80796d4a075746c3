#!/usr/bin/env bash
# The benchmarks: binance-uds side by side with the raw floor of its own
# stack and with Binance's official SDKs, against the local exchange on
# loopback. Builds in release mode, installs the SDKs (pinned) under
# target/peers, runs `cargo bench --bench uds` three times and merges the
# runs (median and range) into target/bench/BENCHMARKS.md.
#   scripts/bench.sh            three full runs (a few minutes)
#   scripts/bench.sh --quick    one short run, for a developer's loop (< 30 s once built)
#   scripts/bench.sh --write    also replace the committed BENCHMARKS.md (its
#                               hand-written "## Profile" section is kept)
#   scripts/bench.sh --runs N   N runs instead of three
#   UDS_BENCH_ONLY=cold,warm,events,scale,peers   only those sections
# A peer that cannot be installed (no registry, no node) is reported as
# such in its rows; the rest of the benchmark still runs.
set -euo pipefail
cd "$(dirname "$0")/.."

quick= write= runs=
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1 ;;
        --write) write=1 ;;
        --runs) runs="$2"; shift ;;
        *) echo "usage: $0 [--quick] [--write] [--runs N]" >&2; exit 2 ;;
    esac
    shift
done
runs=${runs:-$([ -n "$quick" ] && echo 1 || echo 3)}

PY_SDK=binance-sdk-derivatives-trading-usds-futures==18.1.0
JS_SDK=@binance/derivatives-trading-usds-futures@38.1.1
KOFFI=koffi@3.3.4
peers=$PWD/target/peers
mkdir -p "$peers" target/bench

echo "== building (release): the library, the local exchange, the benchmark"
cargo build --release -p binance-uds -p local-exchange
cargo bench --bench uds --no-run

# Each peer: installed once (kept under target/peers), or the reason it is
# not, which the benchmark puts in its rows.
echo "== the official SDKs (pinned; installed once under target/peers)"
py="$peers/venv/bin/python"
if [ -x "$py" ] && "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('${PY_SDK%%==*}') != '${PY_SDK##*==}')" 2>/dev/null; then
    export UDS_PEER_PYTHON="$py"
elif ! command -v python3 >/dev/null; then
    export UDS_PEER_PYTHON_MISSING="no python3 on this machine"
else
    rm -rf "$peers/venv"
    if python3 -m venv "$peers/venv" >"$peers/pip.log" 2>&1 &&
        "$py" -m pip install --quiet --disable-pip-version-check "$PY_SDK" >>"$peers/pip.log" 2>&1; then
        export UDS_PEER_PYTHON="$py"
    else
        export UDS_PEER_PYTHON_MISSING="pip install $PY_SDK failed: $(tail -1 "$peers/pip.log")"
    fi
fi
echo "   Python: ${UDS_PEER_PYTHON:-${UDS_PEER_PYTHON_MISSING:-}}"

js_installed() {
    node -e "const v=(p)=>require('$peers/js/node_modules/'+p+'/package.json').version;
        process.exit(v('${JS_SDK%@*}')==='${JS_SDK##*@}' && v('${KOFFI%@*}')==='${KOFFI##*@}' ? 0 : 1)" 2>/dev/null
}
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    export UDS_PEER_NODE_PATH_MISSING="no node/npm on this machine"
elif js_installed ||
    { mkdir -p "$peers/js" && npm install --prefix "$peers/js" --no-audit --no-fund --silent \
        "$JS_SDK" "$KOFFI" >"$peers/npm.log" 2>&1 && js_installed; }; then
    export UDS_PEER_NODE_PATH="$peers/js/node_modules"
else
    export UDS_PEER_NODE_PATH_MISSING="npm install $JS_SDK $KOFFI failed: $(tail -1 "$peers/npm.log")"
fi
echo "   Node.js: ${UDS_PEER_NODE_PATH:-${UDS_PEER_NODE_PATH_MISSING:-}}"

echo "   Rust: building benches/peers/rust-sdk (the first time compiles the SDK: minutes)"
if cargo build --release -p binance-uds-peer-rust-sdk >"$peers/rust-sdk.log" 2>&1; then
    export UDS_PEER_RUST_SDK="$PWD/target/release/peer-rust-sdk"
else
    export UDS_PEER_RUST_SDK_MISSING="cargo build of benches/peers/rust-sdk failed: $(grep -m1 error "$peers/rust-sdk.log")"
fi
echo "   Rust: ${UDS_PEER_RUST_SDK:-${UDS_PEER_RUST_SDK_MISSING:-}}"

[ -n "$quick" ] && export UDS_BENCH_QUICK=1
files=()
for i in $(seq 1 "$runs"); do
    echo "== run $i of $runs (the machine should be otherwise idle)"
    UDS_BENCH_JSON="target/bench/run-$i.json" cargo bench --bench uds
    files+=("target/bench/run-$i.json")
done
# Full mode: nine rounds of 1000 request weight against Binance's 2400 a
# minute, so about four minutes of the rounds waiting for the next window.
echo "== restart: $([ -n "$quick" ] && echo 200 || echo 1000) accounts opened from one thread against the floor, 3 alternating rounds (benches/restart.rs)"
BINANCE_UDS_ACCOUNTS="$([ -n "$quick" ] && echo 200 || echo 1000)" BINANCE_UDS_WAITING="$([ -n "$quick" ] && echo 20 || echo 100)" \
    cargo bench --bench restart | tee target/bench/restart.txt
echo "== Python: binance_uds.aio against the blocking stream (benches/aio.py)"
BINANCE_UDS_LIBRARY="$PWD/target/release/libbinance_uds.so" BINANCE_UDS_EXCHANGE="$PWD/target/release/local-exchange" \
    python3 benches/aio.py "$runs" "$([ -n "$quick" ] && echo 100 || echo 300)" | tee target/bench/aio.txt
if [ "$runs" -gt 1 ] || [ -n "$write" ]; then
    echo "== $runs runs merged (median and range)"
    cargo bench --bench uds -- report target/bench/BENCHMARKS.md "${files[@]}"
    if [ -n "$write" ]; then
        cp target/bench/BENCHMARKS.md BENCHMARKS.md
        echo "BENCHMARKS.md replaced"
    fi
fi
