#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Everything runs on
# loopback against the project's local exchange; nothing needs the internet.
#   BINANCE_UDS_QUICK=1  skip the valgrind and sanitizer passes
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "format and lint"
cargo fmt --all -- --check
# The SDK peer of the benchmarks is built only by scripts/bench.sh.
cargo clippy --workspace --exclude binance-uds-peer-rust-sdk --all-targets -- -D warnings

step "Rust and C tests (cargo test)"
cargo test --workspace --exclude binance-uds-peer-rust-sdk --all-targets -- --skip soak_under_random_faults

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
