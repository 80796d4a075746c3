//! Per API key, a futures account: balances, positions (one-way mode,
//! cross margin), open orders and open algo orders. Control commands change
//! it; each change renders the events Binance would send, from the same
//! state the REST and WebSocket API snapshots read, so a snapshot at any
//! moment equals what the events said. Shapes: the USDⓈ-M documentation
//! examples and the official Python SDK's models (docs/local-exchange.md).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{json, Value};

/// A decimal with 8 fractional digits, as Binance prints balances.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Dec(i128);

const SCALE: i128 = 100_000_000;

impl Dec {
    pub const ZERO: Dec = Dec(0);

    pub fn parse(s: &str) -> Option<Dec> {
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || frac.len() > 8 || int.len() > 20 {
            return None;
        }
        let i: i128 = int.parse().ok()?;
        let f: i128 = format!("{frac:0<8}").parse().ok()?;
        let v = i * SCALE + f;
        Some(Dec(if neg { -v } else { v }))
    }
    pub fn from_int(i: i64) -> Dec {
        Dec(i as i128 * SCALE)
    }
    pub fn mul(self, o: Dec) -> Dec {
        Dec(self.0 * o.0 / SCALE)
    }
    pub fn div(self, o: Dec) -> Dec {
        if o.0 == 0 {
            return Dec::ZERO;
        }
        Dec(self.0 * SCALE / o.0)
    }
    pub fn add(self, o: Dec) -> Dec {
        Dec(self.0 + o.0)
    }
    pub fn sub(self, o: Dec) -> Dec {
        Dec(self.0 - o.0)
    }
    pub fn abs(self) -> Dec {
        Dec(self.0.abs())
    }
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
    pub fn signum(self) -> i128 {
        self.0.signum()
    }
    pub fn min(self, o: Dec) -> Dec {
        if self <= o {
            self
        } else {
            o
        }
    }
    /// All 8 digits ("122624.12345678", "0.00000000"): balances.
    pub fn fixed(self) -> String {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.abs();
        format!("{sign}{}.{:08}", a / SCALE, a % SCALE)
    }
}

/// Trailing zeros dropped ("0.001", "64000.1", "0"): prices and quantities.
impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.fixed();
        let s = s.trim_end_matches('0').trim_end_matches('.');
        f.write_str(if s.is_empty() || s == "-" { "0" } else { s })
    }
}

/// Leverage of every position (the model keeps one, documented).
pub const LEVERAGE: i64 = 20;
/// Maintenance margin rate (0.4%).
fn maint_rate() -> Dec {
    Dec(400_000)
}
fn fee(maker: bool) -> Dec {
    // 0.02% maker, 0.05% taker (Binance's regular tier).
    Dec(if maker { 20_000 } else { 50_000 })
}
pub const MARGIN_ASSET: &str = "USDT";

#[derive(Clone, Default)]
pub struct Position {
    /// Signed: long > 0, short < 0.
    pub amt: Dec,
    pub entry: Dec,
    /// Accumulated realized profit (`cr` in ACCOUNT_UPDATE).
    pub realized: Dec,
    /// The last fill price on this symbol stands for the mark price.
    pub mark: Dec,
    pub update_time: u64,
}

impl Position {
    fn unrealized(&self) -> Dec {
        self.mark.sub(self.entry).mul(self.amt)
    }
    fn notional(&self) -> Dec {
        self.amt.mul(self.mark)
    }
}

#[derive(Clone)]
pub struct Order {
    pub id: u64,
    pub client_id: String,
    pub symbol: String,
    pub side: String,
    pub typ: String,
    pub tif: String,
    pub qty: Dec,
    pub price: Dec,
    pub stop_price: Dec,
    pub filled: Dec,
    pub cum_quote: Dec,
    pub status: &'static str,
    pub reduce_only: bool,
    pub time: u64,
    pub update_time: u64,
}

