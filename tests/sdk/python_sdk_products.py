#!/usr/bin/env python3
"""The official Binance Python SDKs for COIN-M and Portfolio Margin against
the local exchange (issue 21).

COIN-M (binance-sdk-derivatives-trading-coin-futures): its WebSocket API
client obtains a listenKey on /ws-dapi/v1 and keeps it alive, its streams
client subscribes the key on the dstream base, an emitted ORDER_TRADE_UPDATE
reaches its callback intact, and its signed REST calls for the resync
endpoints (/dapi/v1/account, positionRisk, openOrders) agree with the
exchange's own state of the COIN-M account.

Portfolio Margin (binance-sdk-derivatives-trading-portfolio-margin): its
REST client obtains, keeps alive and closes the listenKey
(POST/PUT/DELETE /papi/v1/listenKey), its streams client subscribes the key
on /pm, an emitted ORDER_TRADE_UPDATE with "fs":"UM" arrives intact, and its
signed REST calls (/papi/v1/account, balance, um/openOrders,
um/algo/openAlgoOrders, um/positionRisk, cm/openOrders,
cm/conditional/openOrders) answer from the PM account.

Run by scripts/test.sh in a venv with both SDKs (pinned there) installed.
Exits non-zero, with the reason, on any failure.
"""

import asyncio
import json
import ssl

from binance_common.configuration import (
    ConfigurationRestAPI,
    ConfigurationWebSocketAPI,
    ConfigurationWebSocketStreams,
)
from binance_sdk_derivatives_trading_coin_futures.derivatives_trading_coin_futures import (
    DerivativesTradingCoinFutures,
)
from binance_sdk_derivatives_trading_portfolio_margin.derivatives_trading_portfolio_margin import (
    DerivativesTradingPortfolioMargin,
)

from python_sdk import WAIT, Exchange, model_dict, same

API_KEY = "ProductSdkKey0123456789"
SECRET = "ProductSdkSecret0123456789"


def plain(v):
    """An SDK answer (pydantic models, lists of them) as JSON data."""
    inner = getattr(v, "actual_instance", None) or v
    if isinstance(inner, list):
        return [plain(x) for x in inner]
    if hasattr(inner, "to_dict"):
        return inner.to_dict()
    return inner


def order_event(fs=None):
    event = {
        "e": "ORDER_TRADE_UPDATE", "E": 0, "T": 1591274595442,
        "o": {
            "s": "BTCUSD_200925", "c": "sdk-check", "S": "SELL", "o": "LIMIT", "f": "GTC",
            "q": "2", "p": "9103.1", "ap": "0", "sp": "0", "x": "NEW", "X": "NEW",
            "i": 4242, "l": "0", "z": "0", "L": "0", "N": "BTC", "n": "0",
            "T": 1591274595442, "t": 0, "b": "0", "a": "0", "m": False, "R": False,
            "wt": "CONTRACT_PRICE", "ot": "LIMIT", "ps": "BOTH", "cp": False,
            "rp": "0", "pP": False,
        },
    }
    if fs:
        # Portfolio Margin's example (and the SDK's model) has no wt, ot,
        # cp, pP; it adds fs.
        event["fs"] = fs
        for k in ("wt", "ot", "cp", "pP"):
            del event["o"][k]
    return event


async def receives_intact(ex, product, handle, event):
    """Emits `event` to `product`'s account; the SDK's callback gets it."""
    got = asyncio.get_running_loop().create_future()
    handle.on("message", lambda m: got.done() or got.set_result(m))
    raw = json.dumps(event, separators=(",", ":")).replace('"E":0', '"E":{E}')
    emitted = ex.control({"cmd": "emit", "api_key": API_KEY, "product": product, "raw": raw})
    assert emitted["delivered"] == 1, emitted
    event = dict(event, E=emitted["first_E"])
    msg = await asyncio.wait_for(got, WAIT)
    kind = type(getattr(msg, "actual_instance", msg)).__name__
    assert kind == "OrderTradeUpdate", f"{product}: parsed as {kind}: {msg}"
    same({k: v for k, v in event.items() if k != "e"}, model_dict(msg), f"{product} event")


async def subscription(ex, listen_key):
    """The exchange's stream connection that `listen_key` is subscribed on,
    once it is (within 5 s)."""
    for _ in range(100):
        conns = ex.control({"cmd": "stream_connections"})["connections"]
        sub = next((c for c in conns if listen_key in c["keys"]), None)
        if sub is not None:
            return sub
        await asyncio.sleep(0.05)
    raise AssertionError(f"no stream connection subscribed to {listen_key[:8]}… within 5 s: {conns}")


def trade(ex, product):
    """Some state on the product's account: a deposit and a resting order."""
    acct = {"api_key": API_KEY, "product": product}
    ex.control({"cmd": "deposit", "asset": "USDT", "amount": "5000", **acct})
    return ex.control({"cmd": "order_place", "symbol": "ETHUSDT", "side": "BUY",
                       "quantity": "0.5", "price": "2000", **acct})["order_id"]


