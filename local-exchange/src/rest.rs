//! The REST API (`rest=` ready line): a small HTTP/1.1 server (keep-alive,
//! `Content-Length` bodies) on its own port, TLS unless `--plain`, serving
//! the account snapshot endpoints and the listenKey endpoints. Requests are
//! parsed with httparse (already in the tree through tungstenite); the
//! endpoints are a handful of small GETs, so no server framework.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_native_tls::TlsAcceptor;

use crate::conn::Io;
use crate::sign::{self, Refusal};
use crate::state::{account_id, server_ms, FaultKind, Scope, Shared, State};
use crate::stream::query_pairs;

const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;
const IDLE: Duration = Duration::from_secs(60);

pub async fn serve(shared: Arc<Shared>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(client(shared.clone(), tcp, tls.clone()));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

struct Answer {
    status: u16,
    body: String,
    retry_after_s: Option<u64>,
}

/// What a request gets, faults applied.
enum Outcome {
    Send(Answer, Duration),
    /// `no_answer`: say nothing more on this connection.
    Silence,
    /// `reset_mid_request`: close the TCP connection.
    Reset,
}

fn answer(status: u16, body: Value) -> Answer {
    Answer {
        status,
        body: body.to_string(),
        retry_after_s: None,
    }
}

fn error(status: u16, code: i64, msg: &str) -> Answer {
    answer(status, json!({"code": code, "msg": msg}))
}

fn refused(r: Refusal) -> Answer {
    error(r.status, r.code, &r.msg)
}

async fn client(shared: Arc<Shared>, tcp: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = tcp.set_nodelay(true);
    let Ok(peer) = tcp.peer_addr() else { return };
    let mut io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(a) => match timeout(Duration::from_secs(10), a.accept(tcp)).await {
            Ok(Ok(s)) => Box::new(s),
            _ => return,
        },
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        // Read one request: the head, then Content-Length bytes of body.
        let (head_len, method, target, api_key, body_len, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let header = |name: &str| {
                        req.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_string())
                    };
                    let len = header("content-length").and_then(|v| v.parse::<usize>().ok());
                    let close = header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
                        || req.version == Some(0);
                    break (
                        n,
                        req.method.unwrap_or("").to_string(),
                        req.path.unwrap_or("/").to_string(),
                        header("x-mbx-apikey"),
                        len.unwrap_or(0),
                        close,
                    );
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                _ => return, // malformed or too long: drop the connection
            }
            let mut chunk = [0u8; 4096];
            match timeout(IDLE, io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        };
        if body_len > MAX_BODY {
            return;
        }
        while buf.len() < head_len + body_len {
            let mut chunk = [0u8; 4096];
            match timeout(IDLE, io.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                _ => return,
            }
        }
        let body = String::from_utf8_lossy(&buf[head_len..head_len + body_len]).into_owned();
        buf.drain(..head_len + body_len);

        let (outcome, used, window) = {
            let mut st = shared.lock();
            let ip = peer.ip();
            let o = with_faults(&mut st, ip, &method, &target, api_key.as_deref(), &body);
            let used = st.weights_used().get(&ip.to_string()).copied();
            (o, used.unwrap_or(0), st.limits.weight_interval().2)
        };
        let a = match outcome {
            Outcome::Send(a, delay) => {
                tokio::time::sleep(delay).await;
                a
            }
            Outcome::Reset => return,
            Outcome::Silence => {
                // Keep the socket open, unanswered, until the peer leaves.
                let mut sink = [0u8; 4096];
                while let Ok(Ok(n)) = timeout(IDLE, io.read(&mut sink)).await {
                    if n == 0 {
                        break;
                    }
                }
                return;
            }
        };
        let reason = match a.status {
            200 => "OK",
            400 => "Bad Request",
            418 => "I'm a teapot",
            401 => "Unauthorized",
            404 => "Not Found",
            405 => "Method Not Allowed",
            429 => "Too Many Requests",
            _ => "Error",
        };
        let retry = a
            .retry_after_s
            .map(|s| format!("Retry-After: {s}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
X-MBX-USED-WEIGHT-{window}: {used}\r\n{retry}Connection: {}\r\n\r\n",
            a.status,
            a.body.len(),
            if close { "close" } else { "keep-alive" }
        );
        let sent = io.write_all(head.as_bytes()).await.is_ok()
            && io.write_all(a.body.as_bytes()).await.is_ok()
            && io.flush().await.is_ok();
        if !sent || close {
            let _ = io.shutdown().await;
            return;
        }
    }
}

