#!/usr/bin/env bash
# Installs binance-uds for C and C++ users (Linux), the way cargo-c lays a
# library out:
#
#   <prefix>/include/binance_uds.h (and binance_uds.hpp when present)
#   <libdir>/libbinance_uds.so.X.Y.Z, libbinance_uds.so.<soname version> and
#            libbinance_uds.so (symlinks to it), libbinance_uds.a
#   <libdir>/pkgconfig/binance_uds.pc
#   <libdir>/cmake/binance_uds/binance_udsConfig.cmake, ...ConfigVersion.cmake
#
# Usage: scripts/install.sh [--prefix DIR] [--libdir DIR] [--no-build]
#   --prefix DIR  install prefix (default /usr/local)
#   --libdir DIR  library directory, absolute or relative to the prefix
#                 (default lib)
#   --no-build    install what `cargo build --release` already built
# DESTDIR, when set, is prepended to every installed path (for packagers);
# the .pc and CMake files still name the prefix without it.
#
# Needs: cargo and rustc (the ones that built the library), readelf.
set -euo pipefail

usage() {
    sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"
}

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

prefix=/usr/local
libdir=lib
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --libdir) [ $# -ge 2 ] || die "--libdir needs a directory"; libdir=$2; shift 2 ;;
        --libdir=*) libdir=${1#--libdir=}; shift ;;
        --no-build) build=0; shift ;;
        -h | --help) usage; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
[ -n "$prefix" ] || die "--prefix is empty"
[ -n "$libdir" ] || die "--libdir is empty"

