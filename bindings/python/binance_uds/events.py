"""The events a stream yields, typed for editors and type checkers.

Iterating a stream yields :data:`AnyEvent`: one ``TypedDict`` per event
type Binance documents for the USD-M Futures user data stream, and one per
library event. Test ``event["e"]`` and a type checker narrows the rest::

    for event in stream:
        if event["e"] == "ORDER_TRADE_UPDATE":
            print(event["o"]["s"], event["o"]["X"])   # OrderTradeUpdate

These are types only: the dicts are the JSON as Binance sent it (numbers
as numbers, decimals as strings), nothing is checked or converted at run
time. Binance adds fields without notice; those are there too, untyped.
The top-level fields Binance documents are required keys, those it sends
only sometimes (``MarginCall``'s ``cw``, ``AccountConfigUpdate``'s ``ac`` or
``ai``, a gap's ``message`` or ``dropped``) are not; inside the nested
objects every key is optional (Binance omits some, e.g. an order's
commission before it has one): use ``.get()`` where a key may be absent. An event of a type this version does not know is
delivered too; the union leaves it out so that comparing ``event["e"]``
narrows (a catch-all ``Dict[str, Any]`` member would stop type checkers
from narrowing at all): handle it as ``Mapping[str, Any]``, e.g. in the
``else`` branch.

Field names and meanings: Binance's "User Data Streams" documentation for
USDⓈ-M Futures.
"""

from typing import Any, Dict, List, Literal, TypedDict, Union

__all__ = [
    "AccountConfigUpdate",
    "AccountSnapshot",
    "AccountSnapshotFailed",
    "AccountUpdate",
    "AlgoUpdate",
    "AnyEvent",
    "ConditionalOrderTriggerReject",
    "GridUpdate",
    "ListenKeyExpired",
    "ListenKeyRenewed",
    "MarginCall",
    "OrderTradeUpdate",
    "StreamDisconnected",
    "StreamGap",
    "StrategyUpdate",
    "TradeLite",
    "Unparsed",
]

# ---------------------------------------------------------------------------
# ACCOUNT_UPDATE: balances and positions changed.


class Balance(TypedDict, total=False):
    a: str
    """Asset."""
    wb: str
    """Wallet balance."""
    cw: str
    """Cross wallet balance."""
    bc: str
    """Balance change except PnL and commission."""


class Position(TypedDict, total=False):
    s: str
    """Symbol."""
    pa: str
    """Position amount."""
    ep: str
    """Entry price."""
    bep: str
    """Breakeven price."""
    cr: str
    """(Pre-fee) accumulated realized PnL."""
    up: str
    """Unrealized PnL."""
    mt: str
    """Margin type: "isolated" or "cross"."""
    iw: str
    """Isolated wallet (if isolated position)."""
    ps: str
    """Position side: BOTH, LONG, SHORT."""
    ma: str
    """Margin asset."""


class AccountUpdateData(TypedDict, total=False):
    m: str
    """Reason: DEPOSIT, WITHDRAW, ORDER, FUNDING_FEE, MARGIN_TRANSFER, ..."""
    B: List[Balance]
    """The balances that changed."""
    P: List[Position]
    """The positions that changed."""


class AccountUpdate(TypedDict):
    e: Literal["ACCOUNT_UPDATE"]
    E: int
    """Event time, ms since the Unix epoch."""
    T: int
    """Transaction time."""
    a: AccountUpdateData


# ---------------------------------------------------------------------------
# ORDER_TRADE_UPDATE: an order was placed, filled, cancelled, ...


