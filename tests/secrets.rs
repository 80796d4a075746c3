//! Secrets and limits: the API key, the signing keys (HMAC secret, Ed25519
//! private key) and proxy credentials never show in an error message, a
//! `Debug`, a library event or the process's output, even when a hostile
//! server or proxy echoes them; TLS is always verified;
//! plain `ws://` only to loopback; every input size is bounded.
//!
//! Linux only: its TLS servers and certificates come from the openssl
//! dev-dependency, which is Linux only (Cargo.toml).
#![cfg(target_os = "linux")]

mod common;

use binance_uds::engine::Event;
use binance_uds::engine::UserStream;
use binance_uds::engine::{Client, Config, Error, Status};
use common::cert::self_signed;
use common::Exchange;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// A recognisable API key (letters and digits: the exchange accepts it).
const KEY: &str = "SECRETKEY0123456789abcdefSECRET";
const PROXY_CREDS: &str = "proxyuser:PROXYPASS1234";
const PROXY_PASS: &str = "PROXYPASS1234";
/// `PROXY_CREDS` as sent in Proxy-Authorization.
const PROXY_BASIC: &str = "cHJveHl1c2VyOlBST1hZUEFTUzEyMzQ=";
/// A recognisable HMAC secret key.
const SECRET: &str = "HMACSECRET0123456789qwertyHMAC";
/// The seed of the Ed25519 private key (its PEM is `private_key_pem`).
const SEED: [u8; 32] = *b"ED25519SEEDed25519seedED25519SEE";
/// Set in the child process that replays the error paths.
const CHILD: &str = "BINANCE_UDS_SECRETS_CHILD";

/// The Ed25519 private key, PKCS#8 PEM.
fn private_key_pem() -> String {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    ed25519_dalek::SigningKey::from_bytes(&SEED)
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .unwrap()
        .to_string()
}

/// The private key's material as it could show: the PEM's Base64 line,
/// its tail (where the seed is), the seed itself.
fn key_material() -> Vec<String> {
    let pem = private_key_pem();
    let body = pem.lines().nth(1).unwrap().to_owned();
    let tail = body[body.len() - 24..].to_owned();
    vec![body, tail, String::from_utf8(SEED.to_vec()).unwrap()]
}

fn leaks(text: &str) -> Option<String> {
    [KEY, PROXY_PASS, PROXY_BASIC, SECRET]
        .into_iter()
        .map(str::to_owned)
        .chain(key_material())
        .find(|s| text.contains(s.as_str()))
}

fn config(ex: &Exchange) -> Config {
    common::config(ex, KEY, 2000, 200)
}

/// Collects every text the library produced on the error paths.
struct Seen(Vec<(String, String)>, bool);

impl Seen {
    fn error(&mut self, what: &str, e: &Error) {
        self.text(what, &e.message);
        self.text(&format!("{what} (Debug)"), &format!("{e:?}"));
    }

    fn text(&mut self, what: &str, text: &str) {
        if self.1 {
            // In the child: the parent reads this output.
            println!("{what}: {text}");
        }
        self.0.push((what.to_owned(), text.to_owned()));
    }

    /// Expects `r` to fail with `status`; records the error.
    fn fails<T: std::fmt::Debug>(&mut self, what: &str, r: Result<T, Error>, status: Status) {
        match r {
            Err(e) => {
                assert_eq!(e.status, status, "{what}: {e:?}");
                self.error(what, &e);
            }
            Ok(v) => panic!("{what}: expected {status:?}, got {v:?}"),
        }
    }

    fn events(&mut self, what: &str, s: &UserStream, until: Duration) -> Vec<Event> {
        let mut got = Vec::new();
        let deadline = Instant::now() + until;
        while Instant::now() < deadline {
            match s.next(Duration::from_millis(50)) {
                Ok(Some(ev)) => {
                    if ev.is_library() {
                        self.text(&format!("{what}: event"), ev.json());
                    }
                    self.text(&format!("{what}: event (Debug)"), &format!("{ev:?}"));
                    got.push(ev);
                }
                Ok(None) => {}
                Err(e) => panic!("{what}: {e:?}"),
            }
        }
        got
    }
}