# The paths as the installed files will see them (without DESTDIR), made
# absolute against the directory the script was started from.
prefix=$(realpath -m -- "$prefix")
case "$libdir" in
    /*) libdir=$(realpath -m -- "$libdir") ;;
    *) libdir=$(realpath -m -- "$prefix/$libdir") ;;
esac
includedir=$prefix/include
cmakedir=$libdir/cmake/binance_uds
destdir=${DESTDIR:-}

cd "$(dirname "$0")/.."

[ "$(uname -s)" = Linux ] || die "only Linux is supported for now (soname, symlinks, ELF checks)"
command -v readelf >/dev/null || die "readelf not found (binutils)"

# The version, from the [package] table of Cargo.toml.
version=$(awk '
    /^\[/ { in_package = ($0 == "[package]") }
    in_package && /^version[ \t]*=/ { gsub(/^version[ \t]*=[ \t]*"|".*$/, ""); print; exit }
' Cargo.toml)
[[ "$version" =~ ^([0-9]+)\.([0-9]+)\.([0-9]+)$ ]] ||
    die "could not read a MAJOR.MINOR.PATCH version from Cargo.toml (got '$version')"
version_major=${BASH_REMATCH[1]}
version_minor=${BASH_REMATCH[2]}

if [ "$build" = 1 ]; then
    echo "install.sh: building the library (cargo build --release --lib)"
    cargo build --release --lib
fi

target_dir=$(cargo metadata --format-version 1 --no-deps --offline |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "could not find Cargo's target directory (cargo metadata)"
release=$target_dir/release
for f in libbinance_uds.so libbinance_uds.a libbinance_uds.rlib; do
    [ -f "$release/$f" ] ||
        die "$release/$f is missing: run 'cargo build --release' first, or drop --no-build"
done

# The soname is decided in build.rs; take it from the library itself.
soname=$(readelf -d "$release/libbinance_uds.so" |
    sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ -n "$soname" ] ||
    die "$release/libbinance_uds.so has no SONAME: it was built before build.rs set one; rebuild it"
shared_file=libbinance_uds.so.$version
if readelf -h "$release/libbinance_uds.so" | grep 'Class:[[:space:]]*ELF64' >/dev/null; then
    sizeof_void_p=8
else
    sizeof_void_p=4
fi

# The system libraries a static link needs, as rustc reports them for a
# staticlib of this crate and its dependencies. Linking a throwaway staticlib
# against the built rlib asks the same question as `cargo rustc --crate-type
# staticlib -- --print native-static-libs` without rebuilding the library
# (which would also make the next `cargo build` rebuild it).
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo 'extern crate binance_uds;' >"$scratch/native_libs.rs"
if ! "${RUSTC:-rustc}" --edition 2021 --crate-type staticlib --crate-name native_libs \
    -L "dependency=$release/deps" --extern "binance_uds=$release/libbinance_uds.rlib" \
    --print native-static-libs -o "$scratch/libnative_libs.a" "$scratch/native_libs.rs" \
    >"$scratch/rustc.out" 2>&1; then
    cat "$scratch/rustc.out" >&2
    die "rustc could not link against $release/libbinance_uds.rlib (a different rustc than the one that built it?)"
fi
native_static_libs=$(sed -n 's/^note: native-static-libs: //p' "$scratch/rustc.out")
[ -n "$native_static_libs" ] || {
    cat "$scratch/rustc.out" >&2
    die "rustc printed no native-static-libs line"
}

# pkg-config: libdir under the prefix is written relative to it.
case "$libdir" in
    "$prefix"/*) pc_libdir="\${exec_prefix}/${libdir#"$prefix"/}" ;;
    *) pc_libdir=$libdir ;;
esac

# Fills a template from packaging/: each @NAME@ is replaced with its value.
fill() {
    local text
    text=$(<"packaging/$1")
    text=${text//"@VERSION@"/"$version"}
    text=${text//"@VERSION_MAJOR@"/"$version_major"}
    text=${text//"@VERSION_MINOR@"/"$version_minor"}
    text=${text//"@PREFIX@"/"$prefix"}
    text=${text//"@PC_LIBDIR@"/"$pc_libdir"}
    text=${text//"@NATIVE_STATIC_LIBS@"/"$native_static_libs"}
    text=${text//"@CMAKE_NATIVE_STATIC_LIBS@"/"${native_static_libs// /;}"}
    text=${text//"@CMAKE_TO_LIBDIR@"/"$(realpath -m --relative-to="$cmakedir" "$libdir")"}
    text=${text//"@CMAKE_TO_INCLUDEDIR@"/"$(realpath -m --relative-to="$cmakedir" "$includedir")"}
    text=${text//"@SHARED_FILE@"/"$shared_file"}
    text=${text//"@SONAME@"/"$soname"}
    text=${text//"@SIZEOF_VOID_P@"/"$sizeof_void_p"}
    if [[ "$text" =~ @[A-Z_]+@ ]]; then
        die "packaging/$1: no value for ${BASH_REMATCH[0]}"
    fi
    printf '%s\n' "$text"
}

fill binance_uds.pc.in >"$scratch/binance_uds.pc"
fill binance_udsConfig.cmake.in >"$scratch/binance_udsConfig.cmake"
fill binance_udsConfigVersion.cmake.in >"$scratch/binance_udsConfigVersion.cmake"

echo "install.sh: installing binance-uds $version into ${destdir}${prefix}"
install -d "$destdir$includedir" "$destdir$libdir/pkgconfig" "$destdir$cmakedir"
install -m 644 include/binance_uds.h "$destdir$includedir/"
if [ -f include/binance_uds.hpp ]; then
    install -m 644 include/binance_uds.hpp "$destdir$includedir/"
fi
install -m 755 "$release/libbinance_uds.so" "$destdir$libdir/$shared_file"
for link in "$soname" libbinance_uds.so; do
    if [ "$link" != "$shared_file" ]; then
        ln -sfn "$shared_file" "$destdir$libdir/$link"
    fi
done
install -m 644 "$release/libbinance_uds.a" "$destdir$libdir/"
install -m 644 "$scratch/binance_uds.pc" "$destdir$libdir/pkgconfig/"
install -m 644 "$scratch/binance_udsConfig.cmake" "$scratch/binance_udsConfigVersion.cmake" \
    "$destdir$cmakedir/"

echo "install.sh: installed
  $destdir$includedir/binance_uds.h
  $destdir$libdir/$shared_file ($soname, libbinance_uds.so -> it)
  $destdir$libdir/libbinance_uds.a
  $destdir$libdir/pkgconfig/binance_uds.pc
  $destdir$cmakedir/binance_udsConfig.cmake, binance_udsConfigVersion.cmake"
