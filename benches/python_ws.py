"""Row 7 of the benchmark: a Python user's listenKey by hand with the
`websockets` package (asyncio client), against the local exchange.

    python3 benches/python_ws.py cold URL CA_FILE API_KEY
    python3 benches/python_ws.py warm URL CA_FILE API_KEY N

Prints one line `RESULT {json}`, times in µs:
  cold: `us` from before the event loop and the SSL context are made to
        after the connection is closed (the raw floor's span), `import_us`
        for `import websockets`;
  warm: `p50`/`p99`/`mean` of N userDataStream.ping calls on one open
        connection (send, receive, json.loads, read the key).
"""

import asyncio
import json
import ssl
import sys
import time

t_import = time.perf_counter()
from websockets.asyncio.client import connect  # noqa: E402

import_us = (time.perf_counter() - t_import) * 1e6


def context(ca_file):
    # System roots plus the exchange's CA, as the library and the floor do.
    ctx = ssl.create_default_context()
    ctx.load_verify_locations(cafile=ca_file)
    return ctx


def request(i, method, api_key):
    return json.dumps({"id": i, "method": method, "params": {"apiKey": api_key}})


async def call(ws, i, method, api_key):
    await ws.send(request(i, method, api_key))
    answer = json.loads(await ws.recv())
    return answer["result"]["listenKey"]


async def cold(url, ca_file, api_key):
    async with connect(url, ssl=context(ca_file)) as ws:
        return await call(ws, 1, "userDataStream.start", api_key)


async def warm(url, ca_file, api_key, n):
    samples = []
    async with connect(url, ssl=context(ca_file)) as ws:
        await call(ws, 0, "userDataStream.start", api_key)
        for i in range(1, n + 1):
            t0 = time.perf_counter()
            await call(ws, i, "userDataStream.ping", api_key)
            samples.append((time.perf_counter() - t0) * 1e6)
    return samples


def pct(sorted_values, p):
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def main():
    mode, url, ca_file, api_key = sys.argv[1:5]
    if mode == "cold":
        t0 = time.perf_counter()
        key = asyncio.run(cold(url, ca_file, api_key))
        us = (time.perf_counter() - t0) * 1e6
        assert len(key) == 64, key
        out = {"us": us, "import_us": import_us}
    else:
        samples = sorted(asyncio.run(warm(url, ca_file, api_key, int(sys.argv[5]))))
        out = {
            "p50": pct(samples, 50),
            "p99": pct(samples, 99),
            "mean": sum(samples) / len(samples),
            "n": len(samples),
        }
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
