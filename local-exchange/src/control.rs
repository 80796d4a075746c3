//! The control port: one JSON command per line in, one JSON line out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::account::{Dec, Event, NewAlgo, NewOrder};
use crate::events;
use crate::sign::Cred;
use crate::state::{
    account_id, key_hash, short, Fault, FaultKind, Frame, Kind, Out, Shared, Switches, Target,
};

/// A longer line is cut there (and then fails to parse).
const MAX_LINE: u64 = 1 << 20;

pub async fn serve(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(client(shared.clone(), tcp));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn client(shared: Arc<Shared>, tcp: TcpStream) {
    let (r, mut w) = tcp.into_split();
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) if line.trim_ascii().is_empty() => continue,
            Ok(_) => {}
        }
        let answer = match serde_json::from_slice::<Value>(&line) {
            Ok(cmd) => command(&shared, &cmd).await,
            Err(e) => json!({"ok": false, "error": format!("not JSON: {e}")}),
        };
        if w.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Runs one command; the answer always has `ok`.
pub async fn command(shared: &Arc<Shared>, cmd: &Value) -> Value {
    match run(shared, cmd).await {
        Ok(Value::Object(mut m)) => {
            m.insert("ok".into(), true.into());
            Value::Object(m)
        }
        Ok(_) => json!({"ok": true}),
        Err(e) => json!({"ok": false, "error": e}),
    }
}

fn opt_u64(cmd: &Value, name: &str) -> Result<Option<u64>, String> {
    match cmd.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or(format!("'{name}' must be a non-negative integer")),
    }
}

fn need_u64(cmd: &Value, name: &str) -> Result<u64, String> {
    opt_u64(cmd, name)?.ok_or(format!("'{name}' is required"))
}

fn opt_str<'a>(cmd: &'a Value, name: &str) -> Result<Option<&'a str>, String> {
    match cmd.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_str()
            .map(Some)
            .ok_or(format!("'{name}' must be a string")),
    }
}

/// Bytes given as hex ("ff00"), for frames that are not valid UTF-8.
fn opt_hex(cmd: &Value, name: &str) -> Result<Option<Vec<u8>>, String> {
    let Some(h) = opt_str(cmd, name)? else {
        return Ok(None);
    };
    let bad = || format!("'{name}' must be hex digits, two per byte");
    if h.len() % 2 != 0 {
        return Err(bad());
    }
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(h.get(i..i + 2).ok_or_else(bad)?, 16).map_err(|_| bad()))
        .collect::<Result<Vec<u8>, String>>()
        .map(Some)
}

fn need_str<'a>(cmd: &'a Value, name: &str) -> Result<&'a str, String> {
    opt_str(cmd, name)?.ok_or(format!("'{name}' is required"))
}

/// A decimal given as a string ("0.001"), as Binance writes them.
fn opt_dec(cmd: &Value, name: &str) -> Result<Option<Dec>, String> {
    opt_str(cmd, name)?
        .map(|s| Dec::parse(s).ok_or(format!("'{name}' is not a decimal (\"0.001\"): {s}")))
        .transpose()
}

fn opt_bool(cmd: &Value, name: &str, default: bool) -> Result<bool, String> {
    match cmd.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v.as_bool().ok_or(format!("'{name}' must be a boolean")),
    }
}

/// The account `api_key` names on `product` ("usdm" when absent, "coinm",
/// "pm"): see `state::account_id`.
fn account_of(cmd: &Value) -> Result<Option<String>, String> {
    let product = match opt_str(cmd, "product")? {
        None => "usdm",
        Some(p @ ("usdm" | "coinm" | "pm")) => p,
        Some(p) => return Err(format!("'product' must be usdm, coinm or pm, not {p}")),
    };
    Ok(opt_str(cmd, "api_key")?.map(|k| account_id(k, product)))
}

fn need_account(cmd: &Value) -> Result<String, String> {
    account_of(cmd)?.ok_or_else(|| "'api_key' is required".into())
}

