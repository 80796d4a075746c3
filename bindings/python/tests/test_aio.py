"""binance_uds.aio against the local exchange (pytest-asyncio; how to run:
conftest.py)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from typing import Any, Dict, List

import pytest

from conftest import INSTALLED, PACKAGE_DIR, Exchange, assert_key_not_in, config

import binance_uds
from binance_uds import aio


def client_for(exchange: Exchange, **settings: Any) -> aio.Client:
    return aio.Client(config(exchange, **settings))


async def wait_until(what: str, check: Any, seconds: float = 10) -> None:
    """Waits (without blocking the loop) until ``check()`` is true."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.01)


def open_streams(exchange: Exchange) -> int:
    count: int = exchange.stats()["stream_connections_open"]
    return count


@pytest.mark.asyncio
async def test_listen_key_calls_are_awaited(exchange: Exchange) -> None:
    async with client_for(exchange) as client:
        key = await client.listen_key_start()
        assert len(key) == 64
        assert await client.listen_key_keepalive() == key
        # Several calls at once, on one connection.
        keys = await asyncio.gather(*(client.listen_key_keepalive() for _ in range(8)))
        assert keys == [key] * 8
        await client.listen_key_stop()
        with pytest.raises(binance_uds.ApiError) as info:
            await client.listen_key_keepalive()
        assert info.value.code == -1125
        assert_key_not_in(str(info.value), repr(info.value))
    requests = exchange.stats()["requests"]
    assert requests["userDataStream.ping"] == 10 and requests["userDataStream.stop"] == 1


@pytest.mark.asyncio
async def test_async_for_yields_events_in_order(exchange: Exchange) -> None:
    async with client_for(exchange) as client, client.user_stream() as stream:
        orders = exchange.emit("ORDER_TRADE_UPDATE", 3)
        exchange.emit("ACCOUNT_UPDATE")
        got: List[Dict[str, Any]] = []
        async for event in stream:
            got.append(dict(event))
            if len(got) == 4:
                break
        assert [e["e"] for e in got] == ["ORDER_TRADE_UPDATE"] * 3 + ["ACCOUNT_UPDATE"]
        assert [e["E"] for e in got[:3]] == list(range(orders["first_E"], orders["first_E"] + 3))
        assert got[0]["o"]["X"] == "NEW"
        # Event objects too, with what the library recorded about them.
        exchange.emit("TRADE_LITE")
        event = await asyncio.wait_for(stream.next_event(), 10)
        assert (event.type, event.is_library) == ("TRADE_LITE", False)
        assert event.data["e"] == "TRADE_LITE"
        assert stream.health().events_delivered == 5


@pytest.mark.asyncio
async def test_await_opens_a_stream_too(exchange: Exchange) -> None:
    async with client_for(exchange) as client:
        stream = await client.user_stream()
        assert stream.health().connected
        await stream.close()
        assert stream.closed
        with pytest.raises(binance_uds.StreamClosed):
            await stream.next_event()
        with pytest.raises(binance_uds.StreamClosed):
            stream.health()
        await stream.close()  # twice is fine
    await wait_until("the stream connection to close", lambda: open_streams(exchange) == 0)


@pytest.mark.asyncio
async def test_library_events_arrive_after_a_dropped_connection(exchange: Exchange) -> None:
    async with client_for(exchange) as client, client.user_stream() as stream:
        await wait_until("the stream to connect", lambda: open_streams(exchange) == 1)
        exchange.control({"cmd": "drop", "target": "stream"})
        seen: List[aio.Event] = []
        async for event in stream.events():
            seen.append(event)
            if event.type == "binance.stream_gap":
                break
        assert all(e.is_library for e in seen)
        gap = seen[-1].data
        assert gap["e"] == "binance.stream_gap" and gap["reason"] == "disconnected"
        assert stream.health().gaps == 1


