"""Checked by mypy --strict in scripts/test.sh, never run: comparing
``event["e"]`` narrows the stream's event union to each documented and
library event type, and their fields have the types Binance sends."""

from typing import List

from binance_uds.events import AnyEvent


def describe(event: AnyEvent) -> List[object]:
    e = event["e"]
    if event["e"] == "ACCOUNT_UPDATE":
        return [event["T"], event["a"]["m"], [b["wb"] for b in event["a"]["B"]], [p["pa"] for p in event["a"]["P"]]]
    if event["e"] == "ORDER_TRADE_UPDATE":
        order = event["o"]
        return [order["s"], order["X"], order["i"] + 1, order.get("N"), order["m"] is True]
    if event["e"] == "TRADE_LITE":
        return [event["s"], event["L"], event["l"], event["t"] + 1]
    if event["e"] == "MARGIN_CALL":
        return [event.get("cw"), [p["mm"] for p in event["p"]]]
    if event["e"] == "ACCOUNT_CONFIG_UPDATE":
        return [event.get("ac", {}).get("l"), event.get("ai", {}).get("j")]
    if event["e"] == "STRATEGY_UPDATE":
        return [event["su"]["si"], event["su"]["ss"]]
    if event["e"] == "GRID_UPDATE":
        return [event["gu"]["r"]]
    if event["e"] == "CONDITIONAL_ORDER_TRIGGER_REJECT":
        return [event["or"]["s"], event["or"]["r"]]
    if event["e"] == "ALGO_UPDATE":
        return [event["o"]["aid"], event["o"]["X"]]
    if event["e"] == "listenKeyExpired":
        return [event["listenKey"], event["E"]]
    if event["e"] == "binance.stream_gap":
        return [event["reason"], event["to_ms"] - event["from_ms"], event.get("dropped", 0) + 1, event.get("message")]
    if event["e"] == "binance.listen_key_renewed":
        return [event["reason"], event["listenKey"]]
    if event["e"] == "binance.stream_disconnected":
        return [event["reason"], event["message"]]
    if event["e"] == "binance.account_snapshot":
        return [
            event["server_time_ms"] - event["requested_ms"],
            event["account"].get("totalWalletBalance"),
            [b.get("walletBalance") for b in event["balances"]],
            [(p.get("symbol"), p.get("positionAmt"), p.get("updateTime", 0) + 1) for p in event["positions"]],
            [(o.get("orderId", 0) + 1, o.get("status"), o.get("executedQty")) for o in event["open_orders"]],
            [a.get("algoId", 0) + 1 for a in event["open_algo_orders"]],
        ]
    if event["e"] == "binance.account_snapshot_failed":
        return [event["status"], event["code"] + 1, event["message"], event["retry_in_ms"] + 1]
    if event["e"] == "binance.unparsed":
        return [event["text"]]
    return [e, event["E"]]
