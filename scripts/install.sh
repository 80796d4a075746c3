#!/usr/bin/env bash
# Installs binance-uds for C and C++ users, the way cargo-c lays a library
# out. Linux (the default, or --target <arch>-unknown-linux-gnu):
#
#   <prefix>/include/binance_uds.h (and binance_uds.hpp when present)
#   <libdir>/libbinance_uds.so.X.Y.Z, libbinance_uds.so.<soname version> and
#            libbinance_uds.so (symlinks to it), libbinance_uds.a
#   <libdir>/pkgconfig/binance_uds.pc
#   <libdir>/cmake/binance_uds/binance_udsConfig.cmake, ...ConfigVersion.cmake
#
# Windows (--target x86_64-pc-windows-gnu, cross-built here with MinGW-w64):
#
#   <prefix>/bin/binance_uds.dll (debug info stripped)
#   <libdir>/libbinance_uds.dll.a  import library for MinGW (gcc, clang)
#   <libdir>/binance_uds.lib       import library for MSVC (link.exe), made
#                                  from binance_uds.def by dlltool
#   <libdir>/binance_uds.def       the exports: the header's functions
#   <libdir>/libbinance_uds.a      static library (MinGW only)
#   the header, .pc and CMake files as on Linux
#
# Usage: scripts/install.sh [--prefix DIR] [--libdir DIR] [--target T] [--no-build]
#   --prefix DIR  install prefix (default /usr/local)
#   --libdir DIR  library directory, absolute or relative to the prefix
#                 (default lib)
#   --target T    Rust target to install for (default: the host's);
#                 x86_64-pc-windows-gnu needs x86_64-w64-mingw32-strip and
#                 -dlltool (Debian: binutils-mingw-w64-x86-64)
#   --no-build    install what `cargo build --release` already built
# DESTDIR, when set, is prepended to every installed path (for packagers);
# the .pc and CMake files still name the prefix without it.
#
# Needs: cargo and rustc (the ones that built the library), readelf.
# macOS (.dylib, install name, rpath) is not handled yet: see
# docs/platforms.md.
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
target=
build=1
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) [ $# -ge 2 ] || die "--prefix needs a directory"; prefix=$2; shift 2 ;;
        --prefix=*) prefix=${1#--prefix=}; shift ;;
        --libdir) [ $# -ge 2 ] || die "--libdir needs a directory"; libdir=$2; shift 2 ;;
        --libdir=*) libdir=${1#--libdir=}; shift ;;
        --target) [ $# -ge 2 ] || die "--target needs a Rust target"; target=$2; shift 2 ;;
        --target=*) target=${1#--target=}; shift ;;
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
bindir=$prefix/bin
cmakedir=$libdir/cmake/binance_uds
destdir=${DESTDIR:-}

cd "$(dirname "$0")/.."

case "$target" in
    "") [ "$(uname -s)" = Linux ] ||
        die "only Linux and Windows (--target x86_64-pc-windows-gnu) are supported (see docs/platforms.md)"
        os=linux ;;
    *-linux-gnu*) os=linux ;;
    x86_64-pc-windows-gnu) os=windows ;;
    *) die "--target $target: only *-linux-gnu and x86_64-pc-windows-gnu are supported (see docs/platforms.md)" ;;
esac
if [ "$os" = linux ]; then
    command -v readelf >/dev/null || die "readelf not found (binutils)"
else
    for tool in x86_64-w64-mingw32-strip x86_64-w64-mingw32-dlltool; do
        command -v "$tool" >/dev/null || die "$tool not found (Debian: binutils-mingw-w64-x86-64)"
    done
fi
target_args=()
[ -z "$target" ] || target_args=(--target "$target")

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
    echo "install.sh: building the library (cargo build --release --lib ${target_args[*]})"
    cargo build --release --lib ${target_args[@]+"${target_args[@]}"}
fi

