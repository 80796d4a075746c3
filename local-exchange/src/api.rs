//! WebSocket API requests: validation, `userDataStream.start|ping|stop`, and
//! the faults that change an answer (see "Control" in docs/local-exchange.md).

use std::net::IpAddr;
use std::time::Duration;

use serde_json::Value;

use crate::sign;
use crate::state::{account_id, FaultKind, Reply, Scope, Shared, State};

const START: &str = "userDataStream.start";
const PING: &str = "userDataStream.ping";
const STOP: &str = "userDataStream.stop";

/// Per-connection request bookkeeping.
pub struct ApiConn {
    pub id: u64,
    /// Default for `rateLimits` in answers (`?returnRateLimits=false` turns it off).
    pub rate_limits: bool,
    /// Request weight is counted per IP, shared by its connections.
    pub ip: IpAddr,
    /// "usdm" (`/ws-fapi/v1`) or "coinm" (`/ws-dapi/v1`): whose listenKey
    /// and book the key's requests address.
    pub product: &'static str,
}

impl ApiConn {
    pub fn new(id: u64, rate_limits: bool, ip: IpAddr, product: &'static str) -> Self {
        ApiConn {
            id,
            rate_limits,
            ip,
            product,
        }
    }
}

/// The signed account methods (v1 and `v2/` shapes), weight 5 each.
const ACCOUNT_METHODS: [&str; 6] = [
    "account.status",
    "v2/account.status",
    "account.balance",
    "v2/account.balance",
    "account.position",
    "v2/account.position",
];

/// Request weight: 5 for the account methods, 1 for the rest
/// (`userDataStream.*` are documented at 1; other and malformed requests
/// are assumed to cost 1).
fn weight(method: Option<&str>) -> u64 {
    match method {
        Some(m) if ACCOUNT_METHODS.contains(&m) => 5,
        _ => 1,
    }
}

pub enum Action {
    Nothing,
    /// Close the TCP connection without a close frame.
    Reset,
    Send(Reply, Duration),
}

struct ApiError {
    status: u16,
    code: i64,
    msg: String,
    data: Option<String>,
}

fn err(status: u16, code: i64, msg: &str) -> ApiError {
    ApiError {
        status,
        code,
        msg: msg.to_string(),
        data: None,
    }
}