impl Order {
    fn avg(&self) -> Dec {
        self.cum_quote.div(self.filled)
    }
    fn sign(&self) -> Dec {
        Dec::from_int(if self.side == "BUY" { 1 } else { -1 })
    }
}

#[derive(Clone)]
pub struct Algo {
    pub id: u64,
    pub client_id: String,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub tif: String,
    pub qty: Dec,
    pub trigger_price: Dec,
    pub price: Dec,
    pub status: &'static str,
    pub reduce_only: bool,
    pub create_time: u64,
    pub update_time: u64,
    /// The order placed when it triggered.
    pub actual_order_id: Option<u64>,
}

#[derive(Default)]
pub struct Book {
    /// Wallet balance per asset.
    pub balances: BTreeMap<String, Dec>,
    pub balance_time: BTreeMap<String, u64>,
    pub positions: BTreeMap<String, Position>,
    pub orders: BTreeMap<u64, Order>,
    pub algos: BTreeMap<u64, Algo>,
    pub update_time: u64,
}

/// An event to send, rendered but for its `E` (filled in as it is emitted).
pub type Event = Box<dyn Fn(u64) -> String + Send>;

/// What an order command asks for (control JSON, checked).
pub struct NewOrder {
    pub client_id: Option<String>,
    pub symbol: String,
    pub side: String,
    pub typ: String,
    pub tif: String,
    pub qty: Dec,
    pub price: Dec,
    pub stop_price: Dec,
    pub reduce_only: bool,
}

pub struct NewAlgo {
    pub client_id: Option<String>,
    pub symbol: String,
    pub side: String,
    pub order_type: String,
    pub tif: String,
    pub qty: Dec,
    pub trigger_price: Dec,
    pub price: Dec,
    pub reduce_only: bool,
}

fn random_client_id(seed: u64) -> String {
    format!("x-local{seed:016x}")
}

impl Book {
    fn notional_of(&self, symbol: &str, side: &str) -> Dec {
        (self.orders.values())
            .filter(|o| o.symbol == symbol && o.side == side)
            .fold(Dec::ZERO, |a, o| a.add(o.qty.sub(o.filled).mul(o.price)))
    }

    fn order_event(&self, o: &Order, x: &str, t: u64, trade: Option<&Trade>) -> Event {
        let (b, a) = (
            self.notional_of(&o.symbol, "BUY"),
            self.notional_of(&o.symbol, "SELL"),
        );
        let (l, last_price, n, tid, maker, rp) = match trade {
            Some(tr) => (
                tr.qty,
                tr.price,
                tr.commission,
                tr.id,
                tr.maker,
                tr.realized,
            ),
            None => (Dec::ZERO, Dec::ZERO, Dec::ZERO, 0, false, Dec::ZERO),
        };
        let o = o.clone();
        let x = x.to_string();
        Box::new(move |e| {
            json!({"e": "ORDER_TRADE_UPDATE", "E": e, "T": t, "o": {
                "s": o.symbol, "c": o.client_id, "S": o.side, "o": o.typ, "f": o.tif,
                "q": o.qty.to_string(), "p": o.price.to_string(), "ap": o.avg().to_string(),
                "sp": o.stop_price.to_string(), "x": x, "X": o.status, "i": o.id,
                "l": l.to_string(), "z": o.filled.to_string(), "L": last_price.to_string(),
                "N": MARGIN_ASSET, "n": n.fixed(), "T": t, "t": tid,
                "b": b.to_string(), "a": a.to_string(), "m": maker, "R": o.reduce_only,
                "wt": "CONTRACT_PRICE", "ot": o.typ, "ps": "BOTH", "cp": false,
                "rp": rp.fixed(), "pP": false, "si": 0, "ss": 0, "V": "EXPIRE_MAKER",
                "pm": "NONE", "gtd": 0, "er": "0"}})
            .to_string()
        })
    }