target_dir=$(cargo metadata --format-version 1 --no-deps --offline |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "could not find Cargo's target directory (cargo metadata)"
release=$target_dir/${target:+$target/}release
if [ "$os" = windows ]; then
    built=(binance_uds.dll libbinance_uds.dll.a libbinance_uds.a libbinance_uds.rlib)
else
    built=(libbinance_uds.so libbinance_uds.a libbinance_uds.rlib)
fi
for f in "${built[@]}"; do
    [ -f "$release/$f" ] ||
        die "$release/$f is missing: run 'cargo build --release ${target_args[*]}' first, or drop --no-build"
done

if [ "$os" = windows ]; then
    soname=binance_uds.dll
    shared_file=binance_uds.dll
    sizeof_void_p=8
else
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
fi

# The system libraries a static link needs, as rustc reports them for a
# staticlib of this crate and its dependencies. Linking a throwaway staticlib
# against the built rlib asks the same question as `cargo rustc --crate-type
# staticlib -- --print native-static-libs` without rebuilding the library
# (which would also make the next `cargo build` rebuild it). When cross
# building, the proc-macro crates are the host's, in target/release/deps.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo 'extern crate binance_uds;' >"$scratch/native_libs.rs"
if ! "${RUSTC:-rustc}" --edition 2021 --crate-type staticlib --crate-name native_libs \
    ${target_args[@]+"${target_args[@]}"} \
    -L "dependency=$release/deps" -L "dependency=$target_dir/release/deps" --extern "binance_uds=$release/libbinance_uds.rlib" \
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
    text=${text//"@CMAKE_TO_BINDIR@"/"$(realpath -m --relative-to="$cmakedir" "$bindir")"}
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

if [ "$os" = windows ]; then
    # The exports, from the header's function declarations: what an MSVC
    # import library is made from.
    {
        echo "LIBRARY binance_uds.dll"
        echo "EXPORTS"
        grep -E '^[A-Za-z].*[ *]binance_[a-z0-9_]+\(' include/binance_uds.h |
            sed -E 's/^.*[ *](binance_[a-z0-9_]+)\(.*$/    \1/' | sort -u
    } >"$scratch/binance_uds.def"
    x86_64-w64-mingw32-dlltool -m i386:x86-64 -D binance_uds.dll \
        -d "$scratch/binance_uds.def" -l "$scratch/binance_uds.lib" ||
        die "x86_64-w64-mingw32-dlltool could not make binance_uds.lib"
    # The release profile keeps line tables (debug = 1), which a DLL carries
    # inside itself (22.9 MB instead of 3.4 MB): strip them.
    x86_64-w64-mingw32-strip --strip-debug -o "$scratch/binance_uds.dll" "$release/binance_uds.dll" ||
        die "x86_64-w64-mingw32-strip failed on $release/binance_uds.dll"
fi

echo "install.sh: installing binance-uds $version into ${destdir}${prefix}"
install -d "$destdir$includedir" "$destdir$libdir/pkgconfig" "$destdir$cmakedir"
install -m 644 include/binance_uds.h "$destdir$includedir/"
if [ -f include/binance_uds.hpp ]; then
    install -m 644 include/binance_uds.hpp "$destdir$includedir/"
fi
if [ "$os" = windows ]; then
    install -d "$destdir$bindir"
    install -m 755 "$scratch/binance_uds.dll" "$destdir$bindir/"
    install -m 644 "$release/libbinance_uds.dll.a" "$scratch/binance_uds.lib" \
        "$scratch/binance_uds.def" "$destdir$libdir/"
else
    install -m 755 "$release/libbinance_uds.so" "$destdir$libdir/$shared_file"
    for link in "$soname" libbinance_uds.so; do
        if [ "$link" != "$shared_file" ]; then
            ln -sfn "$shared_file" "$destdir$libdir/$link"
        fi
    done
fi
install -m 644 "$release/libbinance_uds.a" "$destdir$libdir/"
install -m 644 "$scratch/binance_uds.pc" "$destdir$libdir/pkgconfig/"
install -m 644 "$scratch/binance_udsConfig.cmake" "$scratch/binance_udsConfigVersion.cmake" \
    "$destdir$cmakedir/"

if [ "$os" = windows ]; then
    shared_installed="$destdir$bindir/binance_uds.dll
  $destdir$libdir/libbinance_uds.dll.a, binance_uds.lib, binance_uds.def (import libraries)"
else
    shared_installed="$destdir$libdir/$shared_file ($soname, libbinance_uds.so -> it)"
fi
echo "install.sh: installed
  $destdir$includedir/binance_uds.h
  $shared_installed
  $destdir$libdir/libbinance_uds.a
  $destdir$libdir/pkgconfig/binance_uds.pc
  $destdir$cmakedir/binance_udsConfig.cmake, binance_udsConfigVersion.cmake"