async def coinm(ex, ctx):
    order = trade(ex, "coinm")
    sdk = DerivativesTradingCoinFutures(
        config_ws_api=ConfigurationWebSocketAPI(
            api_key=API_KEY, stream_url=ex.ready["coinm_ws_api"], https_agent=ctx
        ),
        config_ws_streams=ConfigurationWebSocketStreams(
            stream_url=ex.ready["coinm_stream"], https_agent=ctx
        ),
        config_rest_api=ConfigurationRestAPI(
            api_key=API_KEY, api_secret=SECRET, base_path=ex.ready["rest"], https_agent=ctx
        ),
    )
    api = await sdk.websocket_api.create_connection()
    listen_key = (await api.start_user_data_stream()).data().result.listen_key
    keys = {k["listen_key"] for k in ex.control({"cmd": "keys"})["keys"]}
    assert listen_key in keys, (keys, listen_key)
    again = (await api.keepalive_user_data_stream()).data().result.listen_key
    assert again == listen_key, (again, listen_key)
    print(f"COIN-M SDK: userDataStream.start/ping on ws-dapi gave {listen_key[:8]}…")

    streams = sdk.websocket_streams
    await streams.create_connection()
    handle = await streams.user_data(listen_key)
    sub = await subscription(ex, listen_key)
    assert sub["path"] == "/coinm/stream" and sub["form"] == "subscribe", sub
    await receives_intact(ex, "coinm", handle, order_event())
    print("COIN-M SDK: /stream + SUBSCRIBE on dstream, the ORDER_TRADE_UPDATE arrived intact")

    rest = sdk.rest_api
    snap = ex.control({"cmd": "snapshot", "api_key": API_KEY, "product": "coinm"})
    orders = plain(rest.current_all_open_orders().data())
    assert [o["orderId"] for o in orders] == [order], orders
    account = plain(rest.account_information().data())
    assert [a["asset"] for a in account["assets"]] == [a["asset"] for a in snap["account"]["assets"]], account
    assert isinstance(plain(rest.position_information().data()), list)
    print("COIN-M SDK: signed /dapi/v1/account, positionRisk, openOrders answer the COIN-M account")

    await streams.close_connection(close_session=True)
    await api.close_connection(close_session=True)


async def pm(ex, ctx):
    order = trade(ex, "pm")
    sdk = DerivativesTradingPortfolioMargin(
        config_rest_api=ConfigurationRestAPI(
            api_key=API_KEY, api_secret=SECRET, base_path=ex.ready["rest"], https_agent=ctx
        ),
        config_ws_streams=ConfigurationWebSocketStreams(
            stream_url=ex.ready["pm_stream"], https_agent=ctx
        ),
    )
    rest = sdk.rest_api
    listen_key = rest.start_user_data_stream().data().listen_key
    rest.keepalive_user_data_stream()
    requests = ex.control({"cmd": "stats"})["requests"]
    assert requests.get("POST /papi/v1/listenKey") == 1, requests
    assert requests.get("PUT /papi/v1/listenKey") == 1, requests
    print(f"PM SDK: POST/PUT /papi/v1/listenKey gave and kept {listen_key[:8]}…")

    streams = sdk.websocket_streams
    await streams.create_connection()
    handle = await streams.user_data(listen_key)
    sub = await subscription(ex, listen_key)
    assert sub["path"] == "/pm/stream" and sub["form"] == "subscribe", sub
    await receives_intact(ex, "pm", handle, order_event("UM"))
    print("PM SDK: /pm/stream + SUBSCRIBE, the ORDER_TRADE_UPDATE (fs UM) arrived intact")

    algo = ex.control({"cmd": "algo_place", "api_key": API_KEY, "product": "pm", "symbol": "ETHUSDT",
                       "side": "SELL", "type": "STOP_MARKET", "quantity": "0.5",
                       "trigger_price": "1500"})["algo_id"]
    orders = plain(rest.query_all_current_um_open_orders().data())
    assert [o["orderId"] for o in orders] == [order], orders
    algos = plain(rest.query_all_current_um_open_algo_orders().data())
    assert [a["algoId"] for a in algos] == [algo], algos
    assert plain(rest.query_all_current_cm_open_orders().data()) == []
    assert plain(rest.query_all_current_cm_open_conditional_orders().data()) == []
    balances = plain(rest.account_balance().data())
    assert [b["asset"] for b in balances] == ["USDT"], balances
    assert isinstance(plain(rest.account_information().data()), dict)
    assert isinstance(plain(rest.query_um_position_information().data()), list)
    print("PM SDK: signed /papi/v1/account, balance, um/openOrders, um/algo/openAlgoOrders, um/positionRisk, cm/openOrders, cm/conditional/openOrders answer")

    rest.close_user_data_stream()
    requests = ex.control({"cmd": "stats"})["requests"]
    assert requests.get("DELETE /papi/v1/listenKey") == 1, requests
    await streams.close_connection(close_session=True)


async def main():
    ex = Exchange("--stream-string-ids", "--account", f"{API_KEY}:{SECRET}")
    try:
        ctx = ssl.create_default_context(cafile=ex.ready["ca_file"])
        await coinm(ex, ctx)
        await pm(ex, ctx)
    finally:
        ex.close()


if __name__ == "__main__":
    asyncio.run(main())