    fn algo_event(a: &Algo, t: u64) -> Event {
        let a = a.clone();
        Box::new(move |e| {
            json!({"e": "ALGO_UPDATE", "T": t, "E": e, "o": {
                "caid": a.client_id, "aid": a.id, "at": "CONDITIONAL", "o": a.order_type,
                "s": a.symbol, "S": a.side, "ps": "BOTH", "f": a.tif, "q": a.qty.to_string(),
                "X": a.status, "ai": a.actual_order_id.map_or(String::new(), |i| i.to_string()), "ap": "0", "aq": "0", "act": "0",
                "tp": a.trigger_price.to_string(), "p": a.price.to_string(),
                "V": "EXPIRE_MAKER", "wt": "CONTRACT_PRICE", "pm": "NONE", "cp": false,
                "pP": false, "R": a.reduce_only, "tt": 0, "gtd": 0, "rm": ""}})
            .to_string()
        })
    }

    /// ACCOUNT_UPDATE for `reason`, with these assets and positions.
    fn account_event(
        &self,
        reason: &str,
        t: u64,
        assets: &[(&str, Dec)],
        symbols: &[&str],
    ) -> Event {
        let b: Vec<Value> = assets
            .iter()
            .map(|(a, bc)| {
                let wb = self.balances.get(*a).copied().unwrap_or_default();
                json!({"a": a, "wb": wb.fixed(), "cw": wb.fixed(), "bc": bc.fixed()})
            })
            .collect();
        let p: Vec<Value> = symbols
            .iter()
            .map(|s| {
                let p = self.positions.get(*s).cloned().unwrap_or_default();
                json!({"s": s, "pa": p.amt.to_string(), "ep": p.entry.to_string(),
                    "bep": p.entry.to_string(), "cr": p.realized.fixed(),
                    "up": p.unrealized().fixed(), "mt": "cross", "iw": "0.00000000",
                    "ps": "BOTH", "ma": MARGIN_ASSET})
            })
            .collect();
        let reason = reason.to_string();
        Box::new(move |e| {
            json!({"e": "ACCOUNT_UPDATE", "E": e, "T": t, "a": {"m": reason, "B": b, "P": p}})
                .to_string()
        })
    }

    /// Credits (or debits) `amount` to the wallet: ACCOUNT_UPDATE DEPOSIT/WITHDRAW.
    pub fn deposit(&mut self, asset: &str, amount: Dec, t: u64) -> Vec<Event> {
        let wb = self.balances.entry(asset.to_string()).or_default();
        *wb = wb.add(amount);
        self.balance_time.insert(asset.to_string(), t);
        self.update_time = t;
        let reason = if amount.signum() < 0 {
            "WITHDRAW"
        } else {
            "DEPOSIT"
        };
        vec![self.account_event(reason, t, &[(asset, amount)], &[])]
    }

    pub fn place(&mut self, n: NewOrder, id: u64, t: u64) -> (u64, Vec<Event>) {
        let o = Order {
            id,
            client_id: n.client_id.unwrap_or_else(|| random_client_id(id)),
            symbol: n.symbol,
            side: n.side,
            typ: n.typ,
            tif: n.tif,
            qty: n.qty,
            price: n.price,
            stop_price: n.stop_price,
            filled: Dec::ZERO,
            cum_quote: Dec::ZERO,
            status: "NEW",
            reduce_only: n.reduce_only,
            time: t,
            update_time: t,
        };
        self.orders.insert(id, o.clone());
        self.update_time = t;
        (id, vec![self.order_event(&o, "NEW", t, None)])
    }

    pub fn amend(
        &mut self,
        id: u64,
        qty: Option<Dec>,
        price: Option<Dec>,
        t: u64,
    ) -> Result<Vec<Event>, String> {
        let o = self
            .orders
            .get_mut(&id)
            .ok_or(format!("no open order {id}"))?;
        if let Some(q) = qty {
            if q <= o.filled {
                return Err(format!("quantity {q} is not above the filled {}", o.filled));
            }
            o.qty = q;
        }
        if let Some(p) = price {
            o.price = p;
        }
        o.update_time = t;
        let o = o.clone();
        self.update_time = t;
        Ok(vec![self.order_event(&o, "AMENDMENT", t, None)])
    }

