//! Signed REST and the account snapshot, against a scripted HTTP server on
//! loopback: the document's shape, Binance's signature and headers, the
//! kept-alive connection, and every error path (429/418 with Retry-After,
//! -1021 then a clock resync, -1022, bodies that are not JSON, a silent
//! server, the request weight, calls that coalesce).

mod common;

use binance_uds::engine::{Client, Config, Status};
use common::http::{Request, Response, Server};
use ed25519_dalek::Verifier;
use hmac::Mac;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const API_KEY: &str = "RESTKEYabcdef0123456789";
const SECRET: &str = "RESTSECRETxyz9876543210";
/// The server's clock runs this far ahead of ours.
const SKEW_MS: i64 = 3_600_000;

use common::http::now_ms;

fn binance(r: &Request) -> Response {
    common::http::binance_answer(r, SKEW_MS)
}

fn config(server: &Server) -> Config {
    let mut c = Config::default();
    c.set_api_key(API_KEY).unwrap();
    c.set_secret_key(SECRET).unwrap();
    c.set_rest_endpoint(&server.url()).unwrap();
    c.set_timeouts_ms(2000, 2000).unwrap();
    c
}

const SIGNED: [&str; 4] = [
    "/fapi/v3/account",
    "/fapi/v3/positionRisk",
    "/fapi/v1/openOrders",
    "/fapi/v1/openAlgoOrders",
];

/// The signed payload (the query without `&signature=...`) and the signature.
fn split_signature(r: &Request) -> (&str, &str) {
    r.query
        .rsplit_once("&signature=")
        .unwrap_or_else(|| panic!("{} has no signature: {}", r.path, r.query))
}

#[test]
fn snapshot_is_one_document_signed_with_hmac_on_one_connection() {
    let server = Server::start(|r| Some(binance(r)));
    let client = Client::new(&config(&server)).unwrap();
    let before = now_ms() + SKEW_MS;
    let text = client.account_snapshot().unwrap();
    let after = now_ms() + SKEW_MS;
    let doc: Value = serde_json::from_str(&text).unwrap();

    assert_eq!(doc["e"], "binance.account_snapshot");
    assert_eq!(doc["balances"][0]["asset"], "USDT");
    assert_eq!(doc["account"]["totalWalletBalance"], "100.0");
    assert!(doc["account"].get("assets").is_none() && doc["account"].get("positions").is_none());
    assert_eq!(doc["positions"][0]["entryPrice"], "60000.0");
    assert_eq!(doc["open_orders"][0]["orderId"], 7);
    assert_eq!(doc["open_algo_orders"][0]["algoId"], 9);
    // Times are on the server's clock, an hour ahead of ours.
    let server_time = doc["server_time_ms"].as_i64().unwrap();
    let done = doc["E"].as_i64().unwrap();
    let requested = doc["requested_ms"].as_i64().unwrap();
    assert!(
        before - 1000 <= requested && requested <= server_time,
        "{doc}"
    );
    assert!(
        before - 1000 <= server_time && server_time <= done && done <= after + 1000,
        "{doc}"
    );

    let requests = server.requests();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths[0], "/fapi/v1/time");
    assert_eq!(&paths[1..], SIGNED);
    assert_eq!(server.connections(), 1, "one kept-alive connection");
    for r in &requests {
        assert_eq!(r.header("x-mbx-apikey"), Some(API_KEY), "{}", r.path);
        assert_eq!(r.header("host"), Some(server.addr.to_string().as_str()));
    }
    for r in &requests[1..] {
        let (payload, signature) = split_signature(r);
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(payload.as_bytes());
        let want = data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes());
        assert_eq!(signature, want, "{}", r.path);
        assert_eq!(r.param("recvWindow"), Some("5000"));
        // Signed on the server's clock.
        let ts: i64 = r.param("timestamp").unwrap().parse().unwrap();
        assert!((ts - server_time).abs() < 5000, "{} timestamp {ts}", r.path);
    }

    // A second snapshot reuses the connection.
    client.account_snapshot().unwrap();
    assert_eq!(server.connections(), 1);
}

#[test]
fn ed25519_signatures_verify_with_the_public_key() {
    let (pem, verifying) = common::cert::ed25519_key();
    let server = Server::start(|r| Some(binance(r)));
    let mut cfg = config(&server);
    cfg.set_private_key_pem(&pem).unwrap();
    cfg.set_recv_window_ms(7000).unwrap();
    Client::new(&cfg).unwrap().account_snapshot().unwrap();
    let requests = server.requests();
    for r in requests
        .iter()
        .filter(|r| SIGNED.contains(&r.path.as_str()))
    {
        let (payload, signature) = split_signature(r);
        assert_eq!(r.param("recvWindow"), Some("7000"));
        let b64 = signature
            .replace("%2B", "+")
            .replace("%2F", "/")
            .replace("%3D", "=");
        assert!(!b64.contains('%'), "{signature}");
        let bytes = data_encoding::BASE64.decode(b64.as_bytes()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&bytes).unwrap();
        verifying
            .verify(payload.as_bytes(), &sig)
            .unwrap_or_else(|e| panic!("{}: {e}", r.path));
    }
    assert_eq!(requests.len(), 5);
}

