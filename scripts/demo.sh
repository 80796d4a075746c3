#!/usr/bin/env bash
# Builds the library and runs the C example end to end against the local
# exchange on loopback: no credentials, no internet.
#   scripts/demo.sh              examples/c/listen_key.c (start, keepalive, stop)
#   scripts/demo.sh user_stream [usdm|coinm|pm]
#                                examples/c/user_stream.c (events as they come)
#                                for the product's account (default usdm)
#   scripts/demo.sh poll_stream  examples/c/poll_stream.c (the same from a
#                                poll() loop on the stream's descriptor)
#   scripts/demo.sh account_book examples/c/account_book.c (open orders and
#                                positions kept from snapshots and events,
#                                through a dropped stream)
set -euo pipefail
cd "$(dirname "$0")/.."
example=${1:-listen_key}
product=${2:-usdm}
case $product in usdm|coinm|pm) ;; *) echo "product $product: usdm, coinm or pm" >&2; exit 2 ;; esac
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

export BINANCE_API_KEY=${BINANCE_API_KEY:-demoKEY0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS}
export BINANCE_SECRET_KEY=${BINANCE_SECRET_KEY:-demoSECRET0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNO}

echo "== starting the local exchange"
mkfifo "$work/ready"
# The account is registered with its secret, for the signed account snapshot.
target/release/local-exchange --ca-out "$work/ca.pem" --account "$BINANCE_API_KEY:$BINANCE_SECRET_KEY" >"$work/ready" &
exchange_pid=$!
ws_api= stream= control= rest= coinm_ws_api= coinm_stream= pm_stream=
while IFS= read -r line; do
    case $line in
        ws_api=*) ws_api=${line#ws_api=} ;;
        stream=*) stream=${line#stream=} ;;
        coinm_ws_api=*) coinm_ws_api=${line#coinm_ws_api=} ;;
        coinm_stream=*) coinm_stream=${line#coinm_stream=} ;;
        pm_stream=*) pm_stream=${line#pm_stream=} ;;
        control=*) control=${line#control=} ;;
        rest=*) rest=${line#rest=}; break ;;  # the last ready line
    esac
done <"$work/ready"
case $product in
    coinm) ws_api=$coinm_ws_api stream=$coinm_stream ;;
    pm) stream=$pm_stream ;;  # no WebSocket API: the listenKey goes over REST
esac
echo "   $product: WebSocket API $ws_api, stream $stream, REST $rest"
export BINANCE_PRODUCT=$product

export BINANCE_WS_API_URL=$ws_api BINANCE_STREAM_URL=$stream BINANCE_REST_URL=$rest BINANCE_CA_FILE=$work/ca.pem
if [ "$example" = user_stream ] || [ "$example" = poll_stream ]; then
    export BINANCE_MAX_EVENTS=${BINANCE_MAX_EVENTS:-6}
    # Some account activity on the exchange once the stream is up.
    (
        sleep 1
        for t in ORDER_TRADE_UPDATE TRADE_LITE ACCOUNT_UPDATE ORDER_TRADE_UPDATE ACCOUNT_CONFIG_UPDATE ORDER_TRADE_UPDATE; do
            printf '{"cmd":"emit","api_key":"%s","product":"%s","type":"%s"}\n' "$BINANCE_API_KEY" "$product" "$t"
        done | python3 -c '
import socket, sys
host, port = sys.argv[1].rsplit(":", 1)
for line in sys.stdin:
    with socket.create_connection((host, int(port))) as s:
        s.sendall(line.encode()); s.recv(4096)
' "$control"
    ) &
fi
if [ "$example" = account_book ]; then
    # The snapshot, 6 events of trading, the stream dropped (disconnected,
    # gap, snapshot: what was traded meanwhile is in it), one more event.
    export BINANCE_MAX_EVENTS=${BINANCE_MAX_EVENTS:-11}
    python3 - "$control" "$BINANCE_API_KEY" <<'EOF' &
import json, socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
key = sys.argv[2]
def control(**cmd):
    with socket.create_connection((host, int(port))) as s:
        s.sendall((json.dumps(cmd) + "\n").encode())
        return json.loads(s.makefile().readline())
time.sleep(1)
control(cmd="deposit", api_key=key, asset="USDT", amount="1000")
a = control(cmd="order_place", api_key=key, symbol="BTCUSDT", side="BUY", quantity="0.010", price="60000")["order_id"]
b = control(cmd="order_place", api_key=key, symbol="ETHUSDT", side="SELL", quantity="0.5", price="3000")["order_id"]
control(cmd="order_fill", api_key=key, order_id=a, quantity="0.004")
time.sleep(0.5)
control(cmd="drop", target="stream")
# While the stream is down: only the snapshot after the gap shows it.
control(cmd="order_place", api_key=key, symbol="BTCUSDT", side="SELL", quantity="0.002", price="61000")
time.sleep(2)
control(cmd="order_cancel", api_key=key, order_id=b)
EOF
fi
echo "== running $example"
"$work/$example"
