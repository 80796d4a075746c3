#!/usr/bin/env bash
# Builds the library and runs the C example end to end against the local
# exchange on loopback: no credentials, no internet.
#   scripts/demo.sh              examples/c/listen_key.c (start, keepalive, stop)
#   scripts/demo.sh user_stream  examples/c/user_stream.c (events as they come)
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-listen_key}
src=examples/c/$example.c
[ -f "$src" ] || { echo "no example $src" >&2; exit 2; }

echo "== building the library and the local exchange (release)"
cargo build --release -p binance-uds -p local-exchange

work=$(mktemp -d)
exchange_pid=
cleanup() {
    [ -n "$exchange_pid" ] && kill "$exchange_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

echo "== compiling $src"
cc -std=c99 -Wall -Wextra -Wpedantic -Werror -Iinclude "$src" \
    -Ltarget/release -lbinance_uds -Wl,-rpath,"$PWD/target/release" -o "$work/$example"

echo "== starting the local exchange"
mkfifo "$work/ready"
target/release/local-exchange --ca-out "$work/ca.pem" >"$work/ready" &
exchange_pid=$!
ws_api= stream= control=
while IFS= read -r line; do
    case $line in
        ws_api=*) ws_api=${line#ws_api=} ;;
        stream=*) stream=${line#stream=} ;;
        control=*) control=${line#control=} ;;
        ca_file=*) break ;;
    esac
done <"$work/ready"
echo "   WebSocket API $ws_api, stream $stream"

export BINANCE_WS_API_URL=$ws_api BINANCE_STREAM_URL=$stream BINANCE_CA_FILE=$work/ca.pem
export BINANCE_API_KEY=${BINANCE_API_KEY:-demoKEY0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS}
if [ "$example" = user_stream ]; then
    export BINANCE_MAX_EVENTS=${BINANCE_MAX_EVENTS:-6}
    # Some account activity on the exchange once the stream is up.
    (
        sleep 1
        for t in ORDER_TRADE_UPDATE TRADE_LITE ACCOUNT_UPDATE ORDER_TRADE_UPDATE ACCOUNT_CONFIG_UPDATE ORDER_TRADE_UPDATE; do
            printf '{"cmd":"emit","api_key":"%s","type":"%s"}\n' "$BINANCE_API_KEY" "$t"
        done | python3 -c '
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
for line in sys.stdin:
    with socket.create_connection((host, int(port))) as s:
        s.sendall(line.encode()); s.recv(4096)
' "$control"
    ) &
fi
echo "== running $example"
"$work/$example"
