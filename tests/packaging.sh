#!/usr/bin/env bash
# Packaging tests (issue 4): installs binance-uds into a temporary prefix with
# scripts/install.sh, then builds and runs C programs against that install
# the ways users will: pkg-config (shared and static), CMake's package
# (shared and static targets). Also checks the soname, that the shared
# library exports exactly the header's functions, and that the versions
# agree. The programs that talk to an exchange use a local-exchange on
# loopback.
#
# Run after `cargo build --release` (scripts/test.sh does). Needs cc, cmake,
# pkg-config, readelf, nm and ldd. Ends with "N passed, M failed"; exits
# non-zero when anything failed.
set -euo pipefail
# No `producer | grep -q` for a check that must match: grep exits at the
# first match, the producer may then die of SIGPIPE, and pipefail turns a
# pass into a failure (the "build RPATH" check flaked so). grep >/dev/null
# reads to the end.
cd "$(dirname "$0")/.."

CFLAGS_STRICT=(-std=c99 -Wall -Wextra -Wpedantic -Werror)
API_KEY=packagingTest0123456789

passed=0
failed=0
pass() {
    passed=$((passed + 1))
    printf 'ok    %s\n' "$1"
}
fail() {
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        sed 's/^/      | /' "$2"
    fi
}
summary() {
    printf '\n%d passed, %d failed\n' "$passed" "$failed"
}

