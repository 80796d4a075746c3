"""Signed REST from Python: the signing settings, Client.account_snapshot()
(blocking and asyncio) and account_resync's binance.account_snapshot events,
against the local exchange's accounts (a fresh exchange per test, with
API_KEY registered under SECRET_KEY: see conftest.py)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from conftest import API_KEY, SECRET_KEY, Exchange, assert_key_not_in, config

import binance_uds
from binance_uds import aio


def signed(ex: Exchange, **settings: Any) -> binance_uds.Config:
    """A config for the exchange that signs with API_KEY's secret."""
    base: Dict[str, Any] = {"secret_key": SECRET_KEY, "rest_endpoint": ex.rest}
    base.update(settings)
    return config(ex, **base)


def trade(ex: Exchange, price: str = "60000") -> int:
    """Some account activity: a deposit, a partly filled order, a filled
    one and a cancelled one. Returns the id of the order left open."""
    k = API_KEY
    ex.control({"cmd": "deposit", "api_key": k, "asset": "USDT", "amount": "1000"})
    a = ex.control(
        {"cmd": "order_place", "api_key": k, "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.010", "price": price}
    )["order_id"]
    b = ex.control(
        {"cmd": "order_place", "api_key": k, "symbol": "BTCUSDT", "side": "BUY", "quantity": "0.002", "price": price}
    )["order_id"]
    c = ex.control(
        {"cmd": "order_place", "api_key": k, "symbol": "ETHUSDT", "side": "SELL", "quantity": "0.5", "price": "3000"}
    )["order_id"]
    ex.control({"cmd": "order_fill", "api_key": k, "order_id": a, "quantity": "0.004"})
    ex.control({"cmd": "order_fill", "api_key": k, "order_id": b})
    ex.control({"cmd": "order_cancel", "api_key": k, "order_id": c})
    order_id: int = a
    return order_id


def assert_is_the_exchanges_state(ex: Exchange, snapshot: Any) -> None:
    """The snapshot's parts are the exchange's own view of the account."""
    truth = ex.control({"cmd": "snapshot", "api_key": API_KEY})
    assert snapshot["e"] == "binance.account_snapshot"
    assert snapshot["balances"] == truth["account"]["assets"]
    assert snapshot["positions"] == truth["positions"]
    assert snapshot["open_orders"] == truth["open_orders"]
    assert snapshot["open_algo_orders"] == truth["open_algo_orders"]
    assert snapshot["account"]["totalWalletBalance"] == truth["account"]["totalWalletBalance"]
    assert 0 < snapshot["server_time_ms"] <= snapshot["E"]


def ed25519_pem(tmp_path: Path) -> Optional[str]:
    """A new Ed25519 private key (PKCS#8 PEM), made by the openssl command."""
    if shutil.which("openssl") is None:
        return None
    key = tmp_path / "ed25519.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    return key.read_text()


def test_signing_settings_are_checked_and_never_shown(tmp_path: Path) -> None:
    with pytest.raises(binance_uds.InvalidArgument, match="secret"):
        binance_uds.Config(secret_key="")
    with pytest.raises(binance_uds.InvalidArgument, match="secret") as info:
        binance_uds.Config().secret_key(SECRET_KEY + "\0more")
    assert_key_not_in(str(info.value), repr(info.value))
    with pytest.raises(binance_uds.InvalidArgument, match="secret") as info:
        binance_uds.Config(secret_key=SECRET_KEY + " with spaces\u00e9")
    assert_key_not_in(str(info.value), repr(info.value))
    with pytest.raises(binance_uds.InvalidArgument, match="pem"):
        binance_uds.Config(private_key_pem="not a key")
    # A PEM block that is not an Ed25519 private key: refused, its
    # contents not shown.
    fake = "-----BEGIN PRIVATE KEY-----\nTESTPEMBODYabcdefghijklmnop\n-----END PRIVATE KEY-----\n"
    with pytest.raises(binance_uds.InvalidArgument, match="pem") as info:
        binance_uds.Config().private_key_pem(fake)
    assert "TESTPEMBODY" not in str(info.value) and "TESTPEMBODY" not in repr(info.value)
    with pytest.raises(binance_uds.InvalidArgument, match="url"):
        binance_uds.Config(rest_endpoint="ftp://example.com")
    with pytest.raises(binance_uds.InvalidArgument, match="url"):
        binance_uds.Config().rest_endpoint("http://example.com")  # plain HTTP only to loopback
    with pytest.raises(binance_uds.InvalidArgument, match="ms"):
        binance_uds.Config(recv_window_ms=0)
    with pytest.raises(binance_uds.InvalidArgument, match="ms"):
        binance_uds.Config().recv_window_ms(60001)
    with pytest.raises(TypeError):
        binance_uds.Config(secret_key=b"bytes")  # type: ignore[arg-type]
    with pytest.raises(binance_uds.InvalidArgument, match="n"):
        binance_uds.Config(stream_subscriptions_per_connection=0)
    with pytest.raises(binance_uds.InvalidArgument, match="form"):
        binance_uds.Config(stream_form=7)
    # The valid values, as keywords and as the builder.
    pem = ed25519_pem(tmp_path)
    cfg = binance_uds.Config(
        api_key=API_KEY,
        secret_key=SECRET_KEY,
        rest_endpoint=binance_uds.REST_URL_TESTNET,
        recv_window_ms=60000,
        account_resync=True,
        stream_form=binance_uds.STREAM_FORM_QUERY,
        connection_sharing=False,
        stream_subscriptions_per_connection=1024,
    )
    cfg.rest_endpoint(binance_uds.REST_URL_PRODUCTION).recv_window_ms(1).account_resync(False).secret_key(SECRET_KEY)
    if pem is not None:
        cfg.private_key_pem(pem)
        assert "PRIVATE" not in repr(cfg)
    assert_key_not_in(repr(cfg))


