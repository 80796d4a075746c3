#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Everything runs on
# loopback against the project's local exchange; nothing needs the internet.
#   BINANCE_UDS_QUICK=1  skip the valgrind and sanitizer passes
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "format and lint"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

step "Rust and C tests (cargo test)"
cargo test --all-targets

if [ -z "${BINANCE_UDS_QUICK:-}" ]; then
    step "C and C++ tests under valgrind"
    BINANCE_UDS_VALGRIND=1 cargo test --test c_api --test cpp_api
    step "C and C++ tests under AddressSanitizer and UndefinedBehaviorSanitizer"
    BINANCE_UDS_SANITIZE=1 cargo test --test c_api --test cpp_api
fi

# --- packaging and bindings (issue 4) go below this line ---

step "packaging: install, pkg-config, CMake, exports (tests/packaging.sh)"
cargo build --release
tests/packaging.sh

step "Python bindings (pytest)"
python3 -m pytest bindings/python/tests -q