/// The account commands: change the book, emit its events, answer their `E`s.
fn trade(shared: &Shared, name: &str, cmd: &Value) -> Result<Value, String> {
    let key = &need_account(cmd)?;
    let side = || -> Result<String, String> {
        match need_str(cmd, "side")? {
            s @ ("BUY" | "SELL") => Ok(s.to_string()),
            s => Err(format!("'side' must be BUY or SELL, not {s}")),
        }
    };
    let positive = |name: &str| -> Result<Dec, String> {
        opt_dec(cmd, name)?
            .filter(|d| d.signum() > 0)
            .ok_or(format!("'{name}' is required, above 0"))
    };
    let t = crate::state::now_ms();
    let mut st = shared.lock();
    let id = st.next_id();
    let book = st.books.entry(key.to_string()).or_default();
    let mut extra = json!({});
    let events: Vec<Event> = match name {
        "deposit" => {
            let amount = opt_dec(cmd, "amount")?.ok_or("'amount' is required")?;
            book.deposit(opt_str(cmd, "asset")?.unwrap_or("USDT"), amount, t)
        }
        "order_place" => {
            let typ = opt_str(cmd, "type")?.unwrap_or("LIMIT").to_string();
            let price = match typ.as_str() {
                "MARKET" => opt_dec(cmd, "price")?.unwrap_or(Dec::ZERO),
                _ => positive("price")?,
            };
            let n = NewOrder {
                client_id: opt_str(cmd, "client_order_id")?.map(String::from),
                symbol: opt_str(cmd, "symbol")?.unwrap_or("BTCUSDT").to_string(),
                side: side()?,
                tif: opt_str(cmd, "time_in_force")?.unwrap_or("GTC").to_string(),
                typ,
                qty: positive("quantity")?,
                price,
                stop_price: opt_dec(cmd, "stop_price")?.unwrap_or(Dec::ZERO),
                reduce_only: opt_bool(cmd, "reduce_only", false)?,
            };
            let (oid, ev) = book.place(n, id, t);
            extra["order_id"] = oid.into();
            ev
        }
        "order_amend" => {
            let oid = need_u64(cmd, "order_id")?;
            book.amend(oid, opt_dec(cmd, "quantity")?, opt_dec(cmd, "price")?, t)?
        }
        "order_fill" => {
            let oid = need_u64(cmd, "order_id")?;
            let maker = opt_bool(cmd, "maker", true)?;
            let ev = book.fill(
                oid,
                opt_dec(cmd, "quantity")?,
                opt_dec(cmd, "price")?,
                maker,
                id,
                t,
            )?;
            extra["trade_id"] = id.into();
            ev
        }
        "order_cancel" => book.cancel(need_u64(cmd, "order_id")?, t)?,
        "algo_place" => {
            let n = NewAlgo {
                client_id: opt_str(cmd, "client_algo_id")?.map(String::from),
                symbol: opt_str(cmd, "symbol")?.unwrap_or("BTCUSDT").to_string(),
                side: side()?,
                order_type: opt_str(cmd, "type")?.unwrap_or("STOP_MARKET").to_string(),
                tif: opt_str(cmd, "time_in_force")?.unwrap_or("GTC").to_string(),
                qty: positive("quantity")?,
                trigger_price: positive("trigger_price")?,
                price: opt_dec(cmd, "price")?.unwrap_or(Dec::ZERO),
                reduce_only: opt_bool(cmd, "reduce_only", false)?,
            };
            let (aid, ev) = book.algo_place(n, id, t);
            extra["algo_id"] = aid.into();
            ev
        }
        "algo_trigger" => {
            let ev = book.algo_trigger(need_u64(cmd, "algo_id")?, id, t)?;
            extra["order_id"] = id.into();
            ev
        }
        _ => book.algo_cancel(need_u64(cmd, "algo_id")?, t)?,
    };
    let es = st.emit_all(key, events);
    extra["E"] = json!(es);
    extra["T"] = t.into();
    Ok(extra)
}

fn enabled(cmd: &Value) -> Result<bool, String> {
    match cmd.get("enabled") {
        None | Some(Value::Null) => Ok(true),
        Some(v) => v.as_bool().ok_or("'enabled' must be a boolean".into()),
    }
}