#[test]
fn rate_limited_with_retry_after_then_nothing_sent_until_then() {
    let server = Server::start(|r| {
        if r.path == "/fapi/v1/openOrders" {
            return Some(
                Response::json(429, r#"{"code":-1003,"msg":"Too many requests."}"#)
                    .header("Retry-After", "7"),
            );
        }
        Some(binance(r))
    });
    let client = Client::new(&config(&server)).unwrap();
    let t0 = now_ms();
    let e = client.account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::RateLimited, "{e:?}");
    assert_eq!((e.api_code, e.http_status), (-1003, 429));
    assert!(
        e.retry_after_ms >= t0 + 7000 && e.retry_after_ms <= now_ms() + 7000,
        "{e:?}"
    );
    assert!(e.message.contains("/fapi/v1/openOrders"), "{}", e.message);
    let sent = server.requests().len();
    let again = client.account_snapshot().unwrap_err();
    assert_eq!(again.status, Status::RateLimited);
    assert_eq!(again.retry_after_ms, e.retry_after_ms);
    assert_eq!(
        server.requests().len(),
        sent,
        "a request was sent before Retry-After"
    );
}

#[test]
fn ip_ban_418_is_rate_limited_too() {
    let server = Server::start(|r| {
        if r.path == "/fapi/v3/account" {
            return Some(
                Response::json(
                    418,
                    r#"{"code":-1003,"msg":"Way too many requests; IP banned."}"#,
                )
                .header("Retry-After", "120"),
            );
        }
        Some(binance(r))
    });
    let e = Client::new(&config(&server))
        .unwrap()
        .account_snapshot()
        .unwrap_err();
    assert_eq!((e.status, e.http_status), (Status::RateLimited, 418));
    assert!(e.message.contains("banned"), "{}", e.message);
    assert!(e.retry_after_ms >= now_ms() + 110_000, "{e:?}");
}

#[test]
fn stale_timestamp_resyncs_the_clock_and_retries_once() {
    let refused = Arc::new(AtomicUsize::new(0));
    let r2 = refused.clone();
    let server = Server::start(move |r| {
        if r.path == "/fapi/v3/account" && r2.fetch_add(1, Ordering::SeqCst) == 0 {
            return Some(Response::json(
                400,
                r#"{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}"#,
            ));
        }
        Some(binance(r))
    });
    let client = Client::new(&config(&server)).unwrap();
    client.account_snapshot().unwrap();
    assert_eq!(
        server.count("/fapi/v1/time"),
        2,
        "the clock was not resynchronised"
    );
    assert_eq!(server.count("/fapi/v3/account"), 2);

    // Refused every time: retried once only, then reported.
    let server = Server::start(|r| {
        if r.path == "/fapi/v3/account" {
            return Some(Response::json(
                400,
                r#"{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}"#,
            ));
        }
        Some(binance(r))
    });
    let e = Client::new(&config(&server))
        .unwrap()
        .account_snapshot()
        .unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -1021, 400)
    );
    assert_eq!(server.count("/fapi/v3/account"), 2);
}

#[test]
fn bad_signature_is_an_api_error_with_code_and_status() {
    let server = Server::start(|r| {
        if r.path == "/fapi/v1/openAlgoOrders" {
            return Some(Response::json(
                400,
                r#"{"code":-1022,"msg":"Signature for this request is not valid."}"#,
            ));
        }
        Some(binance(r))
    });
    let e = Client::new(&config(&server))
        .unwrap()
        .account_snapshot()
        .unwrap_err();
    assert_eq!(
        (e.status, e.api_code, e.http_status),
        (Status::ApiError, -1022, 400)
    );
    assert!(
        e.message
            .contains("Signature for this request is not valid"),
        "{}",
        e.message
    );
}

#[test]
fn answers_that_are_not_binance_json_are_protocol_errors() {
    for (status, body) in [
        (502, "<html>Bad gateway</html>"),
        (200, "not json"),
        (403, ""),
        (500, r#"{"unexpected":true}"#),
    ] {
        let server = Server::start(move |r| {
            if r.path == "/fapi/v3/positionRisk" {
                return Some(Response::json(status, body));
            }
            Some(binance(r))
        });
        let e = Client::new(&config(&server))
            .unwrap()
            .account_snapshot()
            .unwrap_err();
        assert_eq!(e.status, Status::ProtocolError, "{status} {body}: {e:?}");
        assert!(e.message.contains("/fapi/v3/positionRisk"), "{}", e.message);
    }
    // A 200 of the wrong shape.
    let server = Server::start(|r| {
        if r.path == "/fapi/v1/openOrders" {
            return Some(Response::json(200, "{}"));
        }
        Some(binance(r))
    });
    let e = Client::new(&config(&server))
        .unwrap()
        .account_snapshot()
        .unwrap_err();
    assert_eq!(e.status, Status::ProtocolError);
    assert!(e.message.contains("not an array"), "{}", e.message);
}

#[test]
fn a_silent_server_times_out_within_the_bound() {
    let server = Server::start(|r| (r.path == "/fapi/v1/time").then(|| binance(r)));
    let mut cfg = config(&server);
    cfg.set_timeouts_ms(300, 300).unwrap();
    let e = Client::new(&cfg).unwrap().account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{e:?}");
    assert!(e.message.contains("/fapi/v3/account"), "{}", e.message);
}

#[test]
fn request_weight_near_the_limit_sends_nothing() {
    let server = Server::start(|r| Some(binance(r).header("X-MBX-USED-WEIGHT-1M", "2390")));
    let client = Client::new(&config(&server)).unwrap();
    // The first snapshot learns the weight as it goes (the server reports
    // it on its first answer) and stops before going over.
    let e = client.account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::RateLimited, "{e:?}");
    assert!(e.message.contains("2390"), "{}", e.message);
    assert!(e.retry_after_ms > now_ms() - 1000, "{e:?}");
    let sent = server.requests().len();
    let e = client.account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::RateLimited);
    assert_eq!(
        server.requests().len(),
        sent,
        "sent although over the limit"
    );
}