class OrderUpdate(TypedDict, total=False):
    s: str
    """Symbol."""
    c: str
    """Client order id."""
    S: str
    """Side: BUY or SELL."""
    o: str
    """Order type."""
    f: str
    """Time in force."""
    q: str
    """Original quantity."""
    p: str
    """Original price."""
    ap: str
    """Average price."""
    sp: str
    """Stop price."""
    x: str
    """Execution type: NEW, CANCELED, CALCULATED, EXPIRED, TRADE, AMENDMENT."""
    X: str
    """Order status: NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, EXPIRED_IN_MATCH."""
    i: int
    """Order id."""
    l: str  # noqa: E741 (Binance's name)
    """Last filled quantity."""
    z: str
    """Cumulative filled quantity."""
    L: str
    """Last filled price."""
    N: str
    """Commission asset (absent when there is no commission)."""
    n: str
    """Commission (absent when there is no commission)."""
    T: int
    """Order trade time."""
    t: int
    """Trade id."""
    b: str
    """Bids notional."""
    a: str
    """Ask notional."""
    m: bool
    """Whether the trade was the maker side."""
    R: bool
    """Reduce only."""
    wt: str
    """Stop price working type."""
    ot: str
    """Original order type."""
    ps: str
    """Position side."""
    cp: bool
    """Close-all (a conditional order)."""
    AP: str
    """Activation price (TRAILING_STOP_MARKET)."""
    cr: str
    """Callback rate (TRAILING_STOP_MARKET)."""
    pP: bool
    """Price protection."""
    si: int
    ss: int
    rp: str
    """Realized profit of the trade."""
    V: str
    """Self-trade prevention mode."""
    pm: str
    """Price match mode."""
    gtd: int
    """Good-till-date auto-cancel time."""
    er: str
    """Expire reason (0-9)."""
    M: int
    """modifyId: only on AMENDMENT events when one was sent."""


class OrderTradeUpdate(TypedDict):
    e: Literal["ORDER_TRADE_UPDATE"]
    E: int
    T: int
    o: OrderUpdate


# ---------------------------------------------------------------------------
# TRADE_LITE: a trade, fewer fields, sooner.


class TradeLite(TypedDict):
    e: Literal["TRADE_LITE"]
    E: int
    T: int
    s: str
    """Symbol."""
    q: str
    """Original quantity."""
    p: str
    """Original price."""
    m: bool
    """Whether this trade was the maker side."""
    c: str
    """Client order id."""
    S: str
    """Side."""
    L: str
    """Last filled price."""
    l: str  # noqa: E741 (Binance's name)
    """Last filled quantity."""
    t: int
    """Trade id."""
    i: int
    """Order id."""


# ---------------------------------------------------------------------------
# MARGIN_CALL


class MarginCallPosition(TypedDict, total=False):
    s: str
    """Symbol."""
    ps: str
    """Position side."""
    pa: str
    """Position amount."""
    mt: str
    """Margin type."""
    iw: str
    """Isolated wallet (if isolated position)."""
    mp: str
    """Mark price."""
    up: str
    """Unrealized PnL."""
    mm: str
    """Maintenance margin required."""


class _MarginCallFields(TypedDict):
    e: Literal["MARGIN_CALL"]
    E: int
    p: List[MarginCallPosition]


class MarginCall(_MarginCallFields, total=False):
    cw: str
    """Cross wallet balance (only pushed with crossed position margin call)."""


# ---------------------------------------------------------------------------
# ACCOUNT_CONFIG_UPDATE: leverage (``ac``) or multi-assets mode (``ai``).


class LeverageConfig(TypedDict, total=False):
    s: str
    """Symbol."""
    l: int  # noqa: E741 (Binance's name)
    """Leverage."""


class MultiAssetsConfig(TypedDict, total=False):
    j: bool
    """Multi-assets mode."""


class _AccountConfigUpdateFields(TypedDict):
    e: Literal["ACCOUNT_CONFIG_UPDATE"]
    E: int
    T: int


class AccountConfigUpdate(_AccountConfigUpdateFields, total=False):
    ac: LeverageConfig
    """A symbol's leverage changed (or ``ai``)."""
    ai: MultiAssetsConfig
    """The multi-assets mode changed (or ``ac``)."""


