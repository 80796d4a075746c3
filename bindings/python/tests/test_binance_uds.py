"""binance_uds (blocking) against the local exchange (a fresh one per
test). How to run them, and against what: conftest.py."""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import pickle
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest

from conftest import API_KEY, INSTALLED, PACKAGE_DIR, REPO, Exchange, assert_key_not_in, config, crate_version, now_ms

import binance_uds


# ---------------------------------------------------------------------------


def test_version_matches_cargo_toml() -> None:
    assert binance_uds.version() == crate_version()
    assert binance_uds.__version__ == crate_version()
    assert binance_uds.status_str(binance_uds.TIMEOUT) == "BINANCE_TIMEOUT"
    assert binance_uds.status_str(999) == "BINANCE_UNKNOWN_STATUS"


def test_health_structure_matches_the_header() -> None:
    header = (REPO / "include" / "binance_uds.h").read_text()
    body = re.search(r"typedef struct \{(.*?)\} binance_stream_health;", header, re.DOTALL)
    assert body is not None
    fields = re.findall(r"^\s*(u?int32_t|int64_t|uint64_t) (\w+);", body.group(1), re.MULTILINE)
    c_types = {"int32_t": 4, "uint32_t": 4, "int64_t": 8, "uint64_t": 8}
    structure = binance_uds._Health._fields_
    assert [name for _, name in fields] == [f[0] for f in structure]
    assert [c_types[t] for t, _ in fields] == [ctypes.sizeof(f[1]) for f in structure]
    assert [f.name for f in dataclasses.fields(binance_uds.StreamHealth)] == [name for _, name in fields][1:]


@pytest.mark.skipif(not INSTALLED, reason="tests an installed wheel (scripts/test.sh)")
def test_the_installed_package_carries_its_library() -> None:
    package = Path(binance_uds.__file__).resolve().parent
    assert REPO.resolve() not in package.parents, f"imported from the source tree: {package}"
    assert "BINANCE_UDS_LIBRARY" not in os.environ
    assert Path(binance_uds._library_path()).resolve() == package / binance_uds._library.file_name()
    assert (package / "py.typed").exists()
    assert binance_uds.version() == crate_version()
    # The metadata, as PyPI would show it.
    from importlib.metadata import metadata

    meta = metadata("binance-uds")
    assert meta["Name"] == "binance-uds" and meta["Version"] == crate_version()
    assert meta["License-Expression"] == "MIT OR Apache-2.0"
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta["Description-Content-Type"] == "text/markdown"
    assert meta.get_payload().strip() == (PACKAGE_DIR / "README.md").read_text().strip()


def test_library_override_is_used_first(tmp_path: Path) -> None:
    """BINANCE_UDS_LIBRARY names the library even when one is bundled."""
    code = "import binance_uds; print(binance_uds._library_path())"
    env = dict(os.environ, BINANCE_UDS_LIBRARY=str(tmp_path / "libother.so"))
    if not INSTALLED:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd="/")
    assert out.stdout.strip() == str(tmp_path / "libother.so")


def test_constants_and_functions_match_the_header() -> None:
    """The module's copies of the header's constants, and its function
    table, are the header's: a status, URL or function added or changed
    there fails here until the binding follows."""
    header = (REPO / "include" / "binance_uds.h").read_text()
    defines = dict(re.findall(r"^#define BINANCE_(\w+) (\S+)$", header, re.MULTILINE))
    for name, value in defines.items():
        if name.startswith(("VERSION_", "UDS_")):
            continue
        assert getattr(binance_uds, name) == json.loads(value), name
    prototypes = set(re.findall(r"^[a-z][\w ]*?[ *](binance_\w+)\(", header, re.MULTILINE))
    assert prototypes == set(binance_uds._SIGNATURES), "binance_uds._SIGNATURES differs from the header's functions"
    # Every status has its exception class, named after it.
    for name, value in defines.items():
        if name in ("OK",) or name.startswith(("VERSION_", "STREAM_FORM_", "PRODUCT_", "UDS_")):
            continue
        if isinstance(json.loads(value), int):
            cls = binance_uds._ERRORS[json.loads(value)]
            assert cls.__name__.lower() == name.replace("_", "").lower(), (name, cls)


