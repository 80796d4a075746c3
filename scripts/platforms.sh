#!/usr/bin/env bash
# The platforms beyond Linux x86_64 (issue 18), from this Linux x86_64
# machine: docs/platforms.md says what each step proves and what it cannot.
#
#   macos    cargo check of the library and of every test, bench and example
#            for aarch64-apple-darwin and x86_64-apple-darwin (compile-checked
#            only: nothing here can link or run a Mach-O binary)
#   windows  x86_64-pc-windows-gnu: the DLL, its import libraries (MinGW and
#            MSVC) and CMake package, installed with scripts/install.sh; its
#            exports; the three C examples (and a C++ one) built with MinGW-w64
#            and run under Wine against the local exchange over ws://
#            loopback; CMake's find_package under a MinGW toolchain; a TLS
#            failure under Wine names its Windows code
#   arm64    aarch64-unknown-linux-gnu: the .so, its exports; the three C
#            examples built with aarch64-linux-gnu-gcc and run under
#            qemu-aarch64 against the local exchange over TLS; the unit tests
#            and the integration tests under qemu-aarch64 (the skips named
#            below, each with its reason)
#
# Usage: scripts/platforms.sh [--no-install] [macos] [windows] [arm64]
#   (no platform named: all three)
#   --no-install  do not apt-get install or rustup target add (they must be
#                 there already)
# Installs what it needs itself (Debian: apt-get, as root or with sudo;
# rustup). Runs on loopback only. Ends with a table of what each step took
# and "N passed, M failed"; exits non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."

install=1
platforms=()
for a in "$@"; do
    case "$a" in
        --no-install) install=0 ;;
        macos | windows | arm64) platforms+=("$a") ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        *) echo "platforms.sh: unknown argument '$a' (see --help)" >&2; exit 2 ;;
    esac
