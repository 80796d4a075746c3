#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Everything runs on
# loopback against the project's local exchange; nothing needs the internet.
#   BINANCE_UDS_QUICK=1  skip the valgrind and sanitizer passes
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "format and lint"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "Rust and C tests (cargo test)"
cargo test --workspace --all-targets -- --skip soak_under_random_faults

step "the core stream tests again, on the query form (<base>/ws?listenKey=)"
BINANCE_UDS_TEST_STREAM_FORM=query cargo test --test user_stream

step "soak: threads, a stream and random faults (BINANCE_UDS_SOAK_SECS, default 60)"
cargo test --test soak -- --nocapture

if [ -z "${BINANCE_UDS_QUICK:-}" ]; then
    step "C and C++ tests under valgrind"
    BINANCE_UDS_VALGRIND=1 cargo test --test c_api --test cpp_api
    step "C and C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer"
    BINANCE_UDS_SANITIZE=1 cargo test --test c_api --test cpp_api
fi

# --- packaging and bindings (issue 4) go below this line ---

step "packaging: install, pkg-config, CMake, exports (tests/packaging.sh)"
cargo build --release -p binance-uds -p local-exchange
tests/packaging.sh

step "Python bindings (pytest)"
# The tests load target/debug/libbinance_uds.so, which only `cargo build`
# refreshes (cargo test builds the library under target/debug/deps).
cargo build -p binance-uds -p local-exchange
python3 -m pytest bindings/python/tests -q

step "Python package: pip install from the repository into a fresh venv"
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check ./bindings/python
rm -rf bindings/python/build bindings/python/*.egg-info
want=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
lib="$PWD/target/debug/libbinance_uds.so"
# Run from / so that the installed package, not the source tree, is imported.
got=$(cd / && BINANCE_UDS_LIBRARY="$lib" "$venv/bin/python" -c 'import binance_uds; print(binance_uds.version())')
[ "$got" = "$want" ] || { echo "installed module reports $got, Cargo.toml says $want"; exit 1; }
echo "binance_uds $got installed with pip and loaded"

# --- official Binance SDKs against the local exchange (issue 9) ---
# They are code nobody here wrote: if they work against the local exchange,
# it speaks Binance's protocol, not just the library's idea of it. Each is
# installed into a throwaway directory; only that install needs the network.
PY_SDK=(binance-sdk-derivatives-trading-usds-futures==18.1.0 binance-common==4.7.0)
JS_SDK=@binance/derivatives-trading-usds-futures@38.1.1
sdk_venv=$(mktemp -d)
js_dir=$(mktemp -d)
trap 'rm -rf "$venv" "$sdk_venv" "$js_dir"' EXIT
export BINANCE_UDS_EXCHANGE="$PWD/target/debug/local-exchange"

step "official Python SDK (${PY_SDK[0]}) opens its user data stream (tests/sdk/python_sdk.py)"
python3 -m venv "$sdk_venv"
"$sdk_venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_SDK[@]}" || {
    echo "test.sh: pip could not install ${PY_SDK[*]} from the package registry (no network, or PyPI unreachable?): the SDK test cannot run"
    exit 1
}
"$sdk_venv/bin/python" tests/sdk/python_sdk.py

step "official Python SDK's REST and signed WebSocket API calls, HMAC and Ed25519 (tests/sdk/python_sdk_rest.py)"
"$sdk_venv/bin/python" tests/sdk/python_sdk_rest.py

step "official JS connector ($JS_SDK) opens its user data stream (tests/sdk/js_sdk.cjs)"
(cd "$js_dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$JS_SDK") || {
    echo "test.sh: npm could not install $JS_SDK from the registry (no network, or npm unreachable?): the SDK test cannot run"
    exit 1
}
NODE_PATH="$js_dir/node_modules" node tests/sdk/js_sdk.cjs
