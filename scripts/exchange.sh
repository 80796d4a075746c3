# Sourced by the shell scripts that run programs against the local exchange
# (scripts/platforms.sh, tests/packaging.sh); defines:
#
# exchange_start DIR [OPTIONS...]: starts target/release/local-exchange with
#   OPTIONS on loopback, its output in DIR/exchange.out and .err, and waits
#   (30 s at most) for its ready lines. Sets exchange_pid and, from those
#   lines, ws_api, stream, rest, control and ca_file (empty over ws://).
#   The exchange reads a fifo that this shell holds open on descriptor 3:
#   when the shell ends, however it ends, the exchange reads end of file
#   and exits. Fails, printing the exchange's output, if it did not start.
# exchange_stop: closes that descriptor and waits for the exchange; its
#   status is the exchange's exit status (0 if none was running).

exchange_pid=

exchange_start() {
    local dir=$1 i
    shift
    exchange_stop || true
    rm -f "$dir/exchange.stdin"
    mkfifo "$dir/exchange.stdin"
    target/release/local-exchange --die-with-stdin "$@" \
        <"$dir/exchange.stdin" >"$dir/exchange.out" 2>"$dir/exchange.err" &
    exchange_pid=$!
    exec 3>"$dir/exchange.stdin"
    # rest= is the last ready line.
    for i in $(seq 300); do
        grep -q '^rest=' "$dir/exchange.out" && break
        kill -0 "$exchange_pid" 2>/dev/null || break
        sleep 0.1
    done
    ws_api=$(sed -n 's/^ws_api=//p' "$dir/exchange.out")
    stream=$(sed -n 's/^stream=//p' "$dir/exchange.out")
    rest=$(sed -n 's/^rest=//p' "$dir/exchange.out")
    control=$(sed -n 's/^control=//p' "$dir/exchange.out")
    ca_file=$(sed -n 's/^ca_file=//p' "$dir/exchange.out")
    [ -n "$rest" ] || { cat "$dir/exchange.out" "$dir/exchange.err"; return 1; }
}

exchange_stop() {
    local pid=$exchange_pid
    [ -n "$pid" ] || return 0
    exchange_pid=
    exec 3>&-
    wait "$pid"
}
