"""Benchmark peers in Python: the official SDK against the library's binding.

    python peers/python_peer.py sdk|binding cold WS_API CA_FILE API_KEY
    python peers/python_peer.py sdk|binding warm WS_API CA_FILE API_KEY N
    python peers/python_peer.py sdk|binding|aio events WS_API STREAM CA_FILE API_KEY N WARMUP

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
  warm: `samples`, each keepalive call after 300 unmeasured ones;
  events: `samples`, the latency of each of N user-stream events after
        WARMUP unmeasured ones: the wall clock (CLOCK_REALTIME) as the event
        is in the program's hands minus the exchange's send time, which the
        benchmark's events carry as their client order id `o.c` (a field the
        SDK's model keeps). The program prints `READY` once its stream is
        open, and the benchmark then emits the events. `sdk` subscribes the
        key the way its README shows (`websocket_streams.create_connection`,
        `user_data(listen_key)`, `on("message", ...)`: the callback gets the
        SDK's model); `binding` reads with the blocking `next_event`; `aio`
        awaits `binance_uds.aio`'s `next_event` on an asyncio loop.
"""

import sys
import time

T0 = time.perf_counter()

import json  # noqa: E402
import os  # noqa: E402
import ssl  # noqa: E402

WARMUP = 300
WAIT_S = 60


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


def ready():
    print("READY", flush=True)


def sent_us(o_c):
    return int(o_c) / 1000


async def sdk_events(ws_api, stream, ca_file, api_key, n, warmup):
    import asyncio

    from binance_common.configuration import ConfigurationWebSocketAPI, ConfigurationWebSocketStreams
    from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
        DerivativesTradingUsdsFutures,
    )

    ctx = sdk_context(ca_file)
    client = DerivativesTradingUsdsFutures(
        config_ws_api=ConfigurationWebSocketAPI(
            api_key=api_key, api_secret="unused", stream_url=ws_api, https_agent=ctx
        ),
        # The SDK's streams base: it adds /private/stream (and /market, /public).
        config_ws_streams=ConfigurationWebSocketStreams(
            stream_url=stream.rsplit("/private", 1)[0], https_agent=ctx
        ),
    )
    api = await client.websocket_api.create_connection()
    key = sdk_key(await api.start_user_data_stream())
    streams = await client.websocket_streams.create_connection()
    handle = await streams.user_data(key)
    lat = []
    done = asyncio.get_running_loop().create_future()

    def on_message(msg):
        now = time.time_ns() / 1000
        event = getattr(msg, "actual_instance", None) or msg
        lat.append(now - sent_us(event.o.c))
        if len(lat) == n + warmup and not done.done():
            done.set_result(None)

    handle.on("message", on_message)
    ready()
    await asyncio.wait_for(done, WAIT_S)
    return {"samples": lat[warmup:]}


def binding_module():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "bindings", "python"))
    import binance_uds

    return binance_uds


def binding_config(ws_api, ca_file, api_key, stream=None):
    binance_uds = binding_module()
    with open(ca_file) as f:
        pem = f.read()
    extra = {"stream_endpoint": stream} if stream else {}
    return binance_uds.Config(api_key=api_key, endpoint=ws_api, root_certificate_pem=pem, **extra)


def event_latency(ev, now_ns):
    """The event's latency in µs, None for a library event (none expected)."""
    if ev.is_library:
        return None
    return now_ns / 1000 - sent_us(json.loads(ev.json)["o"]["c"])


def binding_events(ws_api, stream, ca_file, api_key, n, warmup):
    binance_uds = binding_module()
    config = binding_config(ws_api, ca_file, api_key, stream)
    lat = []
    with binance_uds.Client(config) as client, client.user_stream() as st:
        ready()
        while len(lat) < n + warmup:
            ev = st.next_event(timeout=WAIT_S)
            now = time.time_ns()
            if ev is None:
                raise SystemExit(f"no event in {WAIT_S} s after {len(lat)}")
            got = event_latency(ev, now)
            if got is not None:
                lat.append(got)
    return {"samples": lat[warmup:]}


async def aio_events(ws_api, stream, ca_file, api_key, n, warmup):
    import asyncio

    binding_module()
    from binance_uds import aio

    config = binding_config(ws_api, ca_file, api_key, stream)
    lat = []

    async def read(st):
        while len(lat) < n + warmup:
            ev = await st.next_event()
            now = time.time_ns()
            got = event_latency(ev, now)
            if got is not None:
                lat.append(got)

    async with aio.Client(config) as client, client.user_stream() as st:
        ready()
        # One deadline for them all, as the SDK's side has: wait_for on each
        # next_event would cost a task per event, which the SDK's callback
        # does not pay.
        await asyncio.wait_for(read(st), WAIT_S)
    return {"samples": lat[warmup:]}


def binding_main(mode, ws_api, ca_file, api_key, n):
    binance_uds = binding_module()
    client = binance_uds.Client(binding_config(ws_api, ca_file, api_key))
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
    # asyncio is imported only where it is used: the binding's cold row
    # times a blocking program's imports.
    impl, mode = sys.argv[1:3]
    if mode == "events":
        ws_api, stream, ca_file, api_key = sys.argv[3:7]
        n, warmup = int(sys.argv[7]), int(sys.argv[8])
        if impl in ("sdk", "aio"):
            import asyncio

        if impl == "sdk":
            out = asyncio.run(sdk_events(ws_api, stream, ca_file, api_key, n, warmup))
        elif impl == "aio":
            out = asyncio.run(aio_events(ws_api, stream, ca_file, api_key, n, warmup))
        else:
            out = binding_events(ws_api, stream, ca_file, api_key, n, warmup)
    else:
        ws_api, ca_file, api_key = sys.argv[3:6]
        n = int(sys.argv[6]) if len(sys.argv) > 6 else 0
        if impl == "sdk":
            import asyncio

            out = asyncio.run(sdk_main(mode, ws_api, ca_file, api_key, n))
        else:
            out = binding_main(mode, ws_api, ca_file, api_key, n)
    print("RESULT " + json.dumps(out), flush=True)
    # The SDK leaves background tasks and threads; do not wait for them.
    os._exit(0)


if __name__ == "__main__":
    main()