async fn run(shared: &Arc<Shared>, cmd: &Value) -> Result<Value, String> {
    let name = opt_str(cmd, "cmd")?.ok_or("missing string field 'cmd'")?;
    let count = match cmd.get("count") {
        None | Some(Value::Null) => 1,
        Some(v) => v.as_i64().ok_or("'count' must be an integer")?,
    };
    let method = opt_str(cmd, "method")?.map(String::from);
    let target = Target::parse(opt_str(cmd, "target")?)?;
    // `id`: one connection (from `stream_connections`) instead of all of the target.
    let id = opt_u64(cmd, "id")?;
    let fault = |kind| {
        shared.lock().faults.push(Fault {
            kind,
            left: count,
            method: method.clone(),
        });
        Ok(json!({}))
    };
    let switch = |f: &dyn Fn(&mut Switches)| {
        f(&mut shared.lock().sw);
        Ok(json!({}))
    };
    match name {
        "stats" => {
            let st = shared.lock();
            let mut v = st.stats.to_json();
            v["weight_used"] = json!(st.weights_used());
            v["ips"] = st.ips_json();
            Ok(v)
        }
        "stream_connections" => {
            let st = shared.lock();
            let mut conns: Vec<(&u64, &crate::state::Conn)> = st.conns.iter().collect();
            conns.sort_by_key(|(id, _)| **id);
            let list: Vec<Value> = conns
                .into_iter()
                .filter_map(|(id, c)| {
                    let s = c.stream.as_ref()?;
                    let keys: Vec<&str> = s.subs.iter().map(|x| x.name.as_str()).collect();
                    let events: Vec<&Option<Vec<String>>> =
                        s.subs.iter().map(|x| &x.events).collect();
                    Some(json!({"id": id, "path": c.path, "form": s.form.name(),
                        "combined": s.combined, "keys": keys, "events": events,
                        "ip": c.ip.to_string(), "opened_ms": c.opened_ms}))
                })
                .collect();
            Ok(json!({"connections": list,
                "path_form_connects": st.stats.path_form_connects,
                "legacy_connects": st.stats.legacy_connects}))
        }
        "server_shutdown" => {
            let after = Duration::from_millis(opt_u64(cmd, "close_after_ms")?.unwrap_or(10_000));
            let n = each(shared, target, id, |c| {
                c.tx.send(Out::Shutdown(after)).is_ok()
            })?;
            Ok(json!({ "connections": n }))
        }
        "fail" => {
            let status = opt_u64(cmd, "status")?.unwrap_or(400);
            let status = u16::try_from(status).map_err(|_| "'status' out of range")?;
            let code = match cmd.get("code") {
                None | Some(Value::Null) => -1000,
                Some(v) => v.as_i64().ok_or("'code' must be an integer")?,
            };
            let msg = opt_str(cmd, "msg")?
                .unwrap_or("An unknown error occured while processing the request.");
            let retry_after_ms = opt_u64(cmd, "retry_after_ms")?;
            fault(FaultKind::Fail {
                status,
                code,
                msg: msg.into(),
                retry_after_ms,
            })
        }
        "delay" => fault(FaultKind::Delay(need_u64(cmd, "ms")?)),
        "no_answer" => fault(FaultKind::NoAnswer),
        "raw" => fault(FaultKind::Raw(
            opt_str(cmd, "text")?.ok_or("'text' is required")?.into(),
        )),
        "oversize" => fault(FaultKind::Oversize(need_u64(cmd, "bytes")? as usize)),
        "duplicate" => fault(FaultKind::Duplicate),
        "cut" => fault(FaultKind::Cut),
        "binary" => fault(FaultKind::Binary(opt_hex(cmd, "hex")?)),
        "reset_mid_request" => fault(FaultKind::Reset),
        "shuffle" => {
            let us = need_u64(cmd, "max_delay_us")?;
            switch(&|sw| sw.shuffle_max_us = us)
        }
        "spam" => {
            let n = u64::try_from(count).map_err(|_| "'count' must be >= 0")?;
            switch(&|sw| sw.spam = n)
        }
        "ping_first" => {
            let on = enabled(cmd)?;
            switch(&|sw| sw.ping_first = on)
        }
        "silent" => {
            let on = enabled(cmd)?;
            switch(&|sw| sw.silent = on)
        }
        "refuse" => {
            let on = enabled(cmd)?;
            let (api, stream) = (target.has(Kind::Api), target.has(Kind::Stream));
            switch(&|sw| {
                sw.refuse_api = if api { on } else { sw.refuse_api };
                sw.refuse_stream = if stream { on } else { sw.refuse_stream };
            })
        }
        "ping_flood" => {
            let n = u64::try_from(count).map_err(|_| "'count' must be >= 0")?;
            let n = each(shared, Target::Api, None, |c| {
                c.tx.send(Out::Pings(n)).is_ok()
            })?;
            Ok(json!({ "connections": n }))
        }
        "revoke" => {
            let key = opt_str(cmd, "api_key")?;
            let hit = |c: &crate::state::Conn| key.is_none_or(|k| c.api_keys.contains(k));
            let n = each(shared, Target::Api, None, |c| {
                hit(c) && c.tx.send(Out::Revoke).is_ok()
            })?;
            Ok(json!({ "connections": n }))
        }
        "drop" => {
            let n = each(shared, target, id, |c| {
                c.kill.notify_one();
                true
            })?;
            Ok(json!({ "connections": n }))
        }
        "close" => {
            let code = opt_u64(cmd, "code")?.unwrap_or(1001);
            // Codes a peer may legally receive (RFC 6455 §7.4).
            if !(1000..=4999).contains(&code) || [1004, 1005, 1006, 1015].contains(&code) {
                return Err(format!("close code {code} cannot be sent"));
            }
            let reason = opt_str(cmd, "reason")?.unwrap_or("going away");
            if reason.len() > 123 {
                return Err("'reason' is longer than 123 bytes".into());
            }
            let out =
                |c: &crate::state::Conn| c.tx.send(Out::Close(code as u16, reason.into())).is_ok();
            Ok(json!({"connections": each(shared, target, id, out)?}))
        }
        "emit" => emit(shared, cmd, count).await,
        "expire" => {
            let key = &need_account(cmd)?;
            match shared.lock().expire(key) {
                true => Ok(json!({})),
                false => Err(format!("account {} has no active listenKey", short(key))),
            }
        }
        "keys" => {
            let mut st = shared.lock();
            st.sweep(Instant::now());
            let now = Instant::now();
            let keys: Vec<Value> = (st.accounts.iter())
                .filter_map(|(k, a)| {
                    let lk = a.listen_key.as_ref()?;
                    Some(json!({"api_key_hash": key_hash(k), "listen_key": lk,
                        "expires_in_ms": a.expires.saturating_duration_since(now).as_millis() as u64,
                        "last_E": a.last_e}))
                })
                .collect();
            Ok(json!({ "keys": keys }))
        }
        "set" => {
            let mut st = shared.lock();
            let st = &mut *st;
            let (t, l) = (&mut st.timings, &mut st.limits);
            for (field, slot) in [
                ("key_lifetime_ms", &mut t.key_lifetime_ms),
                ("ping_interval_ms", &mut t.ping_interval_ms),
                ("api_lifetime_ms", &mut t.api_lifetime_ms),
                ("stream_lifetime_ms", &mut t.stream_lifetime_ms),
                ("stream_max_msgs_per_sec", &mut l.stream_max_msgs_per_sec),
                ("stream_max_streams", &mut l.stream_max_streams),
                ("api_weight_per_min", &mut l.weight.weight_per_window),
                ("weight_window_ms", &mut l.weight.window_ms),
                ("ban_after", &mut l.weight.ban_after),
                ("ban_first_ms", &mut l.weight.ban_first_ms),
                ("ban_max_ms", &mut l.weight.ban_max_ms),
                ("stream_connects_per_5min", &mut l.stream_connects_per_5min),
            ] {
                if let Some(v) = opt_u64(cmd, field)? {
                    *slot = v;
                }
            }
            match cmd.get("clock_offset_ms") {
                None | Some(Value::Null) => {}
                Some(v) => {
                    let ms = v.as_i64().ok_or("'clock_offset_ms' must be an integer")?;
                    crate::state::CLOCK_OFFSET_MS.store(ms, std::sync::atomic::Ordering::Relaxed);
                }
            }
            Ok(json!({}))
        }
        "unban" => {
            shared.lock().unban();
            Ok(json!({}))
        }
        "reset" => {
            let mut st = shared.lock();
            st.faults.clear();
            st.sw = Switches::default();
            Ok(json!({}))
        }
        "account" => {
            let key = need_str(cmd, "api_key")?;
            let cred = match (opt_str(cmd, "secret")?, opt_str(cmd, "ed25519_pem")?) {
                (Some(s), None) => Cred::Hmac(s.as_bytes().to_vec()),
                (None, Some(pem)) => Cred::ed25519(pem.as_bytes())?,
                _ => return Err("give exactly one of 'secret' and 'ed25519_pem'".into()),
            };
            let mut st = shared.lock();
            st.creds.insert(key.to_string(), cred);
            st.books.entry(need_account(cmd)?).or_default();
            Ok(json!({}))
        }
        "deposit" | "order_place" | "order_amend" | "order_fill" | "order_cancel"
        | "algo_place" | "algo_cancel" | "algo_trigger" => trade(shared, name, cmd),
        "snapshot" => {
            let key = &need_account(cmd)?;
            let mut st = shared.lock();
            let b = st.books.entry(key.to_string()).or_default();
            Ok(
                json!({"server_time": crate::state::now_ms(), "account": b.account(false),
                "balance": b.balance(), "positions": b.position_risk(None, false),
                "open_orders": b.open_orders(None), "open_algo_orders": b.open_algo_orders(None)}),
            )
        }
        other => Err(format!("unknown cmd {other}")),
    }
}