    pub fn cancel(&mut self, id: u64, t: u64) -> Result<Vec<Event>, String> {
        let mut o = self
            .orders
            .remove(&id)
            .ok_or(format!("no open order {id}"))?;
        o.status = "CANCELED";
        o.update_time = t;
        self.update_time = t;
        Ok(vec![self.order_event(&o, "CANCELED", t, None)])
    }

    /// A fill of `qty` (default: what is left) at `price` (default: the
    /// order's): ORDER_TRADE_UPDATE TRADE, TRADE_LITE, ACCOUNT_UPDATE ORDER.
    pub fn fill(
        &mut self,
        id: u64,
        qty: Option<Dec>,
        price: Option<Dec>,
        maker: bool,
        trade_id: u64,
        t: u64,
    ) -> Result<Vec<Event>, String> {
        let o = self.orders.get(&id).ok_or(format!("no open order {id}"))?;
        let left = o.qty.sub(o.filled);
        let q = qty.unwrap_or(left);
        if q.signum() <= 0 || q > left {
            return Err(format!(
                "fill quantity {q} must be above 0 and at most {left}"
            ));
        }
        let price = price.unwrap_or(o.price);
        if price.signum() <= 0 {
            return Err(
                "a fill needs a price above 0 (a MARKET order has none: give 'price')".into(),
            );
        }
        let (symbol, signed_q) = (o.symbol.clone(), q.mul(o.sign()));
        let commission = q.mul(price).mul(fee(maker));

        // The position: grow at a weighted entry, or reduce and realize.
        let p = self.positions.entry(symbol.clone()).or_default();
        let mut realized = Dec::ZERO;
        if p.amt.is_zero() || p.amt.signum() == signed_q.signum() {
            let total = p.amt.abs().add(q);
            p.entry = p.entry.mul(p.amt.abs()).add(price.mul(q)).div(total);
            p.amt = p.amt.add(signed_q);
        } else {
            let closing = q.min(p.amt.abs());
            let dir = Dec::from_int(p.amt.signum() as i64);
            realized = price.sub(p.entry).mul(closing).mul(dir);
            p.amt = p.amt.add(signed_q);
            if p.amt.is_zero() {
                p.entry = Dec::ZERO;
            } else if p.amt.signum() == signed_q.signum() {
                p.entry = price; // flipped: the rest opened at this price
            }
        }
        p.realized = p.realized.add(realized);
        p.mark = price;
        p.update_time = t;
        let wb = self.balances.entry(MARGIN_ASSET.to_string()).or_default();
        *wb = wb.add(realized).sub(commission);
        self.balance_time.insert(MARGIN_ASSET.to_string(), t);

        let o = self.orders.get_mut(&id).ok_or("order vanished")?;
        o.filled = o.filled.add(q);
        o.cum_quote = o.cum_quote.add(q.mul(price));
        o.status = if o.filled == o.qty {
            "FILLED"
        } else {
            "PARTIALLY_FILLED"
        };
        o.update_time = t;
        let o = o.clone();
        if o.status == "FILLED" {
            self.orders.remove(&id);
        }
        self.update_time = t;
        let trade = Trade {
            id: trade_id,
            qty: q,
            price,
            commission,
            maker,
            realized,
        };
        let lite = {
            let o = o.clone();
            Box::new(move |e| {
                json!({"e": "TRADE_LITE", "E": e, "T": t, "s": o.symbol, "q": o.qty.to_string(),
                    "p": o.price.to_string(), "m": maker, "c": o.client_id, "S": o.side,
                    "L": price.to_string(), "l": q.to_string(), "t": trade_id, "i": o.id})
                .to_string()
            }) as Event
        };
        Ok(vec![
            lite,
            self.order_event(&o, "TRADE", t, Some(&trade)),
            self.account_event("ORDER", t, &[(MARGIN_ASSET, Dec::ZERO)], &[&symbol]),
        ])
    }