pub fn handle(shared: &Shared, c: &mut ApiConn, text: &str) -> Action {
    let now = crate::state::now_ms();
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let obj = parsed.as_ref().and_then(Value::as_object);
    let id = obj
        .and_then(|o| o.get("id"))
        .unwrap_or(&Value::Null)
        .to_string();
    let method = obj.and_then(|o| o.get("method")).and_then(Value::as_str);
    let params = obj.and_then(|o| o.get("params"));
    let want_rl = params
        .and_then(|p| p.get("returnRateLimits"))
        .and_then(Value::as_bool);

    let mut st = shared.lock();
    let charged = st.charge(c.ip, weight(method));
    let limit = st.limits.weight.weight_per_window;
    let (interval, interval_num, _) = st.limits.weight_interval();
    let count = match charged {
        Ok(n) => n,
        Err(r) => r.used(),
    };
    let rl = if want_rl.unwrap_or(c.rate_limits) {
        format!(
            r#","rateLimits":[{{"rateLimitType":"REQUEST_WEIGHT","interval":"{interval}","intervalNum":{interval_num},"limit":{limit},"count":{count}}}]"#,
        )
    } else {
        String::new()
    };
    if let Some(m) = method {
        *st.stats.requests.entry(m.to_string()).or_default() += 1;
    }
    let (mut fail, mut raw, mut oversize, mut delay_ms) = (None, None, None, 0);
    let (mut duplicate, mut cut, mut binary, mut bytes) = (false, false, false, None);
    if let Err(r) = charged {
        // Past the IP's weight (429) or banned (418): Binance's -1003, the
        // retry time as Spot's WS API gives it.
        fail = Some(ApiError {
            status: r.status(),
            code: -1003,
            msg: r.msg(c.ip, limit),
            data: Some(format!(
                r#"{{"serverTime":{},"retryAfter":{}}}"#,
                crate::state::server_ms(),
                r.retry_at_ms()
            )),
        });
    }
    let faults = if charged.is_ok() {
        st.take_faults(method, Scope::Api)
    } else {
        Vec::new()
    };
    for f in faults {
        match f {
            FaultKind::Reset => return Action::Reset,
            FaultKind::NoAnswer => return Action::Nothing,
            FaultKind::Fail {
                status,
                code,
                msg,
                retry_after_ms,
            } => {
                let data = retry_after_ms
                    .map(|r| format!(r#"{{"serverTime":{now},"retryAfter":{}}}"#, now + r));
                fail = Some(ApiError {
                    status,
                    code,
                    msg,
                    data,
                });
            }
            FaultKind::Raw(t) => raw = Some(t),
            FaultKind::Oversize(n) => oversize = Some(n),
            FaultKind::Delay(ms) => delay_ms = ms,
            FaultKind::Duplicate => duplicate = true,
            FaultKind::Cut => cut = true,
            FaultKind::Binary(b) => (binary, bytes) = (true, b),
        }
    }

    let mut answer = match raw {
        Some(raw) => raw.replace("{id}", &id),
        None => match fail.map_or_else(|| execute(&mut st, c.id, c.product, method, params), Err) {
            Ok(result) => format!(r#"{{"id":{id},"status":200,"result":{result}{rl}}}"#),
            Err(e) => {
                let data = e
                    .data
                    .map(|d| format!(r#","data":{d}"#))
                    .unwrap_or_default();
                let msg = Value::from(e.msg);
                format!(
                    r#"{{"id":{id},"status":{},"error":{{"code":{},"msg":{msg}{data}}}{rl}}}"#,
                    e.status, e.code
                )
            }
        },
    };
    if let Some(n) = oversize {
        // A padding field keeps the answer valid JSON; 9 = len(`,"pad":""`).
        if let Some(head) = answer.strip_suffix('}').filter(|_| n > answer.len() + 9) {
            answer = format!(r#"{head},"pad":"{}"}}"#, "x".repeat(n - answer.len() - 9));
        }
    }
    let mut delay = Duration::from_millis(delay_ms);
    if st.sw.shuffle_max_us > 0 {
        delay += Duration::from_micros(st.rand() % (st.sw.shuffle_max_us + 1));
    }
    let spam = (0..st.sw.spam)
        .map(|i| match i % 2 {
            0 => format!(
                r#"{{"id":"spam-{:016x}","status":200,"result":{{}}}}"#,
                st.rand()
            ),
            _ => format!(r#"{{"e":"spam","E":{now}}}"#),
        })
        .collect();
    drop(st);
    if method == Some(START) {
        shared.sweep.notify_one(); // a new key may lapse before the sweeper's next deadline
    }
    Action::Send(
        Reply {
            text: answer,
            spam,
            duplicate,
            cut,
            binary,
            bytes,
        },
        delay,
    )
}

/// Runs a valid request; `Ok` is the `result` JSON.
fn execute(
    st: &mut State,
    conn: u64,
    product: &str,
    method: Option<&str>,
    params: Option<&Value>,
) -> Result<String, ApiError> {
    let Some(method) = method else {
        return Err(err(
            400,
            -1013,
            "Malformed request: expected a JSON object with a string 'method'.",
        ));
    };
    if ACCOUNT_METHODS.contains(&method) {
        return account(st, product, method, params);
    }
    if ![START, PING, STOP].contains(&method) {
        return Err(err(400, -1020, "This operation is not supported."));
    }
    let api_key = match params.and_then(|p| p.get("apiKey")) {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        _ => {
            let msg = "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.";
            return Err(err(400, -1102, msg));
        }
    };
    if api_key.len() > 128 || !api_key.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(err(401, -2014, "API-key format invalid."));
    }
    if let Some(conn) = st
        .conns
        .get_mut(&conn)
        .filter(|c| !c.api_keys.contains(api_key))
    {
        conn.api_keys.insert(api_key.to_string());
    }
    let no_key = || err(400, -1125, "This listenKey does not exist.");
    let api_key = &account_id(api_key, product);
    match method {
        START => Ok(format!(r#"{{"listenKey":"{}"}}"#, st.start_key(api_key))),
        PING => st
            .ping_key(api_key)
            .map(|k| format!(r#"{{"listenKey":"{k}"}}"#))
            .ok_or_else(no_key),
        _ => st
            .stop_key(api_key)
            .then(|| "{}".to_string())
            .ok_or_else(no_key),
    }
}

/// A signed account method: params `apiKey`, `timestamp`, optional
/// `recvWindow`, `signature` over the other params sorted by name
/// (`k=v&...`, values as sent: strings bare, numbers as JSON).
fn account(
    st: &mut State,
    product: &str,
    method: &str,
    params: Option<&Value>,
) -> Result<String, ApiError> {
    let Some(p) = params.and_then(Value::as_object) else {
        let msg = "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.";
        return Err(err(400, -1102, msg));
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut pairs: Vec<(String, String)> = p
        .iter()
        .filter(|(k, _)| k.as_str() != "signature" && k.as_str() != "returnRateLimits")
        .map(|(k, v)| (k.clone(), text(v)))
        .collect();
    pairs.sort();
    let api_key = match p.get("apiKey") {
        Some(Value::String(k)) if !k.is_empty() => k.clone(),
        _ => {
            let msg = "Mandatory parameter 'apiKey' was not sent, was empty/null, or malformed.";
            return Err(err(400, -1102, msg));
        }
    };
    let refused = |r: sign::Refusal| ApiError {
        status: r.status,
        code: r.code,
        msg: r.msg,
        data: None,
    };
    let cred = st
        .creds
        .get(&api_key)
        .ok_or_else(|| refused(sign::unknown_key()))?;
    let payload = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let signature = p.get("signature").and_then(Value::as_str);
    sign::check(cred, &pairs, payload.as_bytes(), signature).map_err(refused)?;
    let symbol = p.get("symbol").and_then(Value::as_str);
    let book = st.books.entry(account_id(&api_key, product)).or_default();
    let v = match method {
        "account.status" => book.account(true),
        "v2/account.status" => book.account(false),
        "account.balance" | "v2/account.balance" => book.balance(),
        "account.position" => book.position_risk(symbol, true),
        _ => book.position_risk(symbol, false),
    };
    Ok(v.to_string())
}
