//! The account as an application keeps it (replaced by a snapshot,
//! updated by events under the README's merge rule), and the exchange's own
//! view to compare it with. Shared by tests/account.rs and tests/resync.rs.

use super::Exchange;
use serde_json::{json, Value};

/// The account as the application keeps it: replaced by a snapshot,
/// updated by events under the README's merge rule.
#[derive(Default, Debug, PartialEq)]
pub struct Book {
    /// orderId -> (status, updateTime)
    orders: std::collections::BTreeMap<i64, (String, i64)>,
    /// algoId -> updateTime
    algos: std::collections::BTreeMap<i64, i64>,
    /// (symbol, positionSide) -> (amount, updateTime); zero amounts dropped
    positions: std::collections::BTreeMap<(String, String), (f64, i64)>,
    /// asset -> (wallet balance, updateTime)
    balances: std::collections::BTreeMap<String, (f64, i64)>,
}

fn num(v: &Value) -> f64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN)
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}

impl Book {
    /// From the parts of a snapshot (the library's, or the exchange's own).
    pub fn from_parts(balances: &Value, positions: &Value, orders: &Value, algos: &Value) -> Book {
        let mut b = Book::default();
        for o in orders.as_array().unwrap() {
            b.orders.insert(
                int(&o["orderId"]),
                (
                    o["status"].as_str().unwrap().to_owned(),
                    int(&o["updateTime"]),
                ),
            );
        }
        for a in algos.as_array().unwrap() {
            b.algos.insert(int(&a["algoId"]), int(&a["updateTime"]));
        }
        for p in positions.as_array().unwrap() {
            let amount = num(&p["positionAmt"]);
            if amount != 0.0 {
                let key = (
                    p["symbol"].as_str().unwrap().to_owned(),
                    p["positionSide"].as_str().unwrap().to_owned(),
                );
                b.positions.insert(key, (amount, int(&p["updateTime"])));
            }
        }
        for a in balances.as_array().unwrap() {
            b.balances.insert(
                a["asset"].as_str().unwrap().to_owned(),
                (num(&a["walletBalance"]), int(&a["updateTime"])),
            );
        }
        b
    }

    pub fn from_snapshot(doc: &Value) -> Book {
        Book::from_parts(
            &doc["balances"],
            &doc["positions"],
            &doc["open_orders"],
            &doc["open_algo_orders"],
        )
    }

    /// The merge rule: skip what the snapshot shows newer, apply the rest
    /// (every field is an absolute value, so applying what it already shows
    /// changes nothing).
    pub fn apply(&mut self, ev: &Value) {
        match ev["e"].as_str().unwrap_or("") {
            "ORDER_TRADE_UPDATE" => {
                let o = &ev["o"];
                let (id, t) = (int(&o["i"]), int(&o["T"]));
                if self.orders.get(&id).is_some_and(|(_, u)| *u > t) {
                    return;
                }
                let status = o["X"].as_str().unwrap();
                if ["FILLED", "CANCELED", "EXPIRED", "EXPIRED_IN_MATCH"].contains(&status) {
                    self.orders.remove(&id);
                } else {
                    self.orders.insert(id, (status.to_owned(), t));
                }
            }
            "ALGO_UPDATE" => {
                let (id, t) = (int(&ev["o"]["aid"]), int(&ev["T"]));
                if self.algos.get(&id).is_some_and(|u| *u > t) {
                    return;
                }
                if ["CANCELED", "FINISHED", "REJECTED", "EXPIRED"]
                    .contains(&ev["o"]["X"].as_str().unwrap())
                {
                    self.algos.remove(&id);
                } else {
                    self.algos.insert(id, t);
                }
            }
            "ACCOUNT_UPDATE" => {
                let t = int(&ev["T"]);
                for b in ev["a"]["B"].as_array().unwrap() {
                    let asset = b["a"].as_str().unwrap().to_owned();
                    if self.balances.get(&asset).is_none_or(|(_, u)| *u <= t) {
                        self.balances.insert(asset, (num(&b["wb"]), t));
                    }
                }
                for p in ev["a"]["P"].as_array().unwrap() {
                    let key = (
                        p["s"].as_str().unwrap().to_owned(),
                        p["ps"].as_str().unwrap().to_owned(),
                    );
                    if self.positions.get(&key).is_some_and(|(_, u)| *u > t) {
                        continue;
                    }
                    let amount = num(&p["pa"]);
                    if amount == 0.0 {
                        self.positions.remove(&key);
                    } else {
                        self.positions.insert(key, (amount, t));
                    }
                }
            }
            _ => {}
        }
    }

    /// What the application can compare: ids, statuses, amounts.
    pub fn state(&self) -> Value {
        json!({
            "orders": self.orders.iter().map(|(k, (s, _))| json!([k, s])).collect::<Vec<_>>(),
            "algos": self.algos.keys().collect::<Vec<_>>(),
            "positions": self.positions.iter().map(|(k, (a, _))| json!([k.0, k.1, format!("{a:.8}")])).collect::<Vec<_>>(),
            "balances": self.balances.iter().map(|(k, (w, _))| json!([k, format!("{w:.8}")])).collect::<Vec<_>>(),
        })
    }
}

/// The exchange's own account state, in `Book::state` form.
pub fn truth(ex: &Exchange, api_key: &str) -> Value {
    let t = ex.control(json!({"cmd": "snapshot", "api_key": api_key}));
    Book::from_parts(
        &t["account"]["assets"],
        &t["positions"],
        &t["open_orders"],
        &t["open_algo_orders"],
    )
    .state()
}