done
[ ${#platforms[@]} -gt 0 ] || platforms=(macos windows arm64)
want() { [[ " ${platforms[*]} " == *" $1 "* ]]; }

export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-2}
WIN=x86_64-pc-windows-gnu
ARM=aarch64-unknown-linux-gnu
API_KEY=platformsTest0123456789
SECRET_KEY=platformsSecret0123456789

passed=0
failed=0
timings=()
pass() {
    passed=$((passed + 1))
    printf 'ok    %s\n' "$1"
}
fail() {
    failed=$((failed + 1))
    printf 'FAIL  %s\n' "$1"
    if [ -n "${2:-}" ] && [ -s "$2" ]; then
        tail -n 60 "$2" | sed 's/^/      | /'
    fi
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
# timed DESCRIPTION COMMAND...: a check whose duration goes in the table.
timed() {
    local what=$1 start=$SECONDS
    shift
    check "$what" "$@"
    timings+=("$(printf '%5ds  %s' $((SECONDS - start)) "$what")")
}
summary() {
    printf '\n=== time per step\n'
    printf '%s\n' "${timings[@]}"
    printf '\n%d passed, %d failed\n' "$passed" "$failed"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/binance-uds-platforms.XXXXXX")
. scripts/exchange.sh
cleanup() {
    stop_exchange
    if [ -n "${WINEPREFIX:-}" ] && command -v wineserver >/dev/null; then
        wineserver -k 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# --- installing --------------------------------------------------------------

apt_packages=()
want windows && apt_packages+=(gcc-mingw-w64-x86-64-posix g++-mingw-w64-x86-64-posix
    binutils-mingw-w64-x86-64 wine wine64 cmake)
want arm64 && apt_packages+=(qemu-user gcc-aarch64-linux-gnu libc6-dev-arm64-cross
    libssl-dev:arm64)
rust_targets=()
want macos && rust_targets+=(aarch64-apple-darwin x86_64-apple-darwin)
want windows && rust_targets+=("$WIN")
want arm64 && rust_targets+=("$ARM")

install_tools() {
    local sudo= missing=() p
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    if want arm64 && ! dpkg --print-foreign-architectures | grep -qx arm64; then
        $sudo dpkg --add-architecture arm64
    fi
    for p in "${apt_packages[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        echo "apt-get install ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"
    fi
    rustup target add "${rust_targets[@]}"
}
if [ "$install" = 1 ]; then
    timed "install: apt-get ${apt_packages[*]}; rustup target add ${rust_targets[*]}" install_tools
fi

# The header's functions: what every build must export, no more, no less.
grep -E '^[A-Za-z].*[ *]binance_[a-z0-9_]+\(' include/binance_uds.h |
    sed -E 's/^.*[ *](binance_[a-z0-9_]+)\(.*$/\1/' | sort -u >"$tmp/header.syms"
nfuncs=$(wc -l <"$tmp/header.syms")
# same_symbols FILE: FILE (one name a line) is the header's list.
same_symbols() {
    sort -u "$1" >"$1.sorted"
    if ! cmp -s "$tmp/header.syms" "$1.sorted"; then
        echo "exported but not declared in the header:"
        comm -13 "$tmp/header.syms" "$1.sorted" | sed 's/^/  /'
        echo "declared in the header but not exported:"
        comm -23 "$tmp/header.syms" "$1.sorted" | sed 's/^/  /'
        return 1
    fi
    echo "$(wc -l <"$1.sorted") functions, the header's"
}

# wheel_is TARGET TAG FILES...: the Python wheel built for TARGET (in
# $tmp/wheels) has TAG in its file name and WHEEL, and holds FILES (and no
# library of another platform); unpacks it into $tmp/wheel-TARGET.
wheel_is() {
    local target=$1 tag=$2 wheel f
    shift 2
    wheel=$(compgen -G "$tmp/wheels/binance_uds-*-py3-none-$tag.whl") ||
        { echo "no wheel tagged py3-none-$tag in $tmp/wheels:"; ls "$tmp/wheels"; return 1; }
    echo "built $(basename "$wheel")"
    rm -rf "$tmp/wheel-$target"
    python3 -m zipfile -e "$wheel" "$tmp/wheel-$target" || return 1
    (cd "$tmp/wheel-$target" && find . -type f | sort)
    grep -qx "Tag: py3-none-$tag" "$tmp/wheel-$target"/*.dist-info/WHEEL ||
        { echo "WHEEL does not say Tag: py3-none-$tag"; return 1; }
    for f in "$@"; do
        compgen -G "$tmp/wheel-$target/$f" >/dev/null || { echo "missing in the wheel: $f"; return 1; }
    done
    for f in libbinance_uds.so binance_uds.dll libbinance_uds.dylib; do
        [[ " $* " == *"/$f "* ]] || [ ! -e "$tmp/wheel-$target/binance_uds/$f" ] ||
            { echo "the wheel also holds binance_uds/$f"; return 1; }
    done
}

# --- the local exchange (native) ---------------------------------------------

# start_exchange [OPTIONS...]: a local exchange on loopback (scripts/exchange.sh);
# sets ws_api, stream, rest, control, ca_file.
start_exchange() {
    exchange_start "$tmp" "$@" || return 1
    echo "local exchange: $ws_api"
}
stop_exchange() {
    exchange_stop || true
}
# ctl JSON: one control command; prints the answer line.
ctl() {
    local answer
    exec 5<>"/dev/tcp/${control%:*}/${control##*:}"
    printf '%s\n' "$1" >&5
    IFS= read -r answer <&5
    exec 5>&-
    printf '%s\n' "$answer"
}
# wait_for_stream: until the exchange has a stream subscribed to a key.
wait_for_stream() {
    local i
    for i in $(seq 1200); do
        ctl '{"cmd":"stream_connections"}' | grep -q '"keys":\["' && return 0
        sleep 0.1
    done
    echo "no stream subscribed to a listenKey after 120 s"
    return 1
}

# The runs of the examples, with what the tests assert on the native ones
# (tests/c_api.rs). RUN is the runner ("wine", "qemu-aarch64") and BIN the
# directory of the built examples. Output is read without the \r that
# Windows programs end lines with.

# No example may hang the script: each run ends within 120 s.
example_env() {
    timeout 120 env BINANCE_API_KEY="$API_KEY" BINANCE_WS_API_URL="$ws_api" BINANCE_STREAM_URL="$stream" \
        ${ca_file:+BINANCE_CA_FILE="$ca_file"} "$@"
}
run_listen_key() {
    example_env $RUN "$BIN/listen_key$EXE" 2>"$tmp/lk.err" | tr -d '\r' >"$tmp/lk.out" ||
        { cat "$tmp/lk.out" "$tmp/lk.err"; return 1; }
    cat "$tmp/lk.out"
    grep -q "listenKey" "$tmp/lk.out" && ! grep -q "$API_KEY" "$tmp/lk.out" "$tmp/lk.err"
}
run_user_stream() {
    local pid t
    example_env BINANCE_MAX_EVENTS=4 $RUN "$BIN/user_stream$EXE" >"$tmp/us.raw" 2>"$tmp/us.err" &
    pid=$!
    wait_for_stream || { kill "$pid"; wait "$pid"; cat "$tmp/us.raw" "$tmp/us.err"; return 1; }
    for t in ORDER_TRADE_UPDATE ACCOUNT_UPDATE TRADE_LITE ORDER_TRADE_UPDATE; do
        ctl "{\"cmd\":\"emit\",\"api_key\":\"$API_KEY\",\"type\":\"$t\"}" >/dev/null
    done
    wait "$pid" || { cat "$tmp/us.raw" "$tmp/us.err"; return 1; }
    tr -d '\r' <"$tmp/us.raw" >"$tmp/us.out"
    cat "$tmp/us.out"
    tail -n +2 "$tmp/us.out" >"$tmp/us.events"
    [ "$(wc -l <"$tmp/us.events")" -eq 4 ] &&
        sed -n 1p "$tmp/us.events" | grep -q 'ORDER_TRADE_UPDATE BTCUSDT NEW$' &&
        sed -n 2p "$tmp/us.events" | grep -q ' ACCOUNT_UPDATE {' &&
        sed -n 3p "$tmp/us.events" | grep -q ' TRADE_LITE {' &&
        ! grep -q "$API_KEY" "$tmp/us.out" "$tmp/us.err"
}
run_account_book() {
    local pid order
    # The snapshot, the deposit's ACCOUNT_UPDATE, the order's
    # ORDER_TRADE_UPDATE, then the fill's ORDER_TRADE_UPDATE, TRADE_LITE and
    # ACCOUNT_UPDATE: 6 events.
    example_env BINANCE_SECRET_KEY="$SECRET_KEY" BINANCE_REST_URL="$rest" BINANCE_MAX_EVENTS=6 \
        $RUN "$BIN/account_book$EXE" >"$tmp/ab.raw" 2>"$tmp/ab.err" &
    pid=$!
    wait_for_stream || { kill "$pid"; wait "$pid"; cat "$tmp/ab.raw" "$tmp/ab.err"; return 1; }
    ctl "{\"cmd\":\"deposit\",\"api_key\":\"$API_KEY\",\"asset\":\"USDT\",\"amount\":\"1000\"}" >/dev/null
    order=$(ctl "{\"cmd\":\"order_place\",\"api_key\":\"$API_KEY\",\"symbol\":\"BTCUSDT\",\"side\":\"BUY\",\"quantity\":\"0.010\",\"price\":\"60000\"}" |
        sed -n 's/.*"order_id":\([0-9]*\).*/\1/p')
    ctl "{\"cmd\":\"order_fill\",\"api_key\":\"$API_KEY\",\"order_id\":$order,\"quantity\":\"0.004\"}" >/dev/null
    wait "$pid" || { cat "$tmp/ab.raw" "$tmp/ab.err"; return 1; }
    tr -d '\r' <"$tmp/ab.raw" >"$tmp/ab.out"
    cat "$tmp/ab.out"
    # The last book printed: the order partly filled, the position it made.
    sed -n '/^book after /h; /^book after /!H; ${x;p}' "$tmp/ab.out" >"$tmp/ab.last"
    grep -q "book after binance.account_snapshot" "$tmp/ab.out" &&
        grep -Eq "order $order BTCUSDT BUY PARTIALLY_FILLED price=60000 .*executedQty=0\.0040* " "$tmp/ab.last" &&
        grep -Eq "position BTCUSDT BOTH positionAmt=0\.0040* " "$tmp/ab.last" &&
        ! grep -q -e "$API_KEY" -e "$SECRET_KEY" "$tmp/ab.out" "$tmp/ab.err"
}

# The native local exchange, built (or found up to date) once.
need_exchange() {
    if [ -z "${exchange_built:-}" ]; then
        timed "cargo build --release -p local-exchange (native)" \
            cargo build --release -p local-exchange
        exchange_built=1
    fi
}

CFLAGS_STRICT=(-std=c99 -Wall -Wextra -Wpedantic -Werror)

# --- macOS -------------------------------------------------------------------

if want macos; then
    printf '\n=== macOS (compile-checked)\n'
    for t in aarch64-apple-darwin x86_64-apple-darwin; do
        timed "cargo check -p binance-uds --target $t" cargo check -p binance-uds --target "$t"
        timed "cargo check -p binance-uds --all-targets --target $t" \
            cargo check -p binance-uds --all-targets --target "$t"
    done
fi

# --- Windows x86_64 --------------------------------------------------------------

if want windows; then
    printf '\n=== Windows x86_64 (built with MinGW-w64, run under Wine)\n'
    win=$tmp/windows
    timed "scripts/install.sh --target $WIN (cargo build --release, strip, import libraries)" \
        scripts/install.sh --target "$WIN" --prefix "$win"
    windows_files() {
        local f status=0
        for f in bin/binance_uds.dll lib/libbinance_uds.dll.a lib/binance_uds.lib \
            lib/binance_uds.def lib/libbinance_uds.a include/binance_uds.h \
            lib/pkgconfig/binance_uds.pc lib/cmake/binance_uds/binance_udsConfig.cmake; do
            [ -f "$win/$f" ] && echo "$f" || { echo "missing: $f"; status=1; }
        done
        return "$status"
    }
    check "installed bin/binance_uds.dll, lib/ import libraries (.dll.a, .lib, .def), header, CMake" \
        windows_files
    # Nothing below can run without the build.
    [ -f "$win/bin/binance_uds.dll" ] || { summary; exit 1; }
    dll_stripped() {
        local size
        size=$(stat -c %s "$win/bin/binance_uds.dll")
        echo "binance_uds.dll: $size bytes"
        x86_64-w64-mingw32-objdump -h "$win/bin/binance_uds.dll" >"$tmp/dll.sections" || return 1
        ! grep '\.debug_' "$tmp/dll.sections"
    }
    check "binance_uds.dll carries no debug sections" dll_stripped
    dll_exports() {
        x86_64-w64-mingw32-objdump -p "$win/bin/binance_uds.dll" |
            sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' |
            sed -n 's/^[[:space:]]*\[[[:space:]]*[0-9]*\] //p' >"$tmp/dll.syms"
        same_symbols "$tmp/dll.syms"
    }
    check "binance_uds.dll exports exactly the $nfuncs functions of binance_uds.h" dll_exports
    def_exports() {
        sed -n 's/^    //p' "$win/lib/binance_uds.def" >"$tmp/def.syms"
        same_symbols "$tmp/def.syms" || return 1
        x86_64-w64-mingw32-nm "$win/lib/binance_uds.lib" | sed -n 's/.* T \(binance_[a-z0-9_]*\)$/\1/p' \
            >"$tmp/lib.syms"
        same_symbols "$tmp/lib.syms"
    }
    check "binance_uds.def and binance_uds.lib (MSVC import library) name the same $nfuncs" def_exports
    dll_imports() {
        local dll status=0
        x86_64-w64-mingw32-objdump -p "$win/bin/binance_uds.dll" |
            sed -n 's/^[[:space:]]*DLL Name: //p' | sort -u >"$tmp/dll.imports"
        [ -s "$tmp/dll.imports" ] || { echo "no imports found"; return 1; }
        while read -r dll; do
            case "${dll,,}" in
                kernel32.dll | ntdll.dll | advapi32.dll | ws2_32.dll | bcrypt.dll | \
                    bcryptprimitives.dll | crypt32.dll | secur32.dll | userenv.dll | \
                    msvcrt.dll | ncrypt.dll | api-ms-win-*.dll) echo "$dll" ;;
                *) echo "not a Windows system DLL: $dll"; status=1 ;;
            esac
        done <"$tmp/dll.imports"
        return "$status"
    }
    check "binance_uds.dll needs only Windows system DLLs" dll_imports

    BIN=$tmp/windows-bin
    EXE=.exe
    mkdir -p "$BIN"
    build_windows_examples() {
        local ex
        for ex in listen_key user_stream account_book; do
            x86_64-w64-mingw32-gcc "${CFLAGS_STRICT[@]}" -I"$win/include" -o "$BIN/$ex.exe" \
                "examples/c/$ex.c" -L"$win/lib" -lbinance_uds || return 1
        done
        # The same through the MSVC import library (ld reads it too).
        x86_64-w64-mingw32-gcc "${CFLAGS_STRICT[@]}" -I"$win/include" -o "$BIN/listen_key_lib.exe" \
            examples/c/listen_key.c "$win/lib/binance_uds.lib"
    }
    timed "x86_64-w64-mingw32-gcc -Werror -Wpedantic: the three C examples (and one via binance_uds.lib)" \
        build_windows_examples
    if [ -f include/binance_uds.hpp ]; then
        # The C++ runtime linked in, so that no libstdc++/libwinpthread DLL has
    # to travel with the program.
    check "x86_64-w64-mingw32-g++-posix: examples/cpp/listen_key.cpp (std::mutex needs the posix flavour)" \
            x86_64-w64-mingw32-g++-posix -std=c++17 -Wall -Wextra -Werror -I"$win/include" \
            -o "$BIN/listen_key_cpp.exe" examples/cpp/listen_key.cpp -L"$win/lib" -lbinance_uds \
            -static-libgcc -static-libstdc++ -Wl,-Bstatic -lstdc++ -lpthread -Wl,-Bdynamic
    fi
    cmake_windows() {
        cat >"$tmp/mingw.cmake" <<'EOF'
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
EOF
        cmake -S tests/cmake -B "$tmp/cmake-windows" -DCMAKE_TOOLCHAIN_FILE="$tmp/mingw.cmake" \
            -DCMAKE_PREFIX_PATH="$win" -DCMAKE_C_FLAGS="-Wall -Wextra -Wpedantic -Werror" &&
            cmake --build "$tmp/cmake-windows" &&
            grep -r "libbinance_uds.dll.a" "$tmp/cmake-windows" --include=*.txt --include=*.rsp \
                --include=build.make -l
    }
    timed "CMake (MinGW toolchain): find_package(binance_uds) links app.exe to the import library" \
        cmake_windows

    # Wine: a prefix of our own, the DLL and the bcryptprimitives shim next
    # to the programs (Windows looks for DLLs beside the .exe first).
    export WINEPREFIX=$tmp/wineprefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
    timed "the Wine shim bcryptprimitives.dll (scripts/windows/bcryptprimitives.c)" \
        x86_64-w64-mingw32-gcc -shared -O2 -Wall -Werror -o "$BIN/bcryptprimitives.dll" \
        scripts/windows/bcryptprimitives.c scripts/windows/bcryptprimitives.def -ladvapi32
    cp "$win/bin/binance_uds.dll" "$BIN/"
    cp "$win/bin/binance_uds.dll" "$BIN/bcryptprimitives.dll" "$tmp/cmake-windows/" 2>/dev/null || true
    timed "wineboot: a fresh Wine prefix" wineboot --init
    RUN=wine
    need_exchange
    check "local-exchange --plain (ws:// and http:// on loopback)" \
        start_exchange --plain --account "$API_KEY:$SECRET_KEY"
    timed "Wine: examples/c/listen_key.exe over ws:// loopback" run_listen_key
    timed "Wine: examples/c/user_stream.exe prints the 4 events emitted" run_user_stream
    timed "Wine: examples/c/account_book.exe: snapshot (signed REST), order, partial fill" \
        run_account_book
    run_via_lib() { example_env wine "$BIN/listen_key_lib.exe"; }
    check "Wine: listen_key linked through binance_uds.lib" run_via_lib
    if [ -f "$BIN/listen_key_cpp.exe" ]; then
        check "Wine: examples/cpp/listen_key.exe" example_env wine "$BIN/listen_key_cpp.exe"
    fi
    check "Wine: CMake's app.exe (binance_uds::binance_uds)" \
        example_env wine "$tmp/cmake-windows/app.exe"
    check "Wine: CMake's app_static.exe (binance_uds::binance_uds_static)" \
        example_env wine "$tmp/cmake-windows/app_static.exe"

    # TLS under Wine with a certificate Wine's SChannel accepts: the
    # exchange's self-signed one, reached as localhost (the name it is for).
    start_self_signed() {
        start_exchange --self-signed --account "$API_KEY:$SECRET_KEY" || return 1
        ws_api=${ws_api/127.0.0.1/localhost}
        stream=${stream/127.0.0.1/localhost}
        rest=${rest/127.0.0.1/localhost}
        echo "as $ws_api"
    }
    check "local-exchange --self-signed (wss:// and https:// to localhost)" start_self_signed
    timed "Wine: examples/c/listen_key.exe over TLS (SChannel)" run_listen_key
    # Not user_stream.exe nor account_book.exe over TLS: under Wine the last
    # event of a burst, written by the exchange, sometimes does not reach the
    # program for minutes (docs/platforms.md, "an open question"); over
    # ws:// they always arrive, and are checked above. It needs a run on
    # real Windows, not a check made to pass here.

    # Wine's SChannel does not honour the "revocation unknown" flags that
    # real Windows does, so the exchange's CA-signed certificate is refused:
    # the message must name the Windows code.
    check "local-exchange over TLS (CA-signed certificate)" start_exchange
    wine_tls_error_named() {
        ! example_env wine "$BIN/listen_key.exe" >"$tmp/tls.out" 2>&1
        cat "$tmp/tls.out"
        grep -q "BINANCE_TLS_FAILED" "$tmp/tls.out" &&
            grep -Eq "(CERT|SEC|CRYPT)_E_[A-Z_]+ \(0x8[0-9A-F]{7}\): [a-z]" "$tmp/tls.out"
    }
    check "Wine: a TLS failure names its CERT_E_/SEC_E_ code in hex and words" wine_tls_error_named
    stop_exchange

fi

# --- Linux arm64 ---------------------------------------------------------------

if want arm64; then
    printf '\n=== Linux arm64 (cross-built, run under qemu-aarch64)\n'
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64
    export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
    # Debian's multiarch OpenSSL for arm64 (libssl-dev:arm64).
    export AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_LIB_DIR=/usr/lib/aarch64-linux-gnu
    export AARCH64_UNKNOWN_LINUX_GNU_OPENSSL_INCLUDE_DIR=/usr/include
    timed "cargo build --release --target $ARM -p binance-uds" \
        cargo build --release --target "$ARM" -p binance-uds
    armlib=$tmp/arm64/lib
    check "scripts/install.sh --target $ARM --no-build (soname, symlinks, .pc, CMake)" \
        scripts/install.sh --target "$ARM" --prefix "$tmp/arm64" --no-build
    arm_so() {
        readelf -h "$armlib/libbinance_uds.so" | grep 'Machine:[[:space:]]*AArch64' || return 1
        aarch64-linux-gnu-nm -D --defined-only "$armlib/libbinance_uds.so" | awk '{ print $NF }' \
            >"$tmp/arm.syms"
        same_symbols "$tmp/arm.syms"
    }
    check "the installed libbinance_uds.so is AArch64 and exports exactly the $nfuncs functions of the header" \
        arm_so
    BIN=$tmp/arm64-bin
    EXE=
    mkdir -p "$BIN"
    build_arm_examples() {
        local ex
        for ex in listen_key user_stream account_book; do
            aarch64-linux-gnu-gcc "${CFLAGS_STRICT[@]}" -I"$tmp/arm64/include" -o "$BIN/$ex" \
                "examples/c/$ex.c" -L"$armlib" -lbinance_uds -Wl,-rpath,"$armlib" || return 1
        done
    }
    timed "aarch64-linux-gnu-gcc -Werror -Wpedantic: the three C examples, against the install" \
        build_arm_examples
    # No -L: the loader and libc are Debian's arm64 ones (libc6:arm64), the
    # same the library was linked against.
    RUN=qemu-aarch64
    need_exchange
    check "local-exchange over TLS" start_exchange --account "$API_KEY:$SECRET_KEY"
    timed "qemu-aarch64: examples/c/listen_key over TLS" run_listen_key
    timed "qemu-aarch64: examples/c/user_stream prints the 4 events emitted" run_user_stream
    timed "qemu-aarch64: examples/c/account_book: snapshot (signed REST), order, partial fill" \
        run_account_book
    stop_exchange

    # The Rust tests: built for arm64, run by cargo through qemu-aarch64.
    # They start the native local exchange (BINANCE_UDS_EXCHANGE): it is a
    # test fixture, not the code under test.
    export BINANCE_UDS_EXCHANGE=$PWD/target/release/local-exchange
    timed "cargo test --target $ARM --no-run (unit and integration tests)" \
        cargo test --target "$ARM" -p binance-uds --tests --no-run
    timed "qemu-aarch64: unit tests (cargo test --lib)" cargo test --target "$ARM" -p binance-uds --lib
    # Skipped under emulation, each for its reason (docs/platforms.md):
    #   c_api, cpp_api, readme  compile C/C++ with the host's cc and run the
    #                           programs from the emulated test: qemu-user
    #                           does not follow exec into an arm64 program.
    #                           The C examples run above under qemu instead.
    #   local_exchange          tests the local exchange, a native program
    #                           here, not the library; its silence windows
    #                           and lapse times are wall-clock bounds that
    #                           emulation stretches.
    #   soak                    a minute of load per soak, judged against
    #                           wall-clock time: under emulation it measures
    #                           qemu, not the library.
    #   secrets::the_process_output_shows_no_secret
    #                           runs its own test binary again as a child
    #                           process: the same exec qemu-user cannot do.
    #   faults::an_endless_stream_of_unrelated_messages_does_not_stop_answers
    #                           40 calls, each with a 2 s timeout, behind a
    #                           flood of 2000 messages the emulated client
    #                           parses 10-20 times slower than a real one.
    #   user_stream::close_wakes_a_blocked_next_and_leaves_nothing_behind,
    #   user_stream::shutdown_wakes_every_reader_and_refuses_new_reads_without_freeing
    #                           they wait until the reader thread is seen
    #                           asleep in futex through
    #                           /proc/self/task/<tid>/syscall, which
    #                           qemu-user does not emulate.
    arm_skips=(c_api cpp_api readme local_exchange soak)
    arm_skip_tests=(under_random_faults the_process_output_shows_no_secret
        an_endless_stream_of_unrelated_messages_does_not_stop_answers
        close_wakes_a_blocked_next_and_leaves_nothing_behind
        shutdown_wakes_every_reader_and_refuses_new_reads_without_freeing)
    arm_integration() {
        local t tests=() skips=() status=0
        for t in tests/*.rs; do
            t=$(basename "$t" .rs)
            [[ " ${arm_skips[*]} " == *" $t "* ]] || tests+=(--test "$t")
        done
        for t in "${arm_skip_tests[@]}"; do
            skips+=(--skip "$t")
        done
        # The whole output in $tmp/arm64-tests.log; the verdicts shown.
        cargo test --no-fail-fast --target "$ARM" -p binance-uds "${tests[@]}" -- "${skips[@]}" \
            >"$tmp/arm64-tests.log" 2>&1 || status=$?
        grep -E '^(test result|     Running|test .* FAILED$)|panicked at' -A1 "$tmp/arm64-tests.log"
        # Last, so that a failure's summary shows them.
        echo "failed tests:"
        grep -E '^test .* FAILED$' "$tmp/arm64-tests.log" || echo "  none"
        grep -E -A2 "^thread '.*' .*panicked at" "$tmp/arm64-tests.log" | tail -n 20
        return "$status"
    }
    timed "qemu-aarch64: integration tests (all but ${arm_skips[*]})" arm_integration
fi

# --- Python wheels ------------------------------------------------------------

wheel_targets=()
want windows && wheel_targets+=(--target "$WIN")
want arm64 && wheel_targets+=(--target "$ARM")
if [ ${#wheel_targets[@]} -gt 0 ]; then
    printf '\n=== Python wheels\n'
    timed "bindings/python/build-wheel.sh ${wheel_targets[*]}" \
        bindings/python/build-wheel.sh "${wheel_targets[@]}" "$tmp/wheels"
fi
if want windows; then
    win_wheel() {
        wheel_is "$WIN" win_amd64 binance_uds/__init__.py binance_uds/binance_uds.dll || return 1
        x86_64-w64-mingw32-objdump -p "$tmp/wheel-$WIN/binance_uds/binance_uds.dll" |
            sed -n '/\[Ordinal\/Name Pointer\] Table/,/^$/p' |
            sed -n 's/^[[:space:]]*\[[[:space:]]*[0-9]*\] //p' >"$tmp/wheel-dll.syms"
        same_symbols "$tmp/wheel-dll.syms"
    }
    check "Python wheel win_amd64: binance_uds/binance_uds.dll, exporting the header's functions" win_wheel
fi
if want arm64; then
    BIN=$tmp/arm64-bin
    check "local-exchange over TLS" start_exchange
    arm_wheel() {
        local lib soname
        wheel_is "$ARM" manylinux_2_34_aarch64 binance_uds/__init__.py \
            binance_uds/libbinance_uds.so 'binance_uds.libs/libssl*.so*' \
            'binance_uds.libs/libcrypto*.so*' || return 1
        lib=$tmp/wheel-$ARM/binance_uds
        readelf -h "$lib/libbinance_uds.so" | grep 'Machine:[[:space:]]*AArch64' || return 1
        readelf -d "$lib/libbinance_uds.so" | grep -E 'R(UN)?PATH.*\$ORIGIN/\.\./binance_uds\.libs' ||
            { echo "the library does not look for its OpenSSL in binance_uds.libs"; return 1; }
        # The wheel's library, with the OpenSSL it carries, loaded by an
        # arm64 program under qemu, against the exchange over TLS. Python
        # opens the library by its path; a linked program asks for its
        # soname, so one is put beside it (in this unpacked copy).
        soname=$(readelf -d "$lib/libbinance_uds.so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
        [ -n "$soname" ] || { echo "no SONAME"; return 1; }
        ln -sf libbinance_uds.so "$lib/$soname"
        aarch64-linux-gnu-gcc "${CFLAGS_STRICT[@]}" -Iinclude -o "$BIN/listen_key_wheel" \
            examples/c/listen_key.c -L"$lib" -lbinance_uds -Wl,-rpath,"$lib" || return 1
        example_env qemu-aarch64 "$BIN/listen_key_wheel"
    }
    check "Python wheel manylinux_2_34_aarch64: its library and vendored OpenSSL run under qemu" arm_wheel
    stop_exchange
fi

summary
[ "$failed" -eq 0 ]