@pytest.mark.asyncio
async def test_a_timeout_loses_no_event(exchange: Exchange) -> None:
    async with client_for(exchange) as client, client.user_stream() as stream:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(stream.next_event(), 0.2)
        exchange.emit("MARGIN_CALL")
        event = await asyncio.wait_for(stream.next_event(), 10)
        assert event.type == "MARGIN_CALL"


@pytest.mark.asyncio
async def test_close_from_another_task_ends_the_readers(exchange: Exchange) -> None:
    async with client_for(exchange) as client:
        stream = await client.user_stream()
        got: List[str] = []

        async def read() -> None:
            async for event in stream:
                got.append(event["e"])

        readers = [asyncio.create_task(read()) for _ in range(3)]
        exchange.emit("ACCOUNT_UPDATE")
        await wait_until("the event", lambda: got == ["ACCOUNT_UPDATE"])
        await stream.close()
        # Every reader's loop ends by itself, without an error.
        await asyncio.wait_for(asyncio.gather(*readers), 10)
        assert got == ["ACCOUNT_UPDATE"]
    await wait_until("the stream connection to close", lambda: open_streams(exchange) == 0)


@pytest.mark.asyncio
async def test_cancelling_the_reading_task_closes_its_stream(exchange: Exchange) -> None:
    opened: List[aio.UserStream] = []

    async def consume(client: aio.Client) -> None:
        async with client.user_stream() as stream:
            opened.append(stream)
            async for _ in stream:
                pass

    async with client_for(exchange) as client:
        task = asyncio.create_task(consume(client))
        await wait_until("the stream to open", lambda: bool(opened))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert opened[0].closed
        await wait_until("the stream connection to close", lambda: open_streams(exchange) == 0)
        # The client goes on working.
        assert len(await client.listen_key_start()) == 64