#[test]
fn concurrent_calls_share_snapshots() {
    let server = Server::start(|r| {
        std::thread::sleep(Duration::from_millis(40));
        Some(binance(r))
    });
    let client = Arc::new(Client::new(&config(&server)).unwrap());
    let threads: Vec<_> = (0..6)
        .map(|_| {
            let c = client.clone();
            std::thread::spawn(move || c.account_snapshot())
        })
        .collect();
    for t in threads {
        t.join().unwrap().unwrap();
    }
    // Six calls: the first runs alone, the others, arriving while it runs,
    // share at most one more (a late thread may start a third).
    let taken = server.count("/fapi/v3/account");
    assert!((1..=3).contains(&taken), "{taken} snapshots for 6 calls");
}

#[test]
fn without_a_signing_key_the_call_says_what_to_set() {
    let server = Server::start(|r| Some(binance(r)));
    let mut cfg = Config::default();
    cfg.set_api_key(API_KEY).unwrap();
    cfg.set_rest_endpoint(&server.url()).unwrap();
    let e = Client::new(&cfg).unwrap().account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    for part in [
        "binance_config_set_secret_key",
        "binance_config_set_private_key_pem",
    ] {
        assert!(e.message.contains(part), "{}", e.message);
    }
    assert!(server.requests().is_empty());
}

#[test]
fn freeing_the_client_ends_a_snapshot_in_flight() {
    let server = Server::start(|r| (r.path == "/fapi/v1/time").then(|| binance(r)));
    let mut cfg = config(&server);
    cfg.set_timeouts_ms(10_000, 10_000).unwrap();
    let client = Arc::new(Client::new(&cfg).unwrap());
    let c = client.clone();
    let waiter = std::thread::spawn(move || c.account_snapshot());
    while server.count("/fapi/v3/account") == 0 {
        std::thread::sleep(Duration::from_millis(10));
    }
    client.close();
    let e = waiter.join().unwrap().unwrap_err();
    assert_eq!(e.status, Status::ConnectionClosed, "{e:?}");
}

#[test]
#[cfg(target_os = "linux")] // Server::start_tls needs the tests' OpenSSL
fn https_through_a_proxy_with_the_configured_roots() {
    let (server, pem) = Server::start_tls(|r| Some(binance(r)));
    let proxy = common::proxy::Proxy::start(None);
    let mut cfg = config(&server);
    cfg.set_rest_endpoint(&server.https_url()).unwrap();
    cfg.set_proxy(&proxy.url()).unwrap();
    // Not trusted yet: the certificate is refused.
    let e = Client::new(&cfg).unwrap().account_snapshot().unwrap_err();
    assert_eq!(e.status, Status::TlsFailed, "{e:?}");
    assert!(server.requests().is_empty());
    cfg.add_root_certificate_pem(&pem).unwrap();
    let doc: Value =
        serde_json::from_str(&Client::new(&cfg).unwrap().account_snapshot().unwrap()).unwrap();
    assert_eq!(doc["open_orders"][0]["orderId"], 7);
    assert_eq!(server.requests().len(), 5);
    assert!(
        proxy
            .tunnels()
            .iter()
            .all(|t| *t == server.addr.to_string())
            && !proxy.tunnels().is_empty(),
        "{:?}",
        proxy.tunnels()
    );
}

#[test]
fn the_stream_gets_the_snapshot_as_a_library_event() {
    let server = Server::start(|r| Some(binance(r)));
    let client = Client::new(&config(&server)).unwrap();
    let rest = client.rest().unwrap().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ticket = rest.queue_snapshot(now_ms());
    let event = rt
        .block_on(rest.fetch_snapshot_scheduled(ticket, || {}))
        .unwrap();
    assert_eq!(event.kind(), "binance.account_snapshot");
    assert!(event.is_library());
    assert!(event.time_ms() > 0);
    assert_eq!(event.get("/open_orders/0/orderId").as_deref(), Some("7"));
    assert_eq!(
        event.get("/positions/0/positionAmt").as_deref(),
        Some("0.010")
    );
}