/// A one-shot hostile proxy: answers every CONNECT with `status_line`.
fn hostile_proxy(status_line: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut head = String::new();
            let mut r = BufReader::new(conn.try_clone().unwrap());
            while r.read_line(&mut head).is_ok_and(|n| n > 2) {}
            let _ = conn.write_all(format!("{status_line}\r\n\r\n").as_bytes());
        }
    });
    format!("http://{PROXY_CREDS}@{addr}")
}

/// Drives every error path we can reach with the key and the proxy
/// credentials in play, checking each status, and records what the
/// library said.
fn error_paths(seen: &mut Seen) {
    let ex = Exchange::start(&[]);
    let c = Client::new(&config(&ex)).unwrap();
    let key = c.listen_key_start().unwrap();

    // Bad arguments, the secret inside them.
    let mut cfg = Config::default();
    seen.fails(
        "api key with a space",
        cfg.set_api_key(&format!("{KEY} x")),
        Status::InvalidArgument,
    );
    seen.fails(
        "api key too long",
        cfg.set_api_key(&KEY.repeat(9)),
        Status::InvalidArgument,
    );
    seen.fails(
        "api key with a control character",
        cfg.set_api_key(&format!("{KEY}\u{7}")),
        Status::InvalidArgument,
    );
    for bad in [
        format!("wss://{PROXY_CREDS}@127.0.0.1:1/ws"),
        format!("https://{KEY}.example.com/"),
        format!("ws://{KEY}.example.com/"),
        format!("wss://{KEY} /"),
    ] {
        seen.fails(
            "bad endpoint URL",
            cfg.set_endpoint(&bad),
            Status::InvalidArgument,
        );
    }
    for bad in [
        format!("http://{PROXY_CREDS}@proxy"),
        format!("https://{PROXY_CREDS}@proxy:1"),
        format!("socks5://{PROXY_CREDS}@proxy:1"),
        format!("http://{PROXY_CREDS}@proxy:1/path"),
        format!("http://{PROXY_CREDS}@proxy:0"),
        format!("http://proxyuser:{PROXY_PASS}%zz@proxy:1"),
        format!("http://{PROXY_PASS}@proxy:1"),
        format!("http://{PROXY_CREDS}@proxy:1 x"),
    ] {
        seen.fails(
            "bad proxy URL",
            cfg.set_proxy(&bad),
            Status::InvalidArgument,
        );
    }

    // Connection failures.
    let mut tls = config(&ex);
    tls.add_root_certificate_pem(&self_signed().0).unwrap();
    let mut untrusted = Config::default();
    untrusted.set_api_key(KEY).unwrap();
    untrusted.set_endpoint(&ex.ws_api).unwrap();
    seen.fails(
        "TLS failure",
        Client::new(&untrusted).unwrap().listen_key_start(),
        Status::TlsFailed,
    );
    let closed_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut refused = config(&ex);
    refused
        .set_endpoint(&format!("wss://127.0.0.1:{closed_port}/ws-fapi/v1"))
        .unwrap();
    seen.fails(
        "connection refused",
        Client::new(&refused).unwrap().listen_key_start(),
        Status::ConnectFailed,
    );
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut hang = config(&ex);
    hang.set_endpoint(&format!(
        "wss://127.0.0.1:{}/ws-fapi/v1",
        silent.local_addr().unwrap().port()
    ))
    .unwrap();
    hang.set_timeouts_ms(300, 300).unwrap();
    seen.fails(
        "connect timeout",
        Client::new(&hang).unwrap().listen_key_start(),
        Status::Timeout,
    );

    // The server echoes the key back.
    let echo = format!("Invalid API-key {KEY} for this action");
    ex.control(json!({"cmd": "fail", "status": 401, "code": -2015, "msg": echo}));
    seen.fails(
        "API error echoing the key",
        c.listen_key_start(),
        Status::ApiError,
    );
    ex.control(
        json!({"cmd": "fail", "status": 429, "code": -1003, "msg": echo, "retry_after_ms": 10}),
    );
    seen.fails(
        "rate limit echoing the key",
        c.listen_key_start(),
        Status::RateLimited,
    );
    // Nothing is sent to the server until the 429's time (10 ms) passes.
    while c.budget().view().paused_until_ms != 0 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let split = format!("{}\u{7}{}", &KEY[..12], &KEY[12..]);
    ex.control(json!({"cmd": "fail", "status": 400, "code": -1000, "msg": split}));
    seen.fails(
        "API error with the key split by a control character",
        c.listen_key_start(),
        Status::ApiError,
    );
    for (what, text, status) in [
        (
            "raw text echoing the key",
            format!("<html>bad key {KEY}</html>"),
            Status::ProtocolError,
        ),
        (
            "raw text with the key split by a control character",
            format!("{}\u{7}{}", &KEY[..5], &KEY[5..]),
            Status::ProtocolError,
        ),
        (
            "raw text with the key past the excerpt",
            format!("{}{KEY}", "x".repeat(60)),
            Status::ProtocolError,
        ),
        (
            "a listenKey that is the API key plus junk",
            format!(r#"{{"id":{{id}},"status":200,"result":{{"listenKey":"{KEY}/.."}}}}"#),
            Status::ProtocolError,
        ),
        (
            "an error object without a code",
            format!(r#"{{"id":{{id}},"status":400,"error":{{"msg":"{KEY}"}}}}"#),
            Status::ProtocolError,
        ),
        (
            "a revocation echoing the key",
            format!(
                r#"{{"id":null,"status":401,"error":{{"code":-2015,"msg":"key {KEY} revoked"}}}}"#
            ),
            Status::ApiError,
        ),
    ] {
        ex.control(json!({"cmd": "raw", "text": text}));
        let r = c.listen_key_keepalive();
        if what.starts_with("a revocation") {
            // An id-less error is for no request: this one times out or
            // fails with it, depending on the order; the key shows in
            // neither.
            if let Err(e) = r {
                seen.error(what, &e);
            }
            continue;
        }
        seen.fails(what, r, status);
    }
    let reason = format!("bye {KEY}");
    let c2 = std::sync::Arc::new(Client::new(&config(&ex)).unwrap());
    c2.listen_key_start().unwrap();
    ex.control(json!({"cmd": "delay", "ms": 1500}));
    let pings = ex.requests("userDataStream.ping");
    let waiter = {
        let c2 = c2.clone();
        std::thread::spawn(move || c2.listen_key_keepalive())
    };
    // The close comes while the keepalive waits for its (delayed) answer.
    ex.wait_requests("userDataStream.ping", pings, Duration::from_secs(10));
    ex.control(json!({"cmd": "close", "target": "api", "code": 4000, "reason": reason}));
    seen.fails(
        "close frame whose reason echoes the key",
        waiter.join().unwrap(),
        Status::ConnectionClosed,
    );
    ex.control(json!({"cmd": "reset"}));

    // Proxies.
    let proxy = common::proxy::Proxy::start(Some("Basic bm90OnRoaXM="));
    let mut p = config(&ex);
    p.set_proxy(&format!("http://{PROXY_CREDS}@{}", proxy.addr))
        .unwrap();
    seen.fails(
        "proxy refusing the credentials",
        Client::new(&p).unwrap().listen_key_start(),
        Status::ConnectFailed,
    );
    let mut p = config(&ex);
    p.set_proxy(&hostile_proxy(
        "HTTP/1.1 407 proxyuser:PROXYPASS1234 is not cHJveHl1c2VyOlBST1hZUEFTUzEyMzQ= (PROXYPASS1234)",
    ))
    .unwrap();
    seen.fails(
        "proxy echoing the credentials",
        Client::new(&p).unwrap().listen_key_start(),
        Status::ConnectFailed,
    );
    let mut p = config(&ex);
    p.set_proxy(&format!("http://{PROXY_CREDS}@127.0.0.1:{closed_port}"))
        .unwrap();
    seen.fails(
        "proxy not listening",
        Client::new(&p).unwrap().listen_key_start(),
        Status::ConnectFailed,
    );

    // The stream: its failures and library events.
    let tunnel = common::proxy::Proxy::start(None);
    let mut scfg = config(&ex);
    scfg.set_keepalive_interval_ms(200).unwrap();
    scfg.set_proxy(&format!("http://{PROXY_CREDS}@{}", tunnel.addr))
        .unwrap();
    let sc = Client::new(&scfg).unwrap();
    ex.control(json!({"cmd": "refuse", "target": "stream"}));
    seen.fails(
        "stream refused",
        UserStream::open(&sc, None).map(|_| ()),
        Status::ConnectFailed,
    );
    ex.control(json!({"cmd": "refuse", "target": "stream", "enabled": false}));
    let s = UserStream::open(&sc, None).unwrap();
    ex.control(json!({"cmd": "close", "target": "stream", "code": 4001, "reason": format!("closing {KEY}")}));
    seen.events(
        "stream closed with the key in the reason",
        &s,
        Duration::from_millis(800),
    );
    ex.control(json!({"cmd": "fail", "method": "userDataStream.ping", "status": 400, "code": -1125, "msg": format!("no listenKey for {KEY}")}));
    let events = seen.events(
        "keepalive refused echoing the key",
        &s,
        Duration::from_millis(1200),
    );
    assert!(
        events
            .iter()
            .any(|e| e.get("/reason").as_deref() == Some("listen_key_invalid")),
        "the keepalive's -1125 did not renew the key"
    );
    ex.control(json!({"cmd": "expire", "api_key": KEY}));
    seen.events("key expired", &s, Duration::from_millis(800));
    ex.control(json!({"cmd": "drop", "target": "stream"}));
    ex.control(json!({"cmd": "emit", "api_key": KEY, "count": 2}));
    seen.events("stream dropped", &s, Duration::from_millis(800));
    let h = s.health();
    assert!(h.gaps >= 3, "{h:?}");
    s.close();

    rest_error_paths(seen);

    // Debug of everything that holds a secret.
    seen.text("Config (Debug)", &format!("{scfg:?}"));
    seen.text("Health (Debug)", &format!("{h:?}"));
    drop(key);
}

/// The signing keys: refused as arguments, and in play while a hostile
/// REST server echoes them (and the API key) in every way it can.
fn rest_error_paths(seen: &mut Seen) {
    let pem = private_key_pem();
    let body = pem.lines().nth(1).unwrap().to_owned();
    let mut cfg = Config::default();
    for bad in [
        format!("{SECRET} x"),
        format!("{SECRET}\u{7}"),
        SECRET.repeat(9),
    ] {
        seen.fails(
            "bad secret key",
            cfg.set_secret_key(&bad),
            Status::InvalidArgument,
        );
    }
    for bad in [
        pem.replace("PRIVATE KEY", "RSA PRIVATE KEY"),
        pem.replace("PRIVATE KEY", "ENCRYPTED PRIVATE KEY"),
        pem.replace(&body, &body[..body.len() - 4]),
        pem.replace(&body, &format!("{body}{body}")),
        format!("-----BEGIN PRIVATE KEY-----\n{body}"),
        body.clone(),
        format!("-----BEGIN {body}-----\n{body}\n-----END {body}-----\n"),
        SECRET.to_owned(),
    ] {
        seen.fails(
            "bad private key PEM",
            cfg.set_private_key_pem(&bad),
            Status::InvalidArgument,
        );
    }
    seen.fails(
        "bad REST URL",
        cfg.set_rest_endpoint(&format!("https://{SECRET}:{KEY}@example.com/")),
        Status::InvalidArgument,
    );

    // A server that echoes every secret the client holds: the API key and
    // its signing key.
    for (kind, signing_key, set) in [
        (
            "HMAC",
            SECRET.to_owned(),
            Box::new(|c: &mut Config| c.set_secret_key(SECRET))
                as Box<dyn Fn(&mut Config) -> Result<(), Error>>,
        ),
        (
            "Ed25519",
            body.clone(),
            Box::new(|c: &mut Config| c.set_private_key_pem(&private_key_pem())),
        ),
    ] {
        let echo = format!("key {KEY} signing key {signing_key}");
        let server = common::http::Server::start(move |r| {
            use common::http::Response;
            let json_echo = serde_json::to_string(&echo).unwrap();
            Some(match r.path.as_str() {
                "/fapi/v1/time" => Response::json(200, r#"{"serverTime":1}"#),
                _ => Response::json(400, format!(r#"{{"code":-1022,"msg":{json_echo}}}"#)),
            })
        });
        let mut cfg = Config::default();
        cfg.set_api_key(KEY).unwrap();
        set(&mut cfg).unwrap();
        cfg.set_rest_endpoint(&server.url()).unwrap();
        cfg.set_timeouts_ms(2000, 2000).unwrap();
        seen.text(&format!("{kind} config (Debug)"), &format!("{cfg:?}"));
        let client = Client::new(&cfg).unwrap();
        seen.text(
            &format!("{kind} REST (Debug)"),
            &format!("{:?}", client.rest().map(|_| ())),
        );
        seen.fails(
            &format!("{kind}: API error echoing the keys"),
            client.account_snapshot(),
            Status::ApiError,
        );
    }
    let echo = format!("key {KEY} secret {SECRET}");
    // Each of the other failing answers, reached in turn.
    for (failing, status) in [
        ("/fapi/v3/positionRisk", Status::RateLimited),
        ("/fapi/v1/openOrders", Status::ProtocolError),
        ("/fapi/v1/openAlgoOrders", Status::ProtocolError),
    ] {
        let echo = echo.clone();
        let server = common::http::Server::start(move |r| {
            use common::http::Response;
            let json_echo = serde_json::to_string(&echo).unwrap();
            Some(match r.path.as_str() {
                p if p == failing && status == Status::RateLimited => {
                    Response::json(429, format!(r#"{{"code":-1003,"msg":{json_echo}}}"#))
                }
                p if p == failing => Response::json(502, format!("<html>{echo}</html>")),
                "/fapi/v1/time" => Response::json(200, r#"{"serverTime":1}"#),
                "/fapi/v3/account" => Response::json(200, r#"{"assets":[]}"#),
                _ => Response::json(200, "[]"),
            })
        });
        let mut cfg = Config::default();
        cfg.set_api_key(KEY).unwrap();
        cfg.set_secret_key(SECRET).unwrap();
        cfg.set_rest_endpoint(&server.url()).unwrap();
        seen.fails(
            &format!("{failing} echoing the secrets"),
            Client::new(&cfg).unwrap().account_snapshot(),
            status,
        );
        // The secret never goes over the wire, only signatures made with it.
        for r in server.requests() {
            let wire = format!("{r:?}");
            assert!(!wire.contains(SECRET), "{} carried the secret", r.path);
        }
    }
}

#[test]
fn no_error_message_debug_or_library_event_shows_a_secret() {
    let mut seen = Seen(Vec::new(), false);
    error_paths(&mut seen);
    assert!(seen.0.len() > 40, "only {} texts", seen.0.len());
    for (what, text) in &seen.0 {
        if let Some(s) = leaks(text) {
            panic!("{what} shows {s:?}: {text}");
        }
    }
    // The echoes were really there to be redacted.
    let shown: Vec<&str> = seen.0.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        shown
            .iter()
            .any(|t| t.contains("Invalid API-key <redacted>")),
        "{shown:?}"
    );
    assert!(
        shown.iter().any(|t| t.contains("bye <redacted>")),
        "{shown:?}"
    );
    assert_eq!(
        shown
            .iter()
            .filter(|t| t.contains("key <redacted> signing key <redacted>"))
            .count(),
        4,
        "both signing keys echoed and redacted (message and Debug each)"
    );
    assert!(shown.iter().any(|t| t.contains("407")), "{shown:?}");
}

/// Replays the error paths in a child process and reads everything it
/// wrote: the library itself writes nothing, and what the test prints (the
/// messages) holds no secret.
#[test]
fn the_process_output_shows_no_secret() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_replays_the_error_paths",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("child: done"),
        "the child did not run:\n{text}"
    );
    if let Some(s) = leaks(&text) {
        panic!("the child's output shows {s:?}:\n{text}");
    }
}

#[test]
fn child_replays_the_error_paths() {
    if std::env::var_os(CHILD).is_none() {
        return; // only in the child of the_process_output_shows_no_secret
    }
    let mut seen = Seen(Vec::new(), true);
    error_paths(&mut seen);
    println!("child: done");
}

/// A TLS server with a self-signed certificate; after a handshake it
/// answers the upgrade with 403, so a client that got that far says so.
fn self_signed_server() -> (u16, String) {
    use openssl::ssl::{SslAcceptor, SslMethod};
    use openssl::x509::X509;
    let (pem, key) = self_signed();
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
    acceptor
        .set_certificate(&X509::from_pem(pem.as_bytes()).unwrap())
        .unwrap();
    acceptor.set_private_key(&key).unwrap();
    let acceptor = acceptor.build();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { return };
            if let Ok(mut tls) = acceptor.accept(conn) {
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf);
                let _ = tls.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
            }
        }
    });
    (port, pem)
}

#[test]
fn tls_cannot_be_switched_off_and_a_self_signed_server_is_refused() {
    let (port, pem) = self_signed_server();
    for host in ["127.0.0.1", "localhost"] {
        let mut cfg = Config::default();
        cfg.set_api_key(KEY).unwrap();
        cfg.set_endpoint(&format!("wss://{host}:{port}/ws-fapi/v1"))
            .unwrap();
        cfg.set_timeouts_ms(2000, 2000).unwrap();
        let e = Client::new(&cfg).unwrap().listen_key_start().unwrap_err();
        assert_eq!(e.status, Status::TlsFailed, "{host}: {e:?}");
        // Trusting that very certificate is the only way in: then the TLS
        // handshake passes and the (non-WebSocket) server's 403 shows.
        cfg.add_root_certificate_pem(&pem).unwrap();
        let e = Client::new(&cfg).unwrap().listen_key_start().unwrap_err();
        assert_eq!(e.status, Status::ConnectFailed, "{host}: {e:?}");
        assert!(e.message.contains("403"), "{}", e.message);
    }
    // No switch exists: the C API has no function or option that could
    // turn verification off.
    let header = include_str!("../include/binance_uds.h").to_ascii_lowercase();
    for word in [
        "insecure",
        "verify",
        "danger",
        "skip_",
        "accept_invalid",
        "no_check",
    ] {
        let hit = header
            .lines()
            .find(|l| l.contains("binance_") && l.contains(word) && l.trim_end().ends_with(");"));
        assert!(
            hit.is_none(),
            "a function that may disable TLS checks: {hit:?}"
        );
    }
}

#[test]
fn plain_ws_is_only_allowed_to_loopback() {
    let mut cfg = Config::default();
    for url in [
        "ws://example.com/ws-fapi/v1",
        "ws://10.0.0.1/ws-fapi/v1",
        "ws://192.168.1.1:8080/x",
        "ws://[::ffff:10.0.0.1]:80/x",
        "ws://localhost.example.com/x",
        "ws://127.0.0.1.nip.io/x",
        "ws://2130706433/x",
        "ws://0.0.0.0/x",
    ] {
        for (what, r) in [
            ("endpoint", cfg.set_endpoint(url)),
            ("stream endpoint", cfg.set_stream_endpoint(url)),
        ] {
            let e = r.unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument, "{what} {url}");
            assert!(
                e.message.starts_with("url:") && e.message.contains("loopback"),
                "{what} {url}: {}",
                e.message
            );
        }
    }
    for url in [
        "ws://127.0.0.1:9/x",
        "ws://127.8.9.10:9/x",
        "ws://localhost:9/x",
        "ws://[::1]:9/x",
    ] {
        cfg.set_endpoint(url).unwrap();
        cfg.set_stream_endpoint(url).unwrap();
    }
}

#[test]
fn every_input_size_is_bounded_with_an_error_naming_the_argument() {
    let mut cfg = Config::default();
    // URL: 2048 bytes.
    let url_of = |len: usize| {
        let head = "wss://example.com/";
        format!("{head}{}", "a".repeat(len - head.len()))
    };
    cfg.set_endpoint(&url_of(2048)).unwrap();
    cfg.set_stream_endpoint(&url_of(2048)).unwrap();
    for r in [
        cfg.set_endpoint(&url_of(2049)),
        cfg.set_stream_endpoint(&url_of(2049)),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(
            e.message.starts_with("url:") && e.message.contains("2048"),
            "{}",
            e.message
        );
    }
    let proxy = format!("http://{PROXY_CREDS}@{}:1", "h".repeat(2100));
    let e = cfg.set_proxy(&proxy).unwrap_err();
    assert!(
        e.message.starts_with("url:") && e.message.contains("2048"),
        "{}",
        e.message
    );
    assert!(leaks(&e.message).is_none());
    // API key: 256 bytes.
    cfg.set_api_key(&"k".repeat(256)).unwrap();
    let e = cfg.set_api_key(&"k".repeat(257)).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(
        e.message.starts_with("api_key:") && e.message.contains("256"),
        "{}",
        e.message
    );
    // PEM: 1 MiB, refused before it is parsed.
    let (pem, _) = self_signed();
    let mut big = pem.clone();
    while big.len() <= 1 << 20 {
        big.push_str(&pem);
    }
    let t0 = Instant::now();
    let e = cfg.add_root_certificate_pem(&big).unwrap_err();
    assert_eq!(e.status, Status::InvalidArgument);
    assert!(
        e.message.starts_with("pem:") && e.message.contains("1048576"),
        "{}",
        e.message
    );
    assert!(t0.elapsed() < Duration::from_secs(1));
    cfg.add_root_certificate_pem(&pem).unwrap();
    // Queue: 1 to 1000000 events.
    for bad in [0, 1_000_001, u32::MAX] {
        let e = cfg.set_event_queue_capacity(bad).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert!(e.message.starts_with("capacity:"), "{}", e.message);
    }
    cfg.set_event_queue_capacity(1_000_000).unwrap();
    cfg.set_event_queue_capacity(1).unwrap();
    // Timeouts and intervals.
    assert!(cfg
        .set_timeouts_ms(0, 1)
        .unwrap_err()
        .message
        .starts_with("connect_ms:"));
    assert!(cfg
        .set_timeouts_ms(1, 3_600_001)
        .unwrap_err()
        .message
        .starts_with("request_ms:"));
    assert!(cfg
        .set_keepalive_interval_ms(99)
        .unwrap_err()
        .message
        .starts_with("ms:"));
    assert!(cfg
        .set_silence_timeout_ms(3_600_001)
        .unwrap_err()
        .message
        .starts_with("ms:"));
    assert!(cfg
        .set_stream_rotation_ms(86_400_000)
        .unwrap_err()
        .message
        .starts_with("ms:"));
    assert!(cfg
        .set_reconnect_backoff_ms(0, 1)
        .unwrap_err()
        .message
        .starts_with("initial_ms:"));
    assert!(cfg
        .set_reconnect_backoff_ms(10, 9)
        .unwrap_err()
        .message
        .starts_with("max_ms:"));
}

#[test]
fn a_silent_listener_never_sees_the_key_before_tls() {
    // The key goes only inside the TLS session: a server that never
    // completes TLS never receives it in the clear.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(800)))
            .unwrap();
        let mut all = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            all.extend_from_slice(&buf[..n]);
        }
        all
    });
    let mut cfg = Config::default();
    cfg.set_api_key(KEY).unwrap();
    cfg.set_endpoint(&format!("wss://127.0.0.1:{port}/ws-fapi/v1"))
        .unwrap();
    cfg.set_timeouts_ms(500, 500).unwrap();
    let e = Client::new(&cfg).unwrap().listen_key_start().unwrap_err();
    assert_eq!(e.status, Status::Timeout, "{e:?}");
    let bytes = got.join().unwrap();
    assert!(!bytes.is_empty(), "no ClientHello");
    assert!(
        !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
        "the key was sent in the clear"
    );
    let _ = TcpStream::connect(("127.0.0.1", port));
}
