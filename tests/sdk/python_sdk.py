#!/usr/bin/env python3
"""The official Binance Python SDK against the local exchange (issue 9).

Its WebSocket API client obtains a listenKey (userDataStream.start), its
streams client opens the /market, /public and /private pool and subscribes
the key (user_data), the control port emits an ORDER_TRADE_UPDATE, and the
SDK's callback must receive it intact. Run by scripts/test.sh in a venv with
binance-sdk-derivatives-trading-usds-futures (pinned there) installed.

The exchange is target/debug/local-exchange, or $BINANCE_UDS_EXCHANGE.
Exits non-zero, with the reason, on any failure.
"""

import asyncio
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile

from binance_common.configuration import (
    ConfigurationWebSocketAPI,
    ConfigurationWebSocketStreams,
)
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
    DerivativesTradingUsdsFutures,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
API_KEY = "PythonSdkKey0123456789"
WAIT = 15


class Exchange:
    """A local-exchange child process (TLS), with its ready lines parsed."""

    def __init__(self, *args):
        exe = os.environ.get("BINANCE_UDS_EXCHANGE") or os.path.join(
            ROOT, "target", "debug", "local-exchange"
        )
        self.dir = tempfile.TemporaryDirectory(prefix="sdk-exchange-")
        cmd = [
            exe,
            "--die-with-stdin",
            "--ca-out",
            os.path.join(self.dir.name, "ca.pem"),
            "--ca-key",
            os.path.join(self.dir.name, "ca.key"),
            *args,
        ]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = {}
        while not {"ws_api", "stream", "control", "ca_file", "rest"} <= self.ready.keys():
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit(f"local-exchange ({exe}) ended before it was ready")
            k, _, v = line.strip().partition("=")
            self.ready[k] = v  # unknown lines (rest=, ...) are kept, not fatal

    def control(self, cmd):
        host, port = self.ready["control"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=WAIT) as s:
            s.sendall((json.dumps(cmd) + "\n").encode())
            answer = json.loads(s.makefile().readline())
        if not answer.get("ok"):
            raise SystemExit(f"control {cmd} failed: {answer}")
        return answer

    def close(self):
        self.proc.stdin.close()
        self.proc.kill()
        self.proc.wait()
        self.dir.cleanup()


def model_dict(msg):
    """The SDK hands callbacks a pydantic model (a oneOf wrapper): its JSON form."""
    inner = getattr(msg, "actual_instance", None) or msg
    if hasattr(inner, "to_dict"):
        return inner.to_dict()
    return inner.model_dump(by_alias=True, exclude_none=True)


def same(emitted, got, path="event"):
    """Every field emitted arrives with the same value (the SDK may add
    optional fields as null, which to_dict leaves out)."""
    if isinstance(emitted, dict):
        if not isinstance(got, dict):
            raise AssertionError(f"{path}: {got!r} is not an object")
        for k, v in emitted.items():
            if k not in got:
                raise AssertionError(f"{path}.{k} missing in {got}")
            same(v, got[k], f"{path}.{k}")
    elif emitted != got:
        raise AssertionError(f"{path}: emitted {emitted!r}, got {got!r}")


async def main():
    ex = Exchange("--stream-string-ids")
    try:
        ctx = ssl.create_default_context(cafile=ex.ready["ca_file"])
        base = ex.ready["stream"].rsplit("/private", 1)[0]
        sdk = DerivativesTradingUsdsFutures(
            config_ws_api=ConfigurationWebSocketAPI(
                api_key=API_KEY, stream_url=ex.ready["ws_api"], https_agent=ctx
            ),
            config_ws_streams=ConfigurationWebSocketStreams(
                stream_url=base, https_agent=ctx
            ),
        )
        api = await sdk.websocket_api.create_connection()
        started = await api.start_user_data_stream()
        listen_key = started.data().result.listen_key
        keys = ex.control({"cmd": "keys"})["keys"]
        assert [k["listen_key"] for k in keys] == [listen_key], (keys, listen_key)
        print(f"python SDK: userDataStream.start gave {listen_key[:8]}…")

        streams = await sdk.websocket_streams.create_connection()
        got = asyncio.get_running_loop().create_future()
        handle = await streams.user_data(listen_key)
        handle.on("message", lambda m: got.done() or got.set_result(m))

        # The pool opened all three routes; the key is subscribed on /private.
        conns = []
        for _ in range(100):
            conns = ex.control({"cmd": "stream_connections"})["connections"]
            if any(listen_key in c["keys"] for c in conns):
                break
            await asyncio.sleep(0.05)
        paths = sorted(c["path"] for c in conns)
        assert paths == ["/market/stream", "/private/stream", "/public/stream"], conns
        private = next(c for c in conns if c["path"] == "/private/stream")
        assert private["form"] == "subscribe" and private["keys"] == [listen_key], private

        event = {
            "e": "ORDER_TRADE_UPDATE", "E": 0, "T": 1568879465650,
            "o": {
                "s": "BTCUSDT", "c": "sdk-check", "S": "BUY", "o": "LIMIT", "f": "GTC",
                "q": "0.002", "p": "64000.10", "ap": "0", "sp": "0", "x": "NEW",
                "X": "NEW", "i": 4242, "l": "0", "z": "0", "L": "0", "N": "USDT",
                "n": "0", "T": 1568879465650, "t": 0, "b": "128.0002", "a": "0",
                "m": False, "R": False, "wt": "CONTRACT_PRICE", "ot": "LIMIT",
                "ps": "BOTH", "cp": False, "rp": "0", "pP": False, "si": 0,
                "ss": 0, "V": "EXPIRE_MAKER", "pm": "NONE", "gtd": 0, "er": "0",
            },
        }
        raw = json.dumps(event, separators=(",", ":")).replace('"E":0', '"E":{E}')
        emitted = ex.control({"cmd": "emit", "api_key": API_KEY, "raw": raw})
        assert emitted["delivered"] == 1, emitted
        event["E"] = emitted["first_E"]

        queue = asyncio.Queue()
        handle.on("message", queue.put_nowait)
        msg = await asyncio.wait_for(got, WAIT)
        # The SDK picks the model by `e` and keeps it as the model's type.
        kind = type(getattr(msg, "actual_instance", msg)).__name__
        assert kind == "OrderTradeUpdate", f"parsed as {kind}: {msg}"
        same({k: v for k, v in event.items() if k != "e"}, model_dict(msg))
        print("python SDK: the callback received the ORDER_TRADE_UPDATE intact")
        await asyncio.wait_for(queue.get(), WAIT)

        # serverShutdown on the stream: the SDK must see it as such and move
        # the subscription to a new connection before the old one closes.
        old = private["id"]
        ex.control({"cmd": "server_shutdown", "id": old, "close_after_ms": 15000})
        for _ in range(300):
            conns = ex.control({"cmd": "stream_connections"})["connections"]
            moved = [c for c in conns if c["id"] != old and listen_key in c["keys"]]
            if moved and all(c["id"] != old for c in conns):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError(f"no new subscribed connection after serverShutdown: {conns}")
        emitted = ex.control({"cmd": "emit", "api_key": API_KEY, "raw": raw})
        assert emitted["delivered"] == 1, emitted
        event["E"] = emitted["first_E"]
        msg = await asyncio.wait_for(queue.get(), WAIT)
        same({k: v for k, v in event.items() if k != "e"}, model_dict(msg))
        print("python SDK: after serverShutdown it resubscribed on a new connection")

        await streams.close_connection(close_session=True)
        await api.close_connection(close_session=True)
    finally:
        ex.close()


if __name__ == "__main__":
    asyncio.run(main())