# ---------------------------------------------------------------------------
# STRATEGY_UPDATE and GRID_UPDATE (GRID_UPDATE is deprecated by Binance).


class StrategyData(TypedDict, total=False):
    si: int
    """Strategy id."""
    st: str
    """Strategy type."""
    ss: str
    """Strategy status."""
    s: str
    """Symbol."""
    ut: int
    """Update time."""
    c: int
    """opCode (8001-8015)."""


class StrategyUpdate(TypedDict):
    e: Literal["STRATEGY_UPDATE"]
    T: int
    E: int
    su: StrategyData


class GridData(TypedDict, total=False):
    si: int
    """Strategy id."""
    st: str
    """Strategy type."""
    ss: str
    """Strategy status."""
    s: str
    """Symbol."""
    r: str
    """Realized PnL."""
    up: str
    """Unmatched average price."""
    uq: str
    """Unmatched quantity."""
    uf: str
    """Unmatched fee."""
    mp: str
    """Matched PnL."""
    ut: int
    """Update time."""


class GridUpdate(TypedDict):
    e: Literal["GRID_UPDATE"]
    T: int
    E: int
    gu: GridData


# ---------------------------------------------------------------------------
# CONDITIONAL_ORDER_TRIGGER_REJECT (deprecated by Binance; see ALGO_UPDATE)


class TriggerReject(TypedDict, total=False):
    s: str
    """Symbol."""
    i: int
    """Order id."""
    r: str
    """Reject reason."""


# The functional form: "or" is a Python keyword.
ConditionalOrderTriggerReject = TypedDict(
    "ConditionalOrderTriggerReject",
    {"e": Literal["CONDITIONAL_ORDER_TRIGGER_REJECT"], "E": int, "T": int, "or": TriggerReject},
)


# ---------------------------------------------------------------------------
# ALGO_UPDATE: algo (conditional) orders.


class AlgoOrder(TypedDict, total=False):
    caid: str
    """Client algo id."""
    aid: int
    """Algo id."""
    at: str
    """Algo type."""
    o: str
    """Order type."""
    s: str
    """Symbol."""
    S: str
    """Side."""
    ps: str
    """Position side."""
    f: str
    """Time in force."""
    q: str
    """Quantity."""
    X: str
    """Algo status: NEW, CANCELED, TRIGGERING, TRIGGERED, FINISHED, REJECTED, EXPIRED."""
    ai: str
    """Order id in the matching engine, once triggered."""
    ap: str
    """Average fill price."""
    aq: str
    """Executed quantity."""
    act: str
    """Actual order type."""
    tp: str
    """Trigger price."""
    p: str
    """Order price."""
    V: str
    """Self-trade prevention mode."""
    wt: str
    """Working type."""
    pm: str
    """Price match mode."""
    cp: bool
    """Close position."""
    pP: bool
    """Price protection."""
    R: bool
    """Reduce only."""
    tt: int
    """Trigger time."""
    gtd: int
    """Good-till-date time."""
    rm: str
    """Failure reason."""


class AlgoUpdate(TypedDict):
    e: Literal["ALGO_UPDATE"]
    T: int
    E: int
    o: AlgoOrder


# ---------------------------------------------------------------------------
# listenKeyExpired (the library renews the key and reconnects by itself)


class ListenKeyExpired(TypedDict):
    e: Literal["listenKeyExpired"]
    E: Union[int, str]
    """Event time: a string in Binance's documented example, a number lately."""
    listenKey: str


# ---------------------------------------------------------------------------
# Library events (made by binance-uds, in the same order as the account's)


class _StreamGapFields(TypedDict):
    e: Literal["binance.stream_gap"]
    E: int
    reason: str
    """disconnected, silent, listen_key_expired, listen_key_invalid,
    listen_key_changed, queue_overflow, or unrouted."""
    from_ms: int
    """Events after this time (ms since the Unix epoch) may be missing ..."""
    to_ms: int
    """... up to this time."""