# check DESCRIPTION COMMAND...: one test; the command's output is shown
# only when it fails.
check() {
    local what=$1
    shift
    if "$@" >"$tmp/check.log" 2>&1; then
        pass "$what"
    else
        fail "$what" "$tmp/check.log"
    fi
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/binance-uds-packaging.XXXXXX")
. scripts/exchange.sh
cleanup() {
    if [ -n "$exchange_pid" ]; then
        exec 3>&- || true
        kill "$exchange_pid" 2>/dev/null || true
        wait "$exchange_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

missing=()
for tool in cc cmake pkg-config readelf nm ldd; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    fail "tools: ${missing[*]} not found (Debian: apt-get install gcc cmake pkg-config binutils)"
    summary
    exit 1
fi
if [ ! -f target/release/libbinance_uds.so ] || [ ! -x target/release/local-exchange ]; then
    fail "no release build: run 'cargo build --release' first"
    summary
    exit 1
fi

# The version as Cargo sees it (pkgid ends in #name@version, or #version).
pkgid=$(cargo pkgid --offline)
version=${pkgid##*[#@]}
major=${version%%.*}
minor=${version#*.}
minor=${minor%%.*}
soname=libbinance_uds.so.$major
prefix=$tmp/prefix
libdir=$prefix/lib
echo "binance-uds $version; installing into $prefix"

# --- a. install: files, symlinks, soname -----------------------------------

check "install.sh --prefix $prefix --no-build" scripts/install.sh --prefix "$prefix" --no-build

installed_files() {
    local f status=0
    for f in include/binance_uds.h lib/libbinance_uds.so."$version" lib/libbinance_uds.a \
        lib/pkgconfig/binance_uds.pc lib/cmake/binance_uds/binance_udsConfig.cmake \
        lib/cmake/binance_uds/binance_udsConfigVersion.cmake; do
        if [ -f "$prefix/$f" ] && [ ! -L "$prefix/$f" ]; then
            echo "$f"
        else
            echo "missing: $f"
            status=1
        fi
    done
    if [ -f include/binance_uds.hpp ] && ! cmp include/binance_uds.hpp "$prefix/include/binance_uds.hpp"; then
        echo "include/binance_uds.hpp exists but was not installed"
        status=1
    fi
    cmp include/binance_uds.h "$prefix/include/binance_uds.h" || status=1
    return "$status"
}
check "installed the header, libraries, .pc and CMake files" installed_files

symlinks() {
    local link status=0
    for link in "$soname" libbinance_uds.so; do
        if [ "$(readlink "$libdir/$link")" = "libbinance_uds.so.$version" ]; then
            echo "$link -> libbinance_uds.so.$version"
        else
            echo "$libdir/$link should be a symlink to libbinance_uds.so.$version"
            status=1
        fi
    done
    return "$status"
}
check "symlinks $soname and libbinance_uds.so -> libbinance_uds.so.$version" symlinks

soname_is() {
    local got
    got=$(readelf -d "$1" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    echo "SONAME of $1: ${got:-none}"
    [ "$got" = "$soname" ]
}
check "readelf -d: SONAME is $soname" soname_is "$libdir/libbinance_uds.so.$version"

# A DESTDIR staged install with another libdir: everything lands under
# DESTDIR, and the installed files name the real prefix.
destdir_install() {
    local stage=$tmp/stage pc
    DESTDIR=$stage scripts/install.sh --prefix /opt/binance-uds --libdir lib64 --no-build || return 1
    [ -L "$stage/opt/binance-uds/lib64/$soname" ] || { echo "no $soname under DESTDIR/opt/binance-uds/lib64"; return 1; }
    [ -f "$stage/opt/binance-uds/include/binance_uds.h" ] || { echo "no header under DESTDIR"; return 1; }
    [ ! -e /opt/binance-uds ] || { echo "/opt/binance-uds exists: DESTDIR was not respected"; return 1; }
    pc=$stage/opt/binance-uds/lib64/pkgconfig/binance_uds.pc
    grep -qx 'prefix=/opt/binance-uds' "$pc" || { echo "$pc does not say prefix=/opt/binance-uds:"; cat "$pc"; return 1; }
    # shellcheck disable=SC2016 # the .pc's own variable, literally
    grep -qx 'libdir=${exec_prefix}/lib64' "$pc" || { echo "$pc has the wrong libdir:"; cat "$pc"; return 1; }
}
check "DESTDIR=... install.sh --prefix /opt/binance-uds --libdir lib64 stages under DESTDIR" destdir_install

# The in-tree library carries the soname too, so build.rs puts a symlink of
# that name next to it: programs linked against target/release still run.
in_tree() {
    cc "${CFLAGS_STRICT[@]}" -Iinclude -o "$tmp/in_tree" tests/cmake/main.c \
        -Ltarget/release -lbinance_uds -Wl,-rpath,"$PWD/target/release" && "$tmp/in_tree"
}
check "a program linked against target/release/libbinance_uds.so runs" in_tree

# --- the local exchange for the programs below ------------------------------

start_exchange() {
    exchange_start "$tmp" --ca-out "$tmp/ca.pem" || return 1
    BINANCE_WS_API_URL=$ws_api
    echo "local exchange at $BINANCE_WS_API_URL"
}
stop_exchange() {
    exchange_stop
}
if start_exchange >"$tmp/start.log" 2>&1; then
    pass "local-exchange started: $(tail -n 1 "$tmp/start.log")"
else
    fail "local-exchange did not start" "$tmp/start.log"
    summary
    exit 1
fi
export BINANCE_WS_API_URL BINANCE_API_KEY=$API_KEY BINANCE_CA_FILE=$tmp/ca.pem

# --- b. pkg-config -----------------------------------------------------------

export PKG_CONFIG_PATH=$libdir/pkgconfig
check "pkg-config --modversion binance_uds is $version" \
    test "$(pkg-config --modversion binance_uds)" = "$version"

# The user's build line, shared: what docs/install.md shows.
build_shared() {
    # shellcheck disable=SC2046 # pkg-config's output is meant to be split
    cc "${CFLAGS_STRICT[@]}" -o "$tmp/listen_key" examples/c/listen_key.c \
        $(pkg-config --cflags --libs binance_uds) || return 1
    readelf -d "$tmp/listen_key" | grep NEEDED
    readelf -d "$tmp/listen_key" | grep "(NEEDED).*\[$soname\]" >/dev/null
}
check "cc examples/c/listen_key.c \$(pkg-config --cflags --libs binance_uds): needs $soname" build_shared
check "examples/c/listen_key (shared) against the local exchange" \
    env LD_LIBRARY_PATH="$libdir" "$tmp/listen_key"

# Static: the archive, then the system libraries from Libs.private.
build_static() {
    # shellcheck disable=SC2046 # pkg-config's output is meant to be split
    cc "${CFLAGS_STRICT[@]}" -o "$tmp/listen_key_static" examples/c/listen_key.c \
        $(pkg-config --cflags binance_uds) \
        "$(pkg-config --variable=libdir binance_uds)/libbinance_uds.a" \
        $(pkg-config --static --libs-only-l binance_uds | sed 's/-lbinance_uds//') || return 1
    ldd "$tmp/listen_key_static"
    ! ldd "$tmp/listen_key_static" | grep -q libbinance_uds
}
check "cc examples/c/listen_key.c libbinance_uds.a + Libs.private: no libbinance_uds.so dependency" build_static
check "examples/c/listen_key (static) against the local exchange" "$tmp/listen_key_static"

# --- c. CMake ------------------------------------------------------------------

# A copy of the prefix somewhere else: the package must find itself there.
moved=$tmp/moved-prefix
cmake_build() {
    cp -a "$prefix" "$moved" || return 1
    cmake -S tests/cmake -B "$tmp/cmake-build" -DCMAKE_PREFIX_PATH="$moved" \
        -DCMAKE_C_FLAGS="-Wall -Wextra -Wpedantic -Werror" || return 1
    cmake --build "$tmp/cmake-build" || return 1
    ! ldd "$tmp/cmake-build/app_static" | grep -q libbinance_uds
}
check "CMake: find_package(binance_uds 0.1) from a moved prefix, build shared and static" cmake_build
app_loads_from_prefix() {
    ldd "$1" | grep libbinance_uds
    ldd "$1" | grep "$moved/lib/$soname" >/dev/null
}
check "CMake: app loads $soname from the prefix (build RPATH)" \
    app_loads_from_prefix "$tmp/cmake-build/app"
check "CMake: app (binance_uds::binance_uds) against the local exchange" \
    "$tmp/cmake-build/app"
check "CMake: app_static (binance_uds::binance_uds_static) against the local exchange" \
    "$tmp/cmake-build/app_static"

# The version file's rule, through find_package itself (a project with no
# languages configures in a fraction of a second).
mkdir -p "$tmp/find-version"
cat >"$tmp/find-version/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.19)
project(find_version NONE)
find_package(binance_uds ${REQUEST} QUIET)
message(STATUS "found=${binance_uds_FOUND}")
EOF
# version_check REQUEST EXPECTED: EXPECTED is 1 (found) or 0 (refused).
version_check() {
    local got
    rm -rf "$tmp/find-version/build"
    got=$(cmake -S "$tmp/find-version" -B "$tmp/find-version/build" \
        -DCMAKE_PREFIX_PATH="$prefix" -DREQUEST="$1" | sed -n 's/^-- found=//p')
    case "$got" in 1 | TRUE) got=1 ;; *) got=0 ;; esac
    echo "find_package(binance_uds $1) with $version installed: $([ "$got" = 1 ] && echo found || echo refused)"
    [ "$got" = "$2" ]
}
version_rules() {
    local status=0
    version_check "" 1 || status=1
    version_check "$version" 1 || status=1
    version_check "$major.$minor" 1 || status=1
    version_check "$major.$minor.$((${version##*.} + 1))" 0 || status=1
    version_check "$major.$((minor + 1))" 0 || status=1
    version_check "$((major + 1))" 0 || status=1
    if [ "$major" = 0 ] && [ "$minor" -gt 0 ]; then
        version_check "0.$((minor - 1))" 0 || status=1
    else
        version_check "$major.0" 1 || status=1
    fi
    version_check "0.0...<$((major + 1)).0" 1 || status=1
    version_check "$major.$((minor + 1))...$((major + 2)).0" 0 || status=1
    return "$status"
}
check "CMake version file: same major.minor for 0.x, not older than requested" version_rules

check "local-exchange exits at the end of its input" stop_exchange

# --- d. exported symbols ---------------------------------------------------------

# Function declarations in the header: lines that start with a type, not
# the comments and macros around them.
grep -E '^[A-Za-z].*[ *]binance_[a-z0-9_]+\(' include/binance_uds.h |
    sed -E 's/^.*[ *](binance_[a-z0-9_]+)\(.*$/\1/' | sort -u >"$tmp/header.syms" || true
exports() {
    local status=0
    nm -D --defined-only "$libdir/libbinance_uds.so.$version" >"$tmp/nm.out" || return 1
    awk '{ print $NF }' "$tmp/nm.out" | sort -u >"$tmp/exported.syms"
    if [ ! -s "$tmp/header.syms" ]; then
        echo "no function declarations found in include/binance_uds.h"
        return 1
    fi
    if [ -n "$(comm -13 "$tmp/header.syms" "$tmp/exported.syms")" ]; then
        echo "exported but not declared in the header:"
        comm -13 "$tmp/header.syms" "$tmp/exported.syms" | sed 's/^/  /'
        status=1
    fi
    if [ -n "$(comm -23 "$tmp/header.syms" "$tmp/exported.syms")" ]; then
        echo "declared in the header but not exported:"
        comm -23 "$tmp/header.syms" "$tmp/exported.syms" | sed 's/^/  /'
        status=1
    fi
    return "$status"
}
check "nm -D: the library exports exactly the $(wc -l <"$tmp/header.syms") functions of binance_uds.h" exports

# --- e. versions ---------------------------------------------------------------

versions() {
    # shellcheck disable=SC2046 # pkg-config's output is meant to be split
    cc "${CFLAGS_STRICT[@]}" -o "$tmp/version" tests/cmake/main.c \
        $(pkg-config --cflags --libs binance_uds) || return 1
    # No endpoint: the program only compares the versions.
    env -u BINANCE_WS_API_URL LD_LIBRARY_PATH="$libdir" "$tmp/version" >"$tmp/version.out" || return 1
    cat "$tmp/version.out"
    grep -qx "binance_version() $version" "$tmp/version.out" &&
        grep -qx "BINANCE_VERSION_MAJOR.MINOR.PATCH $version" "$tmp/version.out" &&
        grep -qx "BINANCE_VERSION_STRING $version" "$tmp/version.out"
}
check "binance_version() and BINANCE_VERSION_* in C equal Cargo.toml's $version" versions

summary
[ "$failed" -eq 0 ]
