"""Benchmark peers in Python: the official SDK against the library's binding.

    python peers/python_peer.py sdk|binding cold WS_API CA_FILE API_KEY
    python peers/python_peer.py sdk|binding warm WS_API CA_FILE API_KEY N

`sdk` is Binance's `binance-sdk-derivatives-trading-usds-futures` (its
WebSocket API client, as its README shows, pointed at the local exchange
with `stream_url` and trusting its CA through `https_agent`); `binding` is
`bindings/python` (ctypes over libbinance_uds.so, found through
BINANCE_UDS_LIBRARY). Both do the same work: a listenKey from
`userDataStream.start`, then `userDataStream.ping` calls, each answer's key
read back.

Prints one line `RESULT {json}`, times in µs:
  cold: `us` from the first line of this script (imports included: they
        are part of a Python program's start) to the first key in hand;
  warm: `samples`, each keepalive call after 300 unmeasured ones.
"""

import sys
import time

T0 = time.perf_counter()

import os  # noqa: E402
import ssl  # noqa: E402

WARMUP = 300


def sdk_context(ca_file):
    # System roots plus the exchange's CA, as the library does.
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


async def sdk_connect(ws_api, ca_file, api_key):
    from binance_common.configuration import ConfigurationWebSocketAPI
    from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
        DerivativesTradingUsdsFutures,
    )

    config = ConfigurationWebSocketAPI(
        api_key=api_key,
        api_secret="unused",  # user-stream calls are not signed
        stream_url=ws_api,
        https_agent=sdk_context(ca_file),
    )
    client = DerivativesTradingUsdsFutures(config_ws_api=config)
    return await client.websocket_api.create_connection()


def sdk_key(answer):
    return answer.data().result.listen_key


async def sdk_main(mode, ws_api, ca_file, api_key, n):
    conn = await sdk_connect(ws_api, ca_file, api_key)
    key = sdk_key(await conn.start_user_data_stream())
    if mode == "cold":
        return {"us": (time.perf_counter() - T0) * 1e6, "key_len": len(key)}
    for _ in range(WARMUP):
        sdk_key(await conn.keepalive_user_data_stream())
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        key = sdk_key(await conn.keepalive_user_data_stream())
        samples.append((time.perf_counter() - t) * 1e6)
        assert len(key) == 64, key
    return {"samples": samples}


def binding_main(mode, ws_api, ca_file, api_key, n):
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))
    import binance_uds

    with open(ca_file) as f:
        pem = f.read()
    config = binance_uds.Config(api_key=api_key, endpoint=ws_api, root_certificate_pem=pem)
    client = binance_uds.Client(config)
    key = client.listen_key_start()
    if mode == "cold":
        return {"us": (time.perf_counter() - T0) * 1e6, "key_len": len(key)}
    for _ in range(WARMUP):
        client.listen_key_keepalive()
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        key = client.listen_key_keepalive()
        samples.append((time.perf_counter() - t) * 1e6)
        assert len(key) == 64, key
    client.close()
    return {"samples": samples}


def main():
    impl, mode, ws_api, ca_file, api_key = sys.argv[1:6]
    n = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    if impl == "sdk":
        import asyncio

        out = asyncio.run(sdk_main(mode, ws_api, ca_file, api_key, n))
    else:
        out = binding_main(mode, ws_api, ca_file, api_key, n)
    import json

    print("RESULT " + json.dumps(out), flush=True)
    # The SDK leaves background tasks and threads; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