const KNOWN: [&str; 28] = [
    "/fapi/v1/time",
    "/fapi/v1/ping",
    "/fapi/v1/listenKey",
    "/fapi/v1/openOrders",
    "/fapi/v1/openAlgoOrders",
    "/fapi/v3/account",
    "/fapi/v2/account",
    "/fapi/v3/positionRisk",
    "/fapi/v3/balance",
    "/fapi/v2/balance",
    // COIN-M (dapi): the same calls, v1.
    "/dapi/v1/time",
    "/dapi/v1/ping",
    "/dapi/v1/listenKey",
    "/dapi/v1/openOrders",
    "/dapi/v1/openAlgoOrders",
    "/dapi/v1/account",
    "/dapi/v1/positionRisk",
    // Portfolio Margin (papi).
    "/papi/v1/ping",
    "/papi/v1/listenKey",
    "/papi/v1/account",
    "/papi/v1/balance",
    "/papi/v1/um/positionRisk",
    "/papi/v1/um/openOrders",
    "/papi/v1/um/algo/openAlgoOrders",
    "/papi/v1/cm/positionRisk",
    "/papi/v1/cm/openOrders",
    "/papi/v1/cm/conditional/openOrders",
    "/papi/v1/margin/openOrders",
];

/// The weight of an endpoint (Binance's documented figures; the papi ones
/// as their pages give them without a symbol).
fn weight(path: &str, has_symbol: bool) -> u64 {
    match path {
        "/fapi/v1/openOrders"
        | "/fapi/v1/openAlgoOrders"
        | "/dapi/v1/openOrders"
        | "/dapi/v1/openAlgoOrders"
        | "/papi/v1/um/openOrders"
        | "/papi/v1/cm/openOrders"
        | "/papi/v1/cm/conditional/openOrders"
            if !has_symbol =>
        {
            40
        }
        "/papi/v1/account" | "/papi/v1/balance" => 20,
        "/fapi/v3/account"
        | "/fapi/v2/account"
        | "/fapi/v3/positionRisk"
        | "/fapi/v3/balance"
        | "/fapi/v2/balance"
        | "/dapi/v1/account"
        | "/papi/v1/um/positionRisk"
        | "/papi/v1/margin/openOrders" => 5,
        _ => 1,
    }
}

/// `/papi/v1/balance` from the futures balance: the UM wallet is the whole
/// wallet (the CM book and cross margin are empty here), in PM's fields.
fn pm_balance(futures: Value) -> Value {
    let list = futures.as_array().cloned().unwrap_or_default();
    let zero = json!("0.00000000");
    Value::Array(
        list.into_iter()
            .map(|b| {
                json!({"asset": b["asset"], "totalWalletBalance": b["balance"],
                    "crossMarginAsset": zero, "crossMarginBorrowed": zero,
                    "crossMarginFree": zero, "crossMarginInterest": zero,
                    "crossMarginLocked": zero, "umWalletBalance": b["balance"],
                    "umUnrealizedPNL": b["crossUnPnl"], "cmWalletBalance": zero,
                    "cmUnrealizedPNL": zero, "updateTime": b["updateTime"],
                    "negativeBalance": zero})
            })
            .collect(),
    )
}

/// The product a REST path belongs to, as `account_id` names it.
fn product_of(path: &str) -> &'static str {
    if path.starts_with("/dapi/") {
        "coinm"
    } else if path.starts_with("/papi/") {
        "pm"
    } else {
        "usdm"
    }
}

/// The request, unless a fault (one naming this endpoint, "GET /fapi/v1/openOrders",
/// or "REST") takes its place: `fail`, `delay`, `no_answer`,
/// `reset_mid_request`, `raw` (the text as a 200 body).
fn with_faults(
    st: &mut State,
    ip: IpAddr,
    method: &str,
    target: &str,
    api_key: Option<&str>,
    body: &str,
) -> Outcome {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if !KNOWN.contains(&path) {
        let a = error(404, -1000, &format!("No such endpoint: {path}"));
        return Outcome::Send(a, Duration::ZERO);
    }
    let has_symbol = query_pairs(query)
        .into_iter()
        .chain(query_pairs(body))
        .any(|(k, _)| k == "symbol");
    // Portfolio Margin's weight is counted apart from fapi/dapi's.
    let pm = product_of(path) == "pm";
    if let Err(r) = st.charge_in(pm, ip, weight(path, has_symbol)) {
        let mut a = error(
            r.status(),
            -1003,
            &r.msg(ip, st.limits.weight.weight_per_window),
        );
        a.retry_after_s = Some(r.retry_at_ms().saturating_sub(server_ms()).div_ceil(1000));
        return Outcome::Send(a, Duration::ZERO);
    }
    *st.stats
        .requests
        .entry(format!("{method} {path}"))
        .or_default() += 1;
    let mut delay = Duration::ZERO;
    let mut fail = None;
    for f in st.take_faults(Some(&format!("{method} {path}")), Scope::Rest) {
        match f {
            FaultKind::Reset => return Outcome::Reset,
            FaultKind::NoAnswer => return Outcome::Silence,
            FaultKind::Delay(ms) => delay = Duration::from_millis(ms),
            FaultKind::Fail {
                status,
                code,
                msg,
                retry_after_ms,
            } => {
                let mut a = error(status, code, &msg);
                a.retry_after_s = retry_after_ms.map(|ms| ms.div_ceil(1000));
                fail = Some(a);
            }
            FaultKind::Raw(text) => {
                fail = Some(Answer {
                    status: 200,
                    body: text,
                    retry_after_s: None,
                })
            }
            FaultKind::Oversize(_)
            | FaultKind::Duplicate
            | FaultKind::Cut
            | FaultKind::Binary(_) => {}
        }
    }
    // As on the WebSocket API: with `fail` or `raw` the request has no effect.
    let a = fail.unwrap_or_else(|| handle(st, method, target, api_key, body));
    Outcome::Send(a, delay)
}