/// Applies `f` to every open connection of the target (or to connection
/// `id` only); returns how many it took. An `id` that is not open is an error.
fn each(
    shared: &Shared,
    target: Target,
    id: Option<u64>,
    mut f: impl FnMut(&crate::state::Conn) -> bool,
) -> Result<u64, String> {
    let st = shared.lock();
    if let Some(id) = id {
        let c = st
            .conns
            .get(&id)
            .ok_or(format!("no open connection {id}"))?;
        return Ok(f(c) as u64);
    }
    Ok(st
        .conns
        .values()
        .filter(|c| target.has(c.kind))
        .map(|c| f(c) as u64)
        .sum())
}

/// Paces to `at` more finely than the timer wheel's 1 ms: sleep most of the
/// way, then yield until the instant.
async fn pace(at: Instant) {
    loop {
        let now = Instant::now();
        if now >= at {
            return;
        }
        match at - now {
            left if left > Duration::from_millis(2) => {
                tokio::time::sleep(left - Duration::from_millis(1)).await
            }
            _ => tokio::task::yield_now().await,
        }
    }
}

async fn emit(shared: &Shared, cmd: &Value, count: i64) -> Result<Value, String> {
    let n = u64::try_from(count).map_err(|_| "'count' must be >= 0")?;
    let typ = opt_str(cmd, "type")?
        .unwrap_or("ORDER_TRADE_UPDATE")
        .to_string();
    let interval_us = opt_u64(cmd, "interval_us")?.unwrap_or(0);
    let api_key = account_of(cmd)?;
    // `raw`: a string is sent as is, other JSON as serialized; `{E}` becomes the event time.
    let raw = match cmd.get("raw") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(v) => Some(v.to_string()),
    };
    let make = |e: u64| match &raw {
        Some(r) => r.replace("{E}", &e.to_string()),
        None => events::render(&typ, e),
    };
    let frame = match (
        opt_hex(cmd, "hex")?,
        cmd.get("binary").and_then(Value::as_bool),
    ) {
        (Some(b), _) => Frame::Bytes(b),
        (None, Some(true)) => Frame::Binary,
        _ => Frame::Text,
    };
    let stream_name = opt_str(cmd, "stream")?.map(str::to_owned);
    let (mut first, mut last, mut emitted, mut delivered) = (None::<u64>, None::<u64>, 0u64, 0u64);
    let start = Instant::now();
    for i in 0..n {
        if interval_us > 0 && i > 0 {
            pace(start + Duration::from_micros(interval_us.saturating_mul(i))).await;
        }
        let mut st = shared.lock();
        let accounts: Vec<String> = match &api_key {
            Some(k) => vec![k.clone()],
            None => {
                let now = Instant::now();
                let active = st
                    .accounts
                    .iter()
                    .filter(|(_, a)| a.listen_key.is_some() && a.expires > now);
                active.map(|(k, _)| k.clone()).collect()
            }
        };
        st.stream_name_override = stream_name.clone();
        for k in accounts {
            let (e, d) = st.emit_framed(&k, &make, &frame);
            first = Some(first.map_or(e, |f| f.min(e)));
            last = Some(last.map_or(e, |l| l.max(e)));
            emitted += 1;
            delivered += d;
        }
        st.stream_name_override = None;
    }
    Ok(json!({"emitted": emitted, "delivered": delivered, "first_E": first, "last_E": last}))
}