    pub fn algo_place(&mut self, n: NewAlgo, id: u64, t: u64) -> (u64, Vec<Event>) {
        let a = Algo {
            id,
            client_id: n.client_id.unwrap_or_else(|| random_client_id(id)),
            symbol: n.symbol,
            side: n.side,
            order_type: n.order_type,
            tif: n.tif,
            qty: n.qty,
            trigger_price: n.trigger_price,
            price: n.price,
            status: "NEW",
            reduce_only: n.reduce_only,
            create_time: t,
            update_time: t,
            actual_order_id: None,
        };
        self.algos.insert(id, a.clone());
        self.update_time = t;
        (id, vec![Book::algo_event(&a, t)])
    }

    pub fn algo_cancel(&mut self, id: u64, t: u64) -> Result<Vec<Event>, String> {
        let mut a = self
            .algos
            .remove(&id)
            .ok_or(format!("no open algo order {id}"))?;
        a.status = "CANCELED";
        a.update_time = t;
        self.update_time = t;
        Ok(vec![Book::algo_event(&a, t)])
    }

    /// The trigger price was reached: the algo order leaves the open algo
    /// orders (ALGO_UPDATE TRIGGERED, `ai` the new order's id) and its
    /// order is placed (ORDER_TRADE_UPDATE NEW): MARKET for a *_MARKET
    /// type, else LIMIT at the algo's price.
    pub fn algo_trigger(&mut self, id: u64, order_id: u64, t: u64) -> Result<Vec<Event>, String> {
        let mut a = self
            .algos
            .remove(&id)
            .ok_or(format!("no open algo order {id}"))?;
        a.status = "TRIGGERED";
        a.actual_order_id = Some(order_id);
        a.update_time = t;
        let market = a.order_type.ends_with("MARKET");
        let n = NewOrder {
            client_id: None,
            symbol: a.symbol.clone(),
            side: a.side.clone(),
            typ: if market { "MARKET" } else { "LIMIT" }.to_string(),
            tif: a.tif.clone(),
            qty: a.qty,
            price: if market { Dec::ZERO } else { a.price },
            stop_price: a.trigger_price,
            reduce_only: a.reduce_only,
        };
        let mut events = vec![Book::algo_event(&a, t)];
        events.extend(self.place(n, order_id, t).1);
        Ok(events)
    }

    // --- snapshots ---------------------------------------------------------

    fn totals(&self) -> Totals {
        let upnl = self
            .positions
            .values()
            .fold(Dec::ZERO, |a, p| a.add(p.unrealized()));
        let lev = Dec::from_int(LEVERAGE);
        let pos_im =
            (self.positions.values()).fold(Dec::ZERO, |a, p| a.add(p.notional().abs().div(lev)));
        let maint = (self.positions.values()).fold(Dec::ZERO, |a, p| {
            a.add(p.notional().abs().mul(maint_rate()))
        });
        let ord_im = (self.orders.values()).fold(Dec::ZERO, |a, o| {
            a.add(o.qty.sub(o.filled).mul(o.price).div(lev))
        });
        let wallet = self.balances.get(MARGIN_ASSET).copied().unwrap_or_default();
        let available = wallet.add(upnl).sub(pos_im).sub(ord_im);
        Totals {
            wallet,
            upnl,
            pos_im,
            ord_im,
            maint,
            available,
        }
    }

    /// The figures of one asset (only the margin asset carries positions).
    fn asset_figures(&self, asset: &str) -> (Dec, Totals) {
        let wb = self.balances.get(asset).copied().unwrap_or_default();
        let t = if asset == MARGIN_ASSET {
            self.totals()
        } else {
            Totals {
                wallet: wb,
                available: wb,
                ..Totals::default()
            }
        };
        (wb, t)
    }