def test_account_snapshot_is_the_exchanges_state(exchange: Exchange) -> None:
    with binance_uds.Client(signed(exchange)) as client:
        empty = client.account_snapshot()
        assert empty["open_orders"] == [] and empty["positions"] == []
        open_order = trade(exchange)
        snapshot = client.account_snapshot()
        assert [o["orderId"] for o in snapshot["open_orders"]] == [open_order]
        assert_is_the_exchanges_state(exchange, snapshot)
    stats = exchange.stats()["requests"]
    assert stats["GET /fapi/v1/openOrders"] == 2


def test_account_snapshot_errors(exchange: Exchange) -> None:
    # No signing key: refused before anything is sent.
    with binance_uds.Client(config(exchange)) as client:
        with pytest.raises(binance_uds.InvalidArgument, match="key"):
            client.account_snapshot()
    # A wrong secret: Binance's -1022, the secret nowhere.
    with binance_uds.Client(signed(exchange, secret_key="WRONGSECRETpython0000")) as client:
        with pytest.raises(binance_uds.ApiError) as info:
            client.account_snapshot()
        assert info.value.code == -1022 and info.value.http_status == 400
        assert "WRONGSECRET" not in str(info.value) and "WRONGSECRET" not in repr(info.value)
    # A rate-limited answer: RateLimited with the server's retry time.
    exchange.control(
        {
            "cmd": "fail",
            "method": "GET /fapi/v1/openOrders",
            "status": 429,
            "code": -1003,
            "msg": "Too many requests",
            "retry_after_ms": 60000,
        }
    )
    before = int(time.time() * 1000)
    with binance_uds.Client(signed(exchange)) as client:
        with pytest.raises(binance_uds.RateLimited) as limited:
            client.account_snapshot()
        assert limited.value.http_status == 429 and limited.value.retry_after_ms >= before + 50000
        assert_key_not_in(str(limited.value), repr(limited.value))


def test_account_snapshot_signed_with_ed25519(exchange: Exchange, tmp_path: Path) -> None:
    pem = ed25519_pem(tmp_path)
    if pem is None:
        pytest.skip("no openssl command to make an Ed25519 key")
    ed_key = "EDKEYpython0123456789"
    exchange.control({"cmd": "account", "api_key": ed_key, "ed25519_pem": pem})
    exchange.control({"cmd": "deposit", "api_key": ed_key, "asset": "USDT", "amount": "50"})
    cfg = config(exchange, api_key=ed_key, private_key_pem=pem, rest_endpoint=exchange.rest)
    with binance_uds.Client(cfg) as client:
        snapshot = client.account_snapshot()
    assert [(b["asset"], b["walletBalance"]) for b in snapshot["balances"]] == [("USDT", "50.00000000")]


def library_events_until(stream: binance_uds.UserStream, kind: str) -> List[str]:
    """The library events' types up to and including the first of `kind`."""
    kinds: List[str] = []
    for event in stream.events(idle_timeout=10):
        if event.is_library:
            kinds.append(event.type)
            if event.type == kind:
                return kinds
    raise AssertionError(f"no {kind} (library events: {kinds})")