@pytest.mark.asyncio
async def test_cancelling_an_open_leaves_no_stream(exchange: Exchange) -> None:
    # The stream's listenKey request waits: the open is cancelled meanwhile.
    exchange.control({"cmd": "delay", "ms": 500, "count": 1, "method": "userDataStream.start"})
    async with client_for(exchange) as client:
        task = asyncio.create_task(client.user_stream().__aenter__())
        await wait_until("the start request", lambda: exchange.stats()["requests"].get("userDataStream.start") == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The open finishes in its thread, and what it opened is closed.
        await wait_until("a stream to open and close", lambda: exchange.stats()["stream_connections_total"] == 1)
        await wait_until("the stream connection to close", lambda: open_streams(exchange) == 0)


@pytest.mark.asyncio
async def test_closing_the_client_closes_its_streams(exchange: Exchange) -> None:
    client = client_for(exchange)
    stream = await client.user_stream()
    reader = asyncio.create_task(stream.next_event())
    await client.close()
    assert stream.closed
    with pytest.raises(binance_uds.StreamClosed):
        await asyncio.wait_for(reader, 10)
    with pytest.raises(binance_uds.ConnectionClosed):
        await client.listen_key_start()


@pytest.mark.asyncio
async def test_memory_is_bounded_when_nobody_reads(exchange: Exchange) -> None:
    """A stream nobody reads holds max_pending events in the loop and the
    library's queue capacity; the rest is dropped and reported as a gap."""
    async with client_for(exchange, event_queue_capacity=4) as client:
        async with client.user_stream(max_pending=2) as stream:
            exchange.emit("ORDER_TRADE_UPDATE", 50)

            def all_accounted() -> bool:
                h = stream.health()
                return h.events_delivered + h.events_dropped + h.events_queued >= 50

            await wait_until("all 50 events to be queued or dropped", all_accounted)
            dropped = stream.health().events_dropped
            assert dropped > 0
            # Every event is there or counted in a gap (one or more: room
            # may free up between drops).
            orders = gap_dropped = 0
            while orders + gap_dropped < 50:
                event = await asyncio.wait_for(stream.next_event(), 10)
                if event.type == "binance.stream_gap":
                    assert event.is_library and event.data["reason"] == "queue_overflow"
                    gap_dropped += event.data["dropped"]
                else:
                    assert event.type == "ORDER_TRADE_UPDATE"
                    orders += 1
            assert gap_dropped == dropped and orders == 50 - dropped
            # Reading again, the stream delivers what comes next.
            exchange.emit("ACCOUNT_UPDATE")
            event = await asyncio.wait_for(stream.next_event(), 10)
            assert event.type == "ACCOUNT_UPDATE"



@pytest.mark.asyncio
async def test_events_come_through_the_descriptor_in_order(exchange: Exchange) -> None:
    """On a loop with add_reader the stream is read on the loop through its
    descriptor: several readers wait on it at once, every event reaches
    exactly one of them, in order, and closing takes the descriptor off
    the loop."""
    async with client_for(exchange) as client, client.user_stream() as stream:
        loop = asyncio.get_running_loop()
        assert stream._fd is not None, "pollable form on a selector loop"
        got: List[int] = []
        done = asyncio.Event()

        async def read() -> None:
            while not done.is_set():
                event = await stream.next_event()
                got.append(event.time_ms)
                if len(got) == 200:
                    done.set()

        readers = [asyncio.create_task(read()) for _ in range(3)]
        orders = exchange.emit("ORDER_TRADE_UPDATE", 200)
        await asyncio.wait_for(done.wait(), 10)
        assert got == list(range(orders["first_E"], orders["first_E"] + 200))
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        # Arrived while nobody waits: there for the next read.
        exchange.emit("TRADE_LITE")
        await wait_until("the event to be taken", lambda: stream.health().events_delivered == 201)
        assert (await stream.next_event()).type == "TRADE_LITE"
        fd = stream._fd
    assert not loop.remove_reader(fd), "the closed stream's descriptor is off the loop"


@pytest.mark.asyncio
async def test_without_add_reader_the_callback_form_delivers(exchange: Exchange, monkeypatch: Any) -> None:
    """A loop without add_reader (Windows' ProactorEventLoop) gets the
    events through the callback form, in order, with the same API."""
    monkeypatch.setattr(aio, "_has_add_reader", lambda loop: False)
    async with client_for(exchange) as client, client.user_stream() as stream:
        assert stream._fd is None
        orders = exchange.emit("ORDER_TRADE_UPDATE", 20)
        got = [(await asyncio.wait_for(stream.next_event(), 10)).time_ms for _ in range(20)]
        assert got == list(range(orders["first_E"], orders["first_E"] + 20))
        reader = asyncio.create_task(stream.next_event())
        await asyncio.sleep(0)
        await stream.close()
        with pytest.raises(binance_uds.StreamClosed):
            await asyncio.wait_for(reader, 10)


@pytest.mark.asyncio
async def test_readme_asyncio_snippet_runs(exchange: Exchange) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (PACKAGE_DIR / "README.md").read_text(), re.DOTALL)
    snippet = next(b for b in blocks if "from binance_uds import aio" in b)
    env = dict(os.environ, PYTHONUNBUFFERED="1", **exchange.env())
    if not INSTALLED:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", snippet, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        assert first.decode().strip() == "connected; waiting for events"
        order = exchange.emit("ORDER_TRADE_UPDATE")
        lines = [(await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip()]
        exchange.control({"cmd": "drop", "target": "stream"})
        while not lines[-1].startswith("events may have been lost"):
            lines.append((await asyncio.wait_for(process.stdout.readline(), 30)).decode().strip())
    finally:
        process.kill()
        _, stderr = await process.communicate()
    assert lines[0] == f"ORDER_TRADE_UPDATE {order['first_E']} BTCUSDT NEW"
    assert lines[1].startswith("binance.stream_disconnected ")
    assert lines[-1].endswith("- resynchronise over REST")
    assert_key_not_in(stderr.decode(), *lines)