    fn asset_json(&self, asset: &str, with_margin_available: bool) -> Value {
        let (wb, t) = self.asset_figures(asset);
        let mut v = json!({"asset": asset, "walletBalance": wb.fixed(),
            "unrealizedProfit": t.upnl.fixed(), "marginBalance": wb.add(t.upnl).fixed(),
            "maintMargin": t.maint.fixed(), "initialMargin": t.pos_im.add(t.ord_im).fixed(),
            "positionInitialMargin": t.pos_im.fixed(), "openOrderInitialMargin": t.ord_im.fixed(),
            "crossWalletBalance": wb.fixed(), "crossUnPnl": t.upnl.fixed(),
            "availableBalance": t.available.fixed(), "maxWithdrawAmount": t.available.fixed(),
            "updateTime": self.balance_time.get(asset).copied().unwrap_or(0)});
        if with_margin_available {
            v["marginAvailable"] = true.into();
        }
        v
    }

    fn open_positions<'a>(
        &'a self,
        symbol: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a Position)> + 'a {
        self.positions
            .iter()
            .filter(move |(s, p)| !p.amt.is_zero() && symbol.is_none_or(|x| x == s.as_str()))
    }

    /// `GET /fapi/v3/account` and ws `v2/account.status`; `v2` (REST) and ws
    /// `account.status` add the flags and the older position fields.
    pub fn account(&self, old_style: bool) -> Value {
        let t = self.totals();
        let assets: Vec<Value> = self
            .balances
            .keys()
            .map(|a| self.asset_json(a, old_style))
            .collect();
        let lev = Dec::from_int(LEVERAGE);
        let positions: Vec<Value> = self
            .open_positions(None)
            .map(|(s, p)| {
                let im = p.notional().abs().div(lev);
                let mm = p.notional().abs().mul(maint_rate());
                if old_style {
                    json!({"symbol": s, "initialMargin": im.fixed(), "maintMargin": mm.fixed(),
                        "unrealizedProfit": p.unrealized().fixed(),
                        "positionInitialMargin": im.fixed(), "openOrderInitialMargin": "0",
                        "leverage": LEVERAGE.to_string(), "isolated": false,
                        "entryPrice": p.entry.to_string(), "breakEvenPrice": p.entry.to_string(),
                        "maxNotional": "1000000", "bidNotional": "0", "askNotional": "0",
                        "positionSide": "BOTH", "positionAmt": p.amt.to_string(),
                        "updateTime": p.update_time})
                } else {
                    json!({"symbol": s, "positionSide": "BOTH", "positionAmt": p.amt.to_string(),
                        "unrealizedProfit": p.unrealized().fixed(), "isolatedMargin": "0",
                        "notional": p.notional().fixed(), "isolatedWallet": "0",
                        "initialMargin": im.fixed(), "maintMargin": mm.fixed(),
                        "updateTime": p.update_time})
                }
            })
            .collect();
        let mut v = json!({"totalInitialMargin": t.pos_im.add(t.ord_im).fixed(),
            "totalMaintMargin": t.maint.fixed(), "totalWalletBalance": t.wallet.fixed(),
            "totalUnrealizedProfit": t.upnl.fixed(), "totalMarginBalance": t.wallet.add(t.upnl).fixed(),
            "totalPositionInitialMargin": t.pos_im.fixed(),
            "totalOpenOrderInitialMargin": t.ord_im.fixed(),
            "totalCrossWalletBalance": t.wallet.fixed(), "totalCrossUnPnl": t.upnl.fixed(),
            "availableBalance": t.available.fixed(), "maxWithdrawAmount": t.available.fixed(),
            "assets": assets, "positions": positions});
        if old_style {
            for (k, val) in [
                ("feeTier", json!(0)),
                ("feeBurn", json!(false)),
                ("canTrade", json!(true)),
                ("canDeposit", json!(true)),
                ("canWithdraw", json!(true)),
                ("updateTime", json!(0)),
                ("multiAssetsMargin", json!(false)),
                ("tradeGroupId", json!(-1)),
            ] {
                v[k] = val;
            }
        }
        v
    }

    /// `GET /fapi/v3/balance`, ws `account.balance` (v1 and v2).
    pub fn balance(&self) -> Value {
        let list: Vec<Value> = self
            .balances
            .keys()
            .map(|a| {
                let (wb, t) = self.asset_figures(a);
                json!({"accountAlias": "SgsR", "asset": a, "balance": wb.fixed(),
                    "crossWalletBalance": wb.fixed(), "crossUnPnl": t.upnl.fixed(),
                    "availableBalance": t.available.fixed(), "maxWithdrawAmount": t.available.fixed(),
                    "marginAvailable": true,
                    "updateTime": self.balance_time.get(a).copied().unwrap_or(0)})
            })
            .collect();
        Value::Array(list)
    }

    /// `GET /fapi/v3/positionRisk` and ws `v2/account.position`; ws
    /// `account.position` (`old_style`) in its v1 shape. Open positions only.
    pub fn position_risk(&self, symbol: Option<&str>, old_style: bool) -> Value {
        let lev = Dec::from_int(LEVERAGE);
        let list: Vec<Value> = self
            .open_positions(symbol)
            .map(|(s, p)| {
                let im = p.notional().abs().div(lev);
                let mm = p.notional().abs().mul(maint_rate());
                if old_style {
                    json!({"entryPrice": p.entry.to_string(), "breakEvenPrice": p.entry.to_string(),
                        "marginType": "cross", "isAutoAddMargin": "false", "isolatedMargin": "0.00000000",
                        "leverage": LEVERAGE.to_string(), "liquidationPrice": "0",
                        "markPrice": p.mark.to_string(), "maxNotionalValue": "1000000",
                        "positionAmt": p.amt.to_string(), "notional": p.notional().fixed(),
                        "isolatedWallet": "0", "symbol": s,
                        "unRealizedProfit": p.unrealized().fixed(), "positionSide": "BOTH",
                        "updateTime": p.update_time})
                } else {
                    json!({"symbol": s, "positionSide": "BOTH", "positionAmt": p.amt.to_string(),
                        "entryPrice": p.entry.to_string(), "breakEvenPrice": p.entry.to_string(),
                        "markPrice": p.mark.to_string(), "unRealizedProfit": p.unrealized().fixed(),
                        "liquidationPrice": "0", "isolatedMargin": "0",
                        "notional": p.notional().fixed(), "marginAsset": MARGIN_ASSET,
                        "isolatedWallet": "0", "initialMargin": im.fixed(), "maintMargin": mm.fixed(),
                        "positionInitialMargin": im.fixed(), "openOrderInitialMargin": "0",
                        "adl": 0, "bidNotional": "0", "askNotional": "0",
                        "updateTime": p.update_time})
                }
            })
            .collect();
        Value::Array(list)
    }

    /// `GET /fapi/v1/openOrders`.
    pub fn open_orders(&self, symbol: Option<&str>) -> Value {
        let list: Vec<Value> = self
            .orders
            .values()
            .filter(|o| symbol.is_none_or(|s| s == o.symbol))
            .map(|o| {
                json!({"avgPrice": o.avg().to_string(), "clientOrderId": o.client_id,
                    "cumQuote": o.cum_quote.to_string(), "executedQty": o.filled.to_string(),
                    "orderId": o.id, "origQty": o.qty.to_string(), "origType": o.typ,
                    "price": o.price.to_string(), "reduceOnly": o.reduce_only, "side": o.side,
                    "positionSide": "BOTH", "status": o.status,
                    "stopPrice": o.stop_price.to_string(), "closePosition": false,
                    "symbol": o.symbol, "time": o.time, "timeInForce": o.tif, "type": o.typ,
                    "updateTime": o.update_time, "workingType": "CONTRACT_PRICE",
                    "priceProtect": false, "priceMatch": "NONE",
                    "selfTradePreventionMode": "EXPIRE_MAKER", "goodTillDate": 0})
            })
            .collect();
        Value::Array(list)
    }

    /// `GET /fapi/v1/openAlgoOrders`.
    pub fn open_algo_orders(&self, symbol: Option<&str>) -> Value {
        let list: Vec<Value> = self
            .algos
            .values()
            .filter(|a| symbol.is_none_or(|s| s == a.symbol))
            .map(|a| {
                json!({"algoId": a.id, "clientAlgoId": a.client_id, "algoType": "CONDITIONAL",
                    "orderType": a.order_type, "symbol": a.symbol, "side": a.side,
                    "positionSide": "BOTH", "timeInForce": a.tif, "quantity": a.qty.to_string(),
                    "algoStatus": a.status, "actualOrderId": "", "actualPrice": "0",
                    "triggerPrice": a.trigger_price.to_string(), "price": a.price.to_string(),
                    "icebergQuantity": null, "tpTriggerPrice": "0", "tpPrice": "0",
                    "slTriggerPrice": "0", "slPrice": "0", "tpOrderType": "",
                    "selfTradePreventionMode": "EXPIRE_MAKER", "workingType": "CONTRACT_PRICE",
                    "priceMatch": "NONE", "closePosition": false, "priceProtect": false,
                    "reduceOnly": a.reduce_only, "createTime": a.create_time,
                    "updateTime": a.update_time, "triggerTime": 0, "goodTillDate": 0})
            })
            .collect();
        Value::Array(list)
    }
}