def test_listen_key_start_keepalive_stop(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client:
        assert client.rate_limits() == []
        key = client.listen_key_start()
        assert len(key) == 64
        assert client.listen_key_keepalive() == key
        limits = client.rate_limits()
        assert limits[0]["rateLimitType"] == "REQUEST_WEIGHT"
        assert limits[0]["count"] >= 2
        client.listen_key_stop()
    requests = exchange.stats()["requests"]
    for method in ("userDataStream.start", "userDataStream.ping", "userDataStream.stop"):
        assert requests[method] == 1


def test_api_error_after_stop(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client:
        client.listen_key_start()
        client.listen_key_stop()
        with pytest.raises(binance_uds.ApiError) as info:
            client.listen_key_keepalive()
    e = info.value
    assert isinstance(e, binance_uds.BinanceError)
    assert (e.status, e.status_name, e.code, e.http_status) == (binance_uds.API_ERROR, "BINANCE_API_ERROR", -1125, 400)
    assert "-1125" in str(e) and "BINANCE_API_ERROR" in str(e)
    assert_key_not_in(str(e), repr(e), e.message)
    # Exceptions survive pickling (e.g. across multiprocessing).
    copy = pickle.loads(pickle.dumps(e))
    assert type(copy) is binance_uds.ApiError and copy.code == -1125 and copy.message == e.message


def test_injected_api_error(exchange: Exchange) -> None:
    exchange.control({"cmd": "fail", "status": 400, "code": -1125, "msg": "x"})
    with binance_uds.Client(config(exchange)) as client:
        with pytest.raises(binance_uds.ApiError) as info:
            client.listen_key_start()
        assert info.value.code == -1125
        assert len(client.listen_key_start()) == 64  # the fault was used up


def test_invalid_argument_for_bad_settings() -> None:
    with pytest.raises(binance_uds.InvalidArgument) as info:
        binance_uds.Config(endpoint="http://example.com/ws-fapi/v1")
    assert info.value.status == binance_uds.INVALID_ARGUMENT
    assert "url" in info.value.message
    with pytest.raises(binance_uds.InvalidArgument, match="url"):
        binance_uds.Config().stream_endpoint("not a url")
    with pytest.raises(binance_uds.InvalidArgument, match="connect_ms"):
        binance_uds.Config(timeouts_ms=(0, 1000))
    with pytest.raises(binance_uds.InvalidArgument, match="request_ms"):
        binance_uds.Config().timeouts_ms(1000, -1)
    with pytest.raises(binance_uds.InvalidArgument, match="api_key"):
        binance_uds.Config(api_key="")
    with pytest.raises(binance_uds.InvalidArgument, match="api_key"):
        binance_uds.Config(api_key=API_KEY + "\0more")
    with pytest.raises(binance_uds.InvalidArgument, match="pem"):
        binance_uds.Config(root_certificate_pem="not a certificate")
    with pytest.raises(binance_uds.InvalidArgument, match="max_ms"):
        binance_uds.Config(reconnect_backoff_ms=(100, 10))
    with pytest.raises(binance_uds.InvalidArgument, match="capacity"):
        binance_uds.Config(event_queue_capacity=0)
    with pytest.raises(TypeError):
        binance_uds.Config(endpoint=b"wss://example.com/ws")  # type: ignore[arg-type]
    # A client needs an API key.
    with pytest.raises(binance_uds.InvalidArgument, match="API key"):
        binance_uds.Client(binance_uds.Config())
    # The builder and keyword arguments are the same thing.
    cfg = (
        binance_uds.Config()
        .api_key(API_KEY)
        .endpoint(binance_uds.WS_API_URL_TESTNET)
        .stream_endpoint(binance_uds.STREAM_URL_TESTNET)
        .timeouts_ms(2000, 3000)
        .keepalive_interval_ms(20 * 60 * 1000)
        .proxy("http://127.0.0.1:3128")
        .event_queue_capacity(16)
        .silence_timeout_ms(60000)
        .stream_rotation_ms(3600000)
        .reconnect_backoff_ms(100, 5000)
    )
    assert_key_not_in(repr(cfg))


def test_timeout(exchange: Exchange) -> None:
    exchange.control({"cmd": "no_answer", "count": 1})
    with binance_uds.Client(config(exchange, timeouts_ms=(5000, 300))) as client:
        started = time.monotonic()
        with pytest.raises(binance_uds.Timeout) as info:
            client.listen_key_start()
        assert time.monotonic() - started < 5
        assert info.value.status == binance_uds.TIMEOUT
        assert len(client.listen_key_start()) == 64


def test_rate_limited(exchange: Exchange) -> None:
    exchange.control({"cmd": "fail", "status": 418, "code": -1003, "msg": "IP banned", "retry_after_ms": 60000})
    before = now_ms()
    with binance_uds.Client(config(exchange)) as client:
        with pytest.raises(binance_uds.RateLimited) as info:
            client.listen_key_start()
    e = info.value
    assert e.status == binance_uds.RATE_LIMITED
    assert e.http_status == 418 and e.code == -1003
    assert before + 50000 <= e.retry_after_ms <= now_ms() + 70000


def test_user_stream_yields_emitted_events_as_dicts_in_order(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client, client.user_stream() as stream:
        orders = exchange.emit("ORDER_TRADE_UPDATE", 3)
        account = exchange.emit("ACCOUNT_UPDATE", 1)
        later = exchange.emit("SOMETHING_NEW_2027", 1)
        got: List[Dict[str, Any]] = []
        for event in stream:
            got.append(event)
            if len(got) == 5:
                break
    assert [e["e"] for e in got] == ["ORDER_TRADE_UPDATE"] * 3 + ["ACCOUNT_UPDATE", "SOMETHING_NEW_2027"]
    times = [e["E"] for e in got]
    assert times == list(range(orders["first_E"], orders["first_E"] + 3)) + [account["first_E"], later["first_E"]]
    assert got[0]["o"]["s"] == "BTCUSDT" and got[0]["o"]["X"] == "NEW"


def test_an_open_that_does_not_wait_says_when_it_is_live(exchange: Exchange) -> None:
    cfg = config(exchange, open_waits_for_subscription=False)
    with binance_uds.Client(cfg) as client, client.user_stream() as stream:
        live = stream.next_event(timeout=10)
        assert live is not None and live.is_library and live.type == "binance.stream_subscribed"
        exchange.emit("TRADE_LITE")
        event = stream.next_event(timeout=10)
        assert event is not None and event.type == "TRADE_LITE"


def test_next_event_gives_event_objects(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client, client.user_stream() as stream:
        assert stream.next_event(timeout=0) is None
        started = time.monotonic()
        assert stream.next_event(timeout=0.3) is None
        assert 0.25 <= time.monotonic() - started < 3
        emitted = exchange.emit("ORDER_TRADE_UPDATE")
        event = stream.next_event(timeout=10)
        assert event is not None
        assert event.type == "ORDER_TRADE_UPDATE"
        assert event.time_ms == emitted["first_E"]
        assert not event.is_library
        assert event.get("/o/s") == "BTCUSDT"
        assert event.get("/o/X") == "NEW"
        assert event.get("/o/i") == "8886774"
        assert json.loads(event.get("/o"))["X"] == "NEW"
        assert event.data["o"]["X"] == "NEW"
        assert json.loads(event.json) == event.data
        with pytest.raises(binance_uds.InvalidArgument):
            event.get("/no/such/field")
        with pytest.raises(binance_uds.InvalidArgument, match="json_pointer"):
            event.get("o/X")
        assert "ORDER_TRADE_UPDATE" in repr(event)
        # events() gives Event objects, here until 0.2 s of quiet.
        exchange.emit("TRADE_LITE", 2)
        assert [e.type for e in stream.events(idle_timeout=0.2)] == ["TRADE_LITE", "TRADE_LITE"]


def test_library_events_arrive_as_dicts_too(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client, client.user_stream() as stream:
        deadline = time.monotonic() + 5
        while exchange.stats()["stream_connections_open"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        exchange.control({"cmd": "drop", "target": "stream"})
        seen: List[str] = []
        for event in stream:
            seen.append(event["e"])
            if event["e"] == "binance.stream_gap":
                assert "reason" in event
                break
        assert all(kind.startswith("binance.") for kind in seen)
        assert stream.health().gaps == 1


def test_a_server_event_is_never_a_library_event(exchange: Exchange) -> None:
    """Whether the library made an event is what the library recorded, not
    what its type says: a server can send any "e"."""
    forged = '{"e":"binance.stream_gap","E":{E},"reason":"forged","from_ms":0,"to_ms":0}'
    with binance_uds.Client(config(exchange)) as client, client.user_stream() as stream:
        exchange.control({"cmd": "emit", "api_key": API_KEY, "raw": forged})
        event = stream.next_event(timeout=10)
        assert event is not None
        assert event.type == "binance.stream_gap" and event.data["reason"] == "forged"
        assert not event.is_library


def test_stream_closed_after_close(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client:
        with client.user_stream() as stream:
            assert not stream.closed
        assert stream.closed
        with pytest.raises(binance_uds.StreamClosed) as info:
            stream.next_event(timeout=0)
        assert info.value.status == binance_uds.STREAM_CLOSED
        with pytest.raises(binance_uds.StreamClosed):
            stream.health()
        assert list(stream) == []
        stream.close()  # twice is fine
        # Another stream on the same client still works.
        with client.user_stream() as again:
            exchange.emit("MARGIN_CALL")
            event = again.next_event(timeout=10)
            assert event is not None and event.type == "MARGIN_CALL"


def test_close_from_another_thread_ends_iteration(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange)) as client:
        stream = client.user_stream()
        got: List[Dict[str, Any]] = []
        reader = threading.Thread(target=lambda: got.extend(stream))
        reader.start()
        exchange.emit("ACCOUNT_UPDATE")
        deadline = time.monotonic() + 10
        while not got:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert reader.is_alive()
        stream.close()
        reader.join(timeout=2)
        assert not reader.is_alive()
        assert [e["e"] for e in got] == ["ACCOUNT_UPDATE"]


def test_client_close_closes_its_streams(exchange: Exchange) -> None:
    client = binance_uds.Client(config(exchange))
    stream = client.user_stream()
    client.close()
    assert stream.closed
    with pytest.raises(binance_uds.StreamClosed):
        stream.next_event(timeout=0)
    with pytest.raises(binance_uds.ConnectionClosed):
        client.listen_key_start()
    assert "closed" in repr(client)


def test_health_fields(exchange: Exchange) -> None:
    cfg = config(exchange, keepalive_interval_ms=200)
    with binance_uds.Client(cfg) as client, client.user_stream() as stream:
        h = stream.health()
        assert h.connected is True
        assert (h.reconnects, h.events_delivered, h.events_dropped, h.gaps, h.key_renewals) == (0, 0, 0, 0, 0)
        assert h.last_event_ms == 0
        assert h.key_age_ms >= 0
        exchange.emit("ORDER_TRADE_UPDATE", 3)
        deadline = time.monotonic() + 10
        while stream.health().events_queued < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert [e.type for e in stream.events(idle_timeout=0.2)] == ["ORDER_TRADE_UPDATE"] * 3
        while stream.health().last_keepalive_status != binance_uds.OK:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        h = stream.health()
        assert h.events_delivered == 3 and h.events_queued == 0 and h.events_dropped == 0
        assert now_ms() - 10000 < h.last_event_ms <= now_ms()
        assert now_ms() - 10000 < h.last_keepalive_ms <= now_ms()
        assert h.key_age_ms > 0


# ---------------------------------------------------------------------------
# The README's snippets run as written.


def python_blocks(path: Path) -> List[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), re.DOTALL)


def test_readme_stream_snippet_runs(exchange: Exchange) -> None:
    snippet = python_blocks(PACKAGE_DIR / "README.md")[0]
    env = dict(os.environ, PYTHONUNBUFFERED="1", **exchange.env())
    if not INSTALLED:
        env["PYTHONPATH"] = str(PACKAGE_DIR)
    process = subprocess.Popen(
        [sys.executable, "-c", snippet], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 10
        while not any(c["keys"] for c in exchange.control({"cmd": "stream_connections"})["connections"]):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        order = exchange.emit("ORDER_TRADE_UPDATE")
        account = exchange.emit("ACCOUNT_UPDATE")
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(3)]
    finally:
        process.kill()
        _, stderr = process.communicate()
    assert lines == [
        "connected; waiting for events",
        f"ORDER_TRADE_UPDATE {order['first_E']} BTCUSDT NEW",
        f"ACCOUNT_UPDATE {account['first_E']}",
    ], stderr
    assert_key_not_in(stderr, *lines)


def test_readme_error_snippet_runs(exchange: Exchange) -> None:
    snippet = python_blocks(PACKAGE_DIR / "README.md")[1]
    with binance_uds.Client(config(exchange)) as client:
        namespace: Dict[str, Any] = {"binance_uds": binance_uds, "client": client}
        exec(snippet, namespace)  # no key yet: keepalive fails with -1125, start gets one
        assert len(namespace["key"]) == 64
    requests = exchange.stats()["requests"]
    assert requests["userDataStream.ping"] == 1 and requests["userDataStream.start"] == 1


def test_docs_show_the_readme_snippets() -> None:
    """docs/bindings.md (or README.md, once merged) shows the snippets the
    tests above run, unchanged."""
    ours = python_blocks(PACKAGE_DIR / "README.md")
    for doc in (REPO / "docs" / "bindings.md", REPO / "README.md"):
        if doc.exists():
            for block in python_blocks(doc):
                if "binance_uds" in block:
                    assert block in ours, f"{doc}: a Python snippet differs from bindings/python/README.md"


@pytest.mark.parametrize("product", ["usdm", "coinm", "pm"])
def test_every_product_streams_its_events(exchange: Exchange, product: binance_uds.Product) -> None:
    """Config(product=...) points the listenKey and the stream at the
    product's routes (COIN-M's WebSocket API, PM's REST listenKey)."""
    routes: Dict[str, Dict[str, Any]] = {
        "usdm": {},
        "coinm": {"endpoint": exchange.coinm_ws_api, "stream_endpoint": exchange.coinm_stream},
        "pm": {"stream_endpoint": exchange.pm_stream, "rest_endpoint": exchange.rest},
    }
    cfg = config(exchange, product=product, **routes[product])
    with binance_uds.Client(cfg) as client, client.user_stream() as stream:
        sent = exchange.control(
            {"cmd": "emit", "api_key": API_KEY, "product": product, "type": "ORDER_TRADE_UPDATE", "count": 2}
        )
        assert sent["delivered"] == 2
        got = [next(iter(stream)) for _ in range(2)]
    assert [e["E"] for e in got] == [sent["first_E"], sent["first_E"] + 1]
    start = {"usdm": "userDataStream.start", "coinm": "userDataStream.start", "pm": "POST /papi/v1/listenKey"}
    assert exchange.stats()["requests"][start[product]] >= 1


def test_an_unknown_product_is_refused() -> None:
    with pytest.raises(binance_uds.InvalidArgument, match="product"):
        binance_uds.Config(product="spot")  # type: ignore[arg-type]