class StreamGap(_StreamGapFields, total=False):
    """Events may have been lost: resynchronise orders and positions over REST."""

    message: str
    """What happened, for a person (absent for queue_overflow)."""
    dropped: int
    """How many events were dropped (queue_overflow only)."""


class ListenKeyRenewed(TypedDict):
    """The listenKey changed."""

    e: Literal["binance.listen_key_renewed"]
    E: int
    reason: str
    listenKey: str
    """The new key's first characters only."""


class StreamDisconnected(TypedDict):
    """The stream connection was lost or replaced; reconnecting."""

    e: Literal["binance.stream_disconnected"]
    E: int
    reason: str
    message: str


class SnapshotBalance(TypedDict, total=False):
    """One asset of ``GET /fapi/v3/account``'s ``assets``."""

    asset: str
    walletBalance: str
    crossWalletBalance: str
    availableBalance: str
    unrealizedProfit: str
    updateTime: int


class SnapshotPosition(TypedDict, total=False):
    """One position of ``GET /fapi/v3/positionRisk``."""

    symbol: str
    positionSide: str
    positionAmt: str
    entryPrice: str
    markPrice: str
    unRealizedProfit: str
    updateTime: int


class SnapshotOrder(TypedDict, total=False):
    """One order of ``GET /fapi/v1/openOrders``."""

    orderId: int
    clientOrderId: str
    symbol: str
    side: str
    positionSide: str
    type: str
    status: str
    price: str
    origQty: str
    executedQty: str
    time: int
    updateTime: int


class SnapshotAlgoOrder(TypedDict, total=False):
    """One algo order of ``GET /fapi/v1/openAlgoOrders``."""

    algoId: int
    clientAlgoId: str
    symbol: str
    side: str
    orderType: str
    algoStatus: str
    quantity: str
    triggerPrice: str
    updateTime: int


class AccountSnapshot(TypedDict):
    """The account's state over signed REST (with ``account_resync``: when
    the stream opens and after every gap; also what
    ``Client.account_snapshot()`` returns). Apply it by the README's merge
    rule ("Resynchronising after a gap"). Each item is exactly as Binance
    sends it: the keys typed here and more."""

    e: Literal["binance.account_snapshot"]
    E: int
    """When the snapshot was complete, on the server's clock."""
    requested_ms: int
    """When it was asked for, on the server's clock."""
    server_time_ms: int
    """The server's clock when it started: events before it are reflected."""
    account: Dict[str, Any]
    """``GET /fapi/v3/account`` without its ``assets``."""
    balances: List[SnapshotBalance]
    positions: List[SnapshotPosition]
    open_orders: List[SnapshotOrder]
    open_algo_orders: List[SnapshotAlgoOrder]


class AccountSnapshotFailed(TypedDict):
    """The snapshot a gap (or the stream's opening) asked for failed; the
    events held for it follow, and it is retried after ``retry_in_ms``."""

    e: Literal["binance.account_snapshot_failed"]
    E: int
    status: str
    """The status's name, e.g. ``"BINANCE_RATE_LIMITED"``."""
    code: int
    """Binance's error code; 0 when none."""
    message: str
    retry_in_ms: int


class Unparsed(TypedDict):
    """A server message that was not a JSON object."""

    e: Literal["binance.unparsed"]
    E: int
    text: str


AnyEvent = Union[
    AccountUpdate,
    OrderTradeUpdate,
    TradeLite,
    MarginCall,
    AccountConfigUpdate,
    StrategyUpdate,
    GridUpdate,
    ConditionalOrderTriggerReject,
    AlgoUpdate,
    ListenKeyExpired,
    StreamGap,
    ListenKeyRenewed,
    StreamDisconnected,
    AccountSnapshot,
    AccountSnapshotFailed,
    Unparsed,
]
"""What a stream yields (and, at run time, events of types not listed here:
see the module's documentation)."""