#[derive(Default)]
struct Totals {
    wallet: Dec,
    upnl: Dec,
    pos_im: Dec,
    ord_im: Dec,
    maint: Dec,
    available: Dec,
}

struct Trade {
    id: u64,
    qty: Dec,
    price: Dec,
    commission: Dec,
    maker: bool,
    realized: Dec,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Dec {
        Dec::parse(s).unwrap()
    }

    #[test]
    fn decimals() {
        assert_eq!(d("0.001").to_string(), "0.001");
        assert_eq!(d("-12.5").fixed(), "-12.50000000");
        assert_eq!(d("64000.10").to_string(), "64000.1");
        assert_eq!(d("0").to_string(), "0");
        assert_eq!(d("2").mul(d("0.5")).to_string(), "1");
        assert!(Dec::parse("1e5").is_none() && Dec::parse("0.123456789").is_none());
    }

    #[test]
    fn fills_move_position_and_wallet() {
        let mut b = Book::default();
        b.deposit("USDT", d("1000"), 1);
        let n = |side: &str, q: &str, p: &str| NewOrder {
            client_id: None,
            symbol: "BTCUSDT".into(),
            side: side.into(),
            typ: "LIMIT".into(),
            tif: "GTC".into(),
            qty: d(q),
            price: d(p),
            stop_price: Dec::ZERO,
            reduce_only: false,
        };
        b.place(n("BUY", "0.2", "100"), 1, 2);
        b.fill(1, Some(d("0.1")), None, true, 1, 3).unwrap();
        assert_eq!(b.orders[&1].status, "PARTIALLY_FILLED");
        b.fill(1, None, Some(d("110")), true, 2, 4).unwrap();
        assert!(b.orders.is_empty());
        let p = &b.positions["BTCUSDT"];
        assert_eq!(
            (p.amt.to_string(), p.entry.to_string()),
            ("0.2".into(), "105".into())
        );
        b.place(n("SELL", "0.2", "120"), 2, 5);
        b.fill(2, None, None, false, 3, 6).unwrap();
        let p = &b.positions["BTCUSDT"];
        assert_eq!(
            (p.amt.to_string(), p.realized.to_string()),
            ("0".into(), "3".into())
        );
        // 1000 + 3 realized - fees (0.0002*10 + 0.0002*11 + 0.0005*24).
        assert_eq!(b.balances["USDT"].to_string(), "1002.9838");
    }
}
