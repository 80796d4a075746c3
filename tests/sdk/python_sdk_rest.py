#!/usr/bin/env python3
"""The official Binance Python SDK's REST client (and its WebSocket API
client's signed account methods) against the local exchange (issue 11).

Configured with an HMAC key and with an Ed25519 key, the SDK signs requests
the way Binance's own client does; the exchange must accept them and answer
what its account holds (compared with the control port's `snapshot`), and
must refuse a tampered signature (-1022) and a stale timestamp (-1021).
Run by scripts/test.sh in the venv of the stream test.
"""

import asyncio
import os
import sys
import tempfile

import binance_common.utils as sdk_utils
from binance_common.configuration import ConfigurationRestAPI, ConfigurationWebSocketAPI
from binance_common.errors import BadRequestError
from binance_sdk_derivatives_trading_usds_futures.derivatives_trading_usds_futures import (
    DerivativesTradingUsdsFutures,
)
from Crypto.PublicKey import ECC

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from python_sdk import Exchange, WAIT  # noqa: E402  (the same launcher)

import ssl  # noqa: E402

HMAC_KEY, HMAC_SECRET = "RestHmacKey0123", "s3cr3tHmacSecretForTheLocalExchange0123456789"
ED_KEY = "RestEd25519Key0123"


def plain(x):
    """An SDK answer (pydantic models, lists of them) as JSON-like data."""
    if isinstance(x, list):
        return [plain(i) for i in x]
    inner = getattr(x, "actual_instance", None) or x
    d = inner.to_dict() if hasattr(inner, "to_dict") else inner
    if isinstance(d, dict) and "additional_properties" in d:
        # Some list models' to_dict leave the unknown fields nested: lift them.
        d = {**{k: v for k, v in d.items() if k != "additional_properties"}, **d["additional_properties"]}
    return d


def agrees(expected, got, path="answer"):
    """Every field the SDK parsed equals the exchange's snapshot (the SDK
    drops fields its model does not know, and nulls)."""
    if isinstance(got, dict):
        assert isinstance(expected, dict), f"{path}: {expected!r} vs {got!r}"
        for k, v in got.items():
            assert k in expected, f"{path}.{k}: not in the snapshot {expected}"
            agrees(expected[k], v, f"{path}.{k}")
    elif isinstance(got, list):
        assert isinstance(expected, list) and len(expected) == len(got), f"{path}: {expected!r} vs {got!r}"
        for i, (e, g) in enumerate(zip(expected, got)):
            agrees(e, g, f"{path}[{i}]")
    else:
        assert expected == got, f"{path}: snapshot {expected!r}, SDK {got!r}"


def seed(ex, key):
    """Money, a position, an open order and an open algo order."""
    ex.control({"cmd": "deposit", "api_key": key, "amount": "5000"})
    o = ex.control({"cmd": "order_place", "api_key": key, "side": "BUY", "quantity": "0.3", "price": "60000"})
    ex.control({"cmd": "order_fill", "api_key": key, "order_id": o["order_id"], "quantity": "0.1"})
    ex.control({"cmd": "order_place", "api_key": key, "symbol": "ETHUSDT", "side": "SELL", "quantity": "2", "price": "3000.5"})
    ex.control({"cmd": "algo_place", "api_key": key, "side": "SELL", "quantity": "0.1", "trigger_price": "55000"})


def check_rest(ex, ctx, key, **cred):
    rest = DerivativesTradingUsdsFutures(
        config_rest_api=ConfigurationRestAPI(api_key=key, base_path=ex.ready["rest"], https_agent=ctx, **cred)
    ).rest_api
    snap = ex.control({"cmd": "snapshot", "api_key": key})
    assert snap["open_orders"] and snap["positions"] and snap["open_algo_orders"], snap
    agrees(snap["open_orders"], plain(rest.current_all_open_orders().data()))
    agrees(snap["open_algo_orders"], plain(rest.current_all_algo_open_orders().data()))
    agrees(snap["account"], plain(rest.account_information_v3().data()))
    agrees(snap["positions"], plain(rest.position_information_v3().data()))
    agrees(snap["balance"], plain(rest.futures_account_balance_v3().data()))
    server = rest.check_server_time().data().server_time
    assert abs(server - snap["server_time"]) < 60_000, (server, snap["server_time"])
    return rest


def refused(call, code):
    try:
        call()
    except BadRequestError as e:
        assert e.status_code == code, f"expected {code}, got {e.status_code}: {e.error_message}"
        return
    raise AssertionError(f"expected error {code}, the request was accepted")


async def check_ws_api(ex, ctx, key, **cred):
    sdk = DerivativesTradingUsdsFutures(
        config_ws_api=ConfigurationWebSocketAPI(api_key=key, stream_url=ex.ready["ws_api"], https_agent=ctx, **cred)
    )
    api = await sdk.websocket_api.create_connection()
    try:
        snap = ex.control({"cmd": "snapshot", "api_key": key})
        agrees(snap["balance"], plain((await api.futures_account_balance_v2()).data().result))
        agrees(snap["positions"], plain((await api.position_information_v2()).data().result))
        agrees(snap["account"], plain((await api.account_information_v2()).data().result))
    finally:
        await api.close_connection(close_session=True)


async def main():
    tmp = tempfile.TemporaryDirectory(prefix="sdk-rest-")
    ed = ECC.generate(curve="ed25519")
    pub = os.path.join(tmp.name, "ed25519.pub.pem")
    with open(pub, "w") as f:
        f.write(ed.public_key().export_key(format="PEM"))
    ex = Exchange("--account", f"{HMAC_KEY}:{HMAC_SECRET}", "--account-ed25519", f"{ED_KEY}:{pub}")
    try:
        ctx = ssl.create_default_context(cafile=ex.ready["ca_file"])
        for key in (HMAC_KEY, ED_KEY):
            seed(ex, key)
        rest = check_rest(ex, ctx, HMAC_KEY, api_secret=HMAC_SECRET)
        print("python SDK REST: HMAC-signed requests answered with the account's state")
        check_rest(ex, ctx, ED_KEY, private_key=ed.export_key(format="PEM"))
        print("python SDK REST: Ed25519-signed requests answered with the account's state")

        # The SDK's own signature, tampered with after it was computed.
        real = sdk_utils.get_signature
        sdk_utils.get_signature = lambda *a: ("0" if real(*a)[0] != "0" else "1") + real(*a)[1:]
        try:
            refused(rest.current_all_open_orders, -1022)
        finally:
            sdk_utils.get_signature = real
        # A wrong secret is a bad signature too; an old timestamp is -1021.
        wrong = DerivativesTradingUsdsFutures(
            config_rest_api=ConfigurationRestAPI(
                api_key=HMAC_KEY, api_secret=HMAC_SECRET + "x", base_path=ex.ready["rest"], https_agent=ctx
            )
        ).rest_api
        refused(wrong.account_information_v3, -1022)
        real_ts = sdk_utils.get_timestamp
        sdk_utils.get_timestamp = lambda: real_ts() - 120_000
        try:
            refused(rest.futures_account_balance_v3, -1021)
        finally:
            sdk_utils.get_timestamp = real_ts
        print("python SDK REST: a tampered signature is refused (-1022), a stale timestamp too (-1021)")

        await check_ws_api(ex, ctx, HMAC_KEY, api_secret=HMAC_SECRET)
        await check_ws_api(ex, ctx, ED_KEY, private_key=ed.export_key(format="PEM"))
        print("python SDK WebSocket API: signed v2/account.* (HMAC and Ed25519) answered with the account's state")
    finally:
        ex.close()
        tmp.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