def test_account_resync_delivers_the_snapshot_first_and_after_a_gap(exchange: Exchange) -> None:
    with binance_uds.Client(config(exchange, account_resync=True)) as unsigned:
        with pytest.raises(binance_uds.InvalidArgument, match="key"):
            unsigned.user_stream()
    with binance_uds.Client(signed(exchange, account_resync=True)) as client, client.user_stream() as stream:
        first = stream.next_event(timeout=10)
        assert first is not None and first.type == "binance.account_snapshot" and first.is_library
        data = first.data
        assert data["e"] == "binance.account_snapshot" and data["open_orders"] == []
        # A lost connection, with trading while it is down: the gap, then a
        # snapshot that has what the stream missed.
        exchange.control({"cmd": "drop", "target": "stream"})
        trade(exchange)
        kinds = library_events_until(stream, "binance.account_snapshot")
        assert "binance.stream_gap" in kinds, kinds
        assert kinds.index("binance.stream_gap") < kinds.index("binance.account_snapshot")
        assert stream.health().gaps >= 1


def test_a_failed_resync_snapshot_is_an_event(exchange: Exchange) -> None:
    exchange.control(
        {
            "cmd": "fail",
            "method": "GET /fapi/v1/openOrders",
            "status": 429,
            "code": -1003,
            "msg": "Too many requests",
            "retry_after_ms": 1500,
        }
    )
    with binance_uds.Client(signed(exchange, account_resync=True)) as client, client.user_stream() as stream:
        failed = stream.next_event(timeout=10)
        assert failed is not None and failed.is_library
        data = failed.data
        assert data["e"] == "binance.account_snapshot_failed", failed.json
        assert data["status"] == "BINANCE_RATE_LIMITED" and data["code"] == -1003
        assert data["retry_in_ms"] >= 1000
        assert_key_not_in(failed.json)
        # The retry heals.
        assert library_events_until(stream, "binance.account_snapshot")[-1] == "binance.account_snapshot"


@pytest.mark.asyncio
async def test_aio_account_snapshot_and_resync(exchange: Exchange) -> None:
    async with aio.Client(signed(exchange, account_resync=True)) as client:
        open_order = trade(exchange)
        snapshot = await client.account_snapshot()
        assert [o["orderId"] for o in snapshot["open_orders"]] == [open_order]
        assert_is_the_exchanges_state(exchange, snapshot)
        assert client.request_budget()["used"] >= 90
        async with client.user_stream() as stream:
            first = await asyncio.wait_for(stream.next_event(), 10)
            assert first.type == "binance.account_snapshot" and first.is_library
            assert first.data["e"] == "binance.account_snapshot"
            assert_is_the_exchanges_state(exchange, first.data)
    async with aio.Client(config(exchange)) as unsigned:
        with pytest.raises(binance_uds.InvalidArgument, match="key"):
            await unsigned.account_snapshot()


def test_one_request_budget_for_every_client_and_one_per_source_address(exchange: Exchange) -> None:
    with binance_uds.Client(signed(exchange)) as a, binance_uds.Client(signed(exchange)) as b:
        a.listen_key_start()
        # B sees what A spent: one budget for the address and server.
        budget = b.request_budget()
        assert budget["used"] >= 6, budget  # the connection's handshake (5) and the start (1)
        assert (budget["limit"], budget["window_ms"]) == (2400, 60000), budget
        assert (budget["source_address"], budget["paused_until_ms"], budget["snapshots_waiting"]) == (None, 0, 0)
        # A 429 to A stops B too, until the server's time, sending nothing.
        exchange.control(
            {
                "cmd": "fail",
                "method": "GET /fapi/v1/openOrders",
                "status": 429,
                "code": -1003,
                "msg": "Too many requests",
                "retry_after_ms": 60000,
            }
        )
        with pytest.raises(binance_uds.RateLimited) as limited:
            a.account_snapshot()
        assert limited.value.http_status == 429
        with pytest.raises(binance_uds.RateLimited) as refused:
            b.listen_key_start()
        assert refused.value.http_status == 0 and refused.value.retry_after_ms == limited.value.retry_after_ms
        assert b.request_budget()["paused_until_ms"] == limited.value.retry_after_ms
        assert b.request_budget()["rate_limited"] == 1
    # Another source address: a budget of its own, not paused.
    with binance_uds.Client(signed(exchange, source_address="127.0.0.2", snapshot_budget_percent=25)) as c:
        c.listen_key_start()
        budget = c.request_budget()
        assert (budget["source_address"], budget["paused_until_ms"]) == ("127.0.0.2", 0), budget
    with pytest.raises(binance_uds.InvalidArgument, match="address"):
        binance_uds.Config(source_address="localhost")
    with pytest.raises(binance_uds.InvalidArgument, match="percent"):
        binance_uds.Config(snapshot_budget_percent=0)