fn handle(st: &mut State, method: &str, target: &str, api_key: Option<&str>, body: &str) -> Answer {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params = query_pairs(query);
    params.extend(query_pairs(body));
    let symbol = params
        .iter()
        .find(|(k, _)| k == "symbol")
        .map(|(_, v)| v.clone());
    match (method, path) {
        ("GET", "/fapi/v1/time" | "/dapi/v1/time") => {
            return answer(200, json!({"serverTime": server_ms()}))
        }
        ("GET", "/fapi/v1/ping" | "/dapi/v1/ping" | "/papi/v1/ping") => {
            return answer(200, json!({}))
        }
        (
            _,
            "/fapi/v1/time" | "/fapi/v1/ping" | "/dapi/v1/time" | "/dapi/v1/ping" | "/papi/v1/ping",
        ) => return error(405, -1000, "Method not allowed."),
        _ => {}
    }
    let product = product_of(path);
    // Every other endpoint needs the API key.
    let Some(api_key) = api_key.filter(|k| !k.is_empty()) else {
        return error(401, -2014, "API-key format invalid.");
    };
    if path.ends_with("/v1/listenKey") {
        // USER_STREAM: the key only, no signature. Portfolio Margin's PUT
        // answers `{}` (its page); fapi's and dapi's name the key.
        let no_key = || error(400, -1125, "This listenKey does not exist.");
        let account = &account_id(api_key, product);
        return match method {
            "POST" => answer(200, json!({"listenKey": st.start_key(account)})),
            "PUT" => st.ping_key(account).map_or_else(no_key, |k| {
                answer(
                    200,
                    if product == "pm" {
                        json!({})
                    } else {
                        json!({"listenKey": k})
                    },
                )
            }),
            "DELETE" => {
                if st.stop_key(account) {
                    answer(200, json!({}))
                } else {
                    no_key()
                }
            }
            _ => error(405, -1000, "Method not allowed."),
        };
    }
    if method != "GET" {
        return error(405, -1000, "Method not allowed.");
    }
    let Some(cred) = st.creds.get(api_key) else {
        return refused(sign::unknown_key());
    };
    // totalParams: the query string, then the body, as sent, without `signature`.
    let unsigned = |s: &str| -> String {
        s.split('&')
            .filter(|kv| !kv.is_empty() && !kv.starts_with("signature="))
            .collect::<Vec<_>>()
            .join("&")
    };
    let payload = unsigned(query) + &unsigned(body);
    let signature = params
        .iter()
        .find(|(k, _)| k == "signature")
        .map(|(_, v)| v.as_str());
    if let Err(r) = sign::check(cred, &params, payload.as_bytes(), signature) {
        return refused(r);
    }
    let book = st.books.entry(account_id(api_key, product)).or_default();
    let sym = symbol.as_deref();
    let v = match path {
        "/fapi/v1/openOrders" | "/dapi/v1/openOrders" | "/papi/v1/um/openOrders" => {
            book.open_orders(sym)
        }
        "/fapi/v1/openAlgoOrders"
        | "/dapi/v1/openAlgoOrders"
        | "/papi/v1/um/algo/openAlgoOrders" => book.open_algo_orders(sym),
        "/fapi/v3/account" | "/dapi/v1/account" => book.account(false),
        "/fapi/v2/account" => book.account(true),
        "/fapi/v3/positionRisk" | "/dapi/v1/positionRisk" | "/papi/v1/um/positionRisk" => {
            book.position_risk(sym, false)
        }
        // A PM account's one book is its UM book: the futures account's
        // totals stand for PM's account document; its CM book and margin
        // orders are empty here (docs/local-exchange.md).
        "/papi/v1/account" => {
            let mut a = book.account(false);
            if let Some(o) = a.as_object_mut() {
                o.remove("assets");
                o.remove("positions");
                o.insert("accountStatus".into(), json!("NORMAL"));
            }
            a
        }
        "/papi/v1/cm/positionRisk"
        | "/papi/v1/cm/openOrders"
        | "/papi/v1/cm/conditional/openOrders"
        | "/papi/v1/margin/openOrders" => json!([]),
        "/papi/v1/balance" => pm_balance(book.balance()),
        _ => book.balance(),
    };
    answer(200, v)
}
