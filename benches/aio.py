"""Event latency of the Python package as its users call it: the blocking
stream (``next_event`` on the main thread), ``binance_uds.aio`` reading the
stream's descriptor on the loop (``add_reader``, the default), and
``binance_uds.aio`` in callback form (what a loop without ``add_reader``
gets, and what aio did before), side by side in one run, in alternating
rounds against one local exchange. Prints p50/p99 in microseconds and the
differences; asserts nothing about timing.

    cargo build --release -p binance-uds -p local-exchange
    BINANCE_UDS_LIBRARY=$PWD/target/release/libbinance_uds.so \\
    BINANCE_UDS_EXCHANGE=$PWD/target/release/local-exchange \\
        python3 benches/aio.py [rounds] [events per round]

Latency: the exchange stamps ``send_ns`` (CLOCK_REALTIME) as it hands the
frame to its WebSocket writer; the reader takes ``time.time_ns()`` as the
event is in its hands. Events are paced (one every 2 ms), so each is
measured alone, not behind a queue.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bindings" / "python" / "tests"))
sys.path.insert(0, str(ROOT / "bindings" / "python"))

try:
    import pytest  # noqa: F401  (conftest uses its fixture decorator only)
except ImportError:  # a bench machine need not have it
    import types

    sys.modules["pytest"] = types.SimpleNamespace(fixture=lambda f: f)  # type: ignore[assignment]

from conftest import API_KEY, Exchange, config  # noqa: E402

import binance_uds  # noqa: E402
from binance_uds import aio  # noqa: E402

RAW = '{"e":"ORDER_TRADE_UPDATE","E":{E},"send_ns":{send_ns},"o":{"s":"BTCUSDT","X":"NEW"}}'
GAP_S = 0.002


def paced_emitter(ex: Exchange, n: int) -> threading.Thread:
    """Emits `n` events, one every GAP_S, over one control connection."""

    def run() -> None:
        with socket.create_connection(ex.control_addr, timeout=60) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            answers = s.makefile("rb")
            line = (json.dumps({"cmd": "emit", "api_key": API_KEY, "count": 1, "raw": RAW}) + "\n").encode()
            for _ in range(n):
                s.sendall(line)
                answer = answers.readline()
                assert b'"delivered":1' in answer, answer
                time.sleep(GAP_S)

    t = threading.Thread(target=run)
    t.start()
    return t


def latency_us(text: str, now_ns: int) -> float:
    return (now_ns - int(json.loads(text)["send_ns"])) / 1000


def blocking_round(ex: Exchange, n: int) -> List[float]:
    with binance_uds.Client(config(ex)) as client, client.user_stream() as stream:
        t = paced_emitter(ex, n)
        lat: List[float] = []
        while len(lat) < n:
            ev = stream.next_event(timeout=5)
            now = time.time_ns()
            assert ev is not None, "an event within 5 s"
            if not ev.is_library:
                lat.append(latency_us(ev.json, now))
        t.join()
    return lat


def aio_round(ex: Exchange, n: int, pollable: bool) -> List[float]:
    real = aio._has_add_reader
    if not pollable:
        aio._has_add_reader = lambda loop: False

    async def main() -> List[float]:
        async with aio.Client(config(ex)) as client, client.user_stream() as stream:
            assert (stream._fd is not None) == pollable
            t = paced_emitter(ex, n)
            lat: List[float] = []
            while len(lat) < n:
                # No wait_for: it costs a task per call; the emitter's
                # events come (a lost one hangs the bench, not a result).
                ev = await stream.next_event()
                now = time.time_ns()
                if not ev.is_library:
                    lat.append(latency_us(ev.json, now))
            await asyncio.get_running_loop().run_in_executor(None, t.join)
        return lat

    try:
        return asyncio.run(main())
    finally:
        aio._has_add_reader = real


def pct(xs: List[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    ways: Dict[str, Callable[[Exchange, int], List[float]]] = {
        "blocking next_event": blocking_round,
        "aio, descriptor (add_reader)": lambda ex, n: aio_round(ex, n, True),
        "aio, callback form": lambda ex, n: aio_round(ex, n, False),
    }
    got: Dict[str, List[float]] = {name: [] for name in ways}
    with tempfile.TemporaryDirectory() as tmp:
        ex = Exchange(Path(tmp))
        try:
            for way in ways.values():  # warm-up, not counted
                way(ex, 50)
            for r in range(rounds):
                for name, way in ways.items():
                    got[name].extend(way(ex, n))
                print(f"round {r + 1}/{rounds} done", file=sys.stderr)
        finally:
            ex.stop()
    base = got["blocking next_event"]
    b50, b99 = pct(base, 0.5), pct(base, 0.99)
    print(f"Python event latency, {rounds} alternating rounds of {n} paced events each (µs):")
    for name, lat in got.items():
        p50, p99 = pct(lat, 0.5), pct(lat, 0.99)
        print(
            f"  {name:30} p50 {p50:8.1f}  p99 {p99:8.1f}"
            f"   vs blocking: p50 {p50 - b50:+7.1f}, p99 {p99 / b99:5.2f}x"
        )


if __name__ == "__main__":
    main()
