//! The `binance-uds` program against the local exchange, run the way a shell
//! script or an operator runs it.

#[path = "../../tests/common/mod.rs"]
mod common;

use common::Exchange;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// Recognisable, so the tests can check it is never printed.
const API_KEY: &str = "cliTESTkey0123456789abcdef";
const WAIT: Duration = Duration::from_secs(30);

fn command(ex: &Exchange) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_binance-uds"));
    cmd.env("BINANCE_API_KEY", API_KEY)
        .env("BINANCE_WS_API_URL", &ex.ws_api)
        .env("BINANCE_STREAM_URL", &ex.stream)
        .env(
            "BINANCE_CA_FILE",
            ex.ca_file.as_ref().expect("a TLS exchange"),
        )
        .stdin(Stdio::null());
    cmd
}

fn run(ex: &Exchange, args: &[&str]) -> Output {
    let out = command(ex).args(args).output().expect("run binance-uds");
    assert_secret_not_in(&out.stdout);
    assert_secret_not_in(&out.stderr);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn assert_secret_not_in(bytes: &[u8]) {
    assert!(
        !text(bytes).contains(API_KEY),
        "the API key was printed: {}",
        text(bytes)
    );
}

#[test]
fn listen_key_start_keepalive_stop_print_for_scripts() {
    let ex = Exchange::start(&[]);
    let start = run(&ex, &["listen-key", "start"]);
    assert!(start.status.success(), "{}", text(&start.stderr));
    let key = text(&start.stdout);
    let key = key.strip_suffix('\n').expect("one line");
    assert_eq!(key.len(), 64, "{key:?}");
    assert!(start.stderr.is_empty());

    let keepalive = run(&ex, &["listen-key", "keepalive"]);
    assert!(keepalive.status.success());
    assert_eq!(text(&keepalive.stdout), format!("{key}\n"));

    let stop = run(&ex, &["listen-key", "stop"]);
    assert!(stop.status.success());
    assert!(stop.stdout.is_empty() && stop.stderr.is_empty());

    // The account has no key now: Binance's -1125, exit status 10 + API_ERROR.
    let again = run(&ex, &["listen-key", "keepalive"]);
    assert_eq!(again.status.code(), Some(17));
    assert!(again.stdout.is_empty());
    let err = text(&again.stderr);
    assert!(
        err.starts_with("binance-uds: BINANCE_API_ERROR (code -1125, HTTP status 400): "),
        "{err}"
    );
}

#[test]
fn failures_exit_with_their_status() {
    let ex = Exchange::start(&[]);
    // Nothing listens there: CONNECT_FAILED (2) + 10.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = command(&ex)
        .env(
            "BINANCE_WS_API_URL",
            format!("wss://127.0.0.1:{port}/ws-fapi/v1"),
        )
        .args(["listen-key", "start"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("binance-uds: BINANCE_CONNECT_FAILED"));

    // Usage: status 2, saying what is wrong.
    for (args, env_key, says) in [
        (
            &["listen-key"][..],
            Some(API_KEY),
            "expected start, keepalive or stop",
        ),
        (&["stream", "--health", "x"][..], Some(API_KEY), "--health"),
        (
            &["listen-key", "start"][..],
            None,
            "BINANCE_API_KEY is not set",
        ),
    ] {
        let mut cmd = command(&ex);
        match env_key {
            Some(k) => cmd.env("BINANCE_API_KEY", k),
            None => cmd.env_remove("BINANCE_API_KEY"),
        };
        let out = cmd.args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(says) && err.contains("--help"),
            "{args:?}: {err}"
        );
    }
    let missing_ca = command(&ex)
        .env("BINANCE_CA_FILE", "/nonexistent/ca.pem")
        .args(["listen-key", "start"])
        .output()
        .unwrap();
    assert_eq!(missing_ca.status.code(), Some(2));
    assert!(text(&missing_ca.stderr).contains("BINANCE_CA_FILE /nonexistent/ca.pem"));
}

#[test]
fn help_reads_like_a_manual() {
    let out = Command::new(env!("CARGO_BIN_EXE_binance-uds"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let manual = text(&out.stdout);
    for section in [
        "NAME",
        "SYNOPSIS",
        "DESCRIPTION",
        "OPTIONS",
        "ENVIRONMENT",
        "EXIT STATUS",
        "EXAMPLES",
    ] {
        assert!(
            manual.contains(&format!("\n{section}\n")) || manual.starts_with(section),
            "{section}"
        );
    }
    for variable in [
        "BINANCE_API_KEY",
        "BINANCE_WS_API_URL",
        "BINANCE_STREAM_URL",
        "BINANCE_CA_FILE",
    ] {
        assert!(manual.contains(variable), "{variable}");
    }
}

/// A running `binance-uds stream`, its stdout and stderr read by threads.
struct Streaming {
    child: Child,
    stdout: Receiver<String>,
    stderr: Receiver<String>,
}

fn lines_of(reader: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

impl Streaming {
    fn start(ex: &Exchange, args: &[&str]) -> Streaming {
        let mut child = command(ex)
            .arg("stream")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn binance-uds stream");
        let stdout = lines_of(child.stdout.take().unwrap());
        let stderr = lines_of(child.stderr.take().unwrap());
        let deadline = Instant::now() + WAIT;
        // Subscribed, not only connected: events emitted before the
        // exchange has the key go to nobody.
        let subscribed = || {
            let conns = ex.control(json!({"cmd": "stream_connections"}));
            conns["connections"].as_array().is_some_and(|c| {
                c.len() == 1 && c[0]["keys"].as_array().is_some_and(|k| !k.is_empty())
            })
        };
        while !subscribed() {
            assert!(Instant::now() < deadline, "the stream did not subscribe");
            assert!(
                child.try_wait().unwrap().is_none(),
                "binance-uds stream exited"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // Connected is not subscribed: an event emitted before the
        // SUBSCRIBE reached the exchange would go nowhere.
        ex.wait_subscribed(1, WAIT);
        Streaming {
            child,
            stdout,
            stderr,
        }
    }

    /// The next event printed on stdout.
    fn event(&self) -> Value {
        let line = self.stdout.recv_timeout(WAIT).expect("an event line");
        assert!(!line.contains(API_KEY));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
    }

    /// Emits one `kind` event to the account and checks that it is the
    /// next event printed, as sent; returns the exchange's answer.
    fn prints_emitted(&self, ex: &Exchange, kind: &str) -> Value {
        let emitted = ex.control(json!({"cmd": "emit", "api_key": API_KEY, "type": kind}));
        let ev = self.event();
        assert_eq!((&ev["e"], &ev["E"]), (&json!(kind), &emitted["first_E"]));
        emitted
    }

    fn signal(&self, name: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill")
            .success();
        assert!(ok, "kill -{name} failed");
    }

    /// Waits for the program to exit; its status and what it left on stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("binance-uds stream did not exit");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let stderr: Vec<String> = self.stderr.try_iter().collect();
        let rest: Vec<String> = self.stdout.try_iter().collect();
        assert!(!rest.join("\n").contains(API_KEY));
        let stderr = stderr.join("\n");
        assert!(
            !stderr.contains(API_KEY),
            "the API key was printed: {stderr}"
        );
        (status, stderr)
    }
}

#[test]
fn stream_prints_events_and_the_gap_of_a_dropped_connection_until_ctrl_c() {
    let ex = Exchange::start(&[]);
    let s = Streaming::start(&ex, &[]);
    let emitted = ex.control(
        json!({"cmd": "emit", "api_key": API_KEY, "type": "ORDER_TRADE_UPDATE", "count": 2}),
    );
    let first = emitted["first_E"].as_i64().unwrap();
    for n in 0..2 {
        let ev = s.event();
        assert_eq!(ev["e"], "ORDER_TRADE_UPDATE");
        assert_eq!(ev["E"], first + n);
        assert_eq!(ev["o"]["s"], "BTCUSDT");
    }

    ex.control(json!({"cmd": "drop", "target": "stream"}));
    let mut library = Vec::new();
    let gap = loop {
        let ev = s.event();
        library.push(ev["e"].as_str().unwrap().to_string());
        if ev["e"] == "binance.stream_gap" {
            break ev;
        }
    };
    assert_eq!(library[0], "binance.stream_disconnected");
    assert_eq!(gap["reason"], "disconnected");
    assert!(gap["from_ms"].as_i64().unwrap() <= gap["to_ms"].as_i64().unwrap());
    // Events flow again on the new connection.
    s.prints_emitted(&ex, "ACCOUNT_UPDATE");

    s.signal("INT");
    let (status, stderr) = s.wait();
    assert!(status.success(), "{status:?}: {stderr}");
    // Not a terminal: no status line.
    assert!(stderr.is_empty(), "{stderr}");
    let deadline = Instant::now() + WAIT;
    while ex.stats()["stream_connections_open"] != 0 {
        assert!(
            Instant::now() < deadline,
            "the stream connection stayed open"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn stream_filters_event_types_prints_health_and_ends_on_sigterm() {
    let ex = Exchange::start(&[]);
    let s = Streaming::start(
        &ex,
        &[
            "--events",
            "ORDER_TRADE_UPDATE,MARGIN_CALL",
            "--health",
            "1",
        ],
    );
    for kind in [
        "ACCOUNT_UPDATE",
        "ORDER_TRADE_UPDATE",
        "TRADE_LITE",
        "MARGIN_CALL",
    ] {
        ex.control(json!({"cmd": "emit", "api_key": API_KEY, "type": kind}));
    }
    assert_eq!(s.event()["e"], "ORDER_TRADE_UPDATE");
    assert_eq!(s.event()["e"], "MARGIN_CALL");

    // A health line a second, on stderr, once the events were delivered.
    let health = loop {
        let line = s.stderr.recv_timeout(WAIT).expect("a health line");
        let h: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"));
        if h["events_delivered"] == 4 {
            break h;
        }
    };
    assert_eq!(health["connected"], true);
    assert_eq!(health["gaps"], 0);
    assert!(health["last_event_ms"].as_i64().unwrap() > 0);
    for field in [
        "reconnects",
        "events_dropped",
        "events_queued",
        "key_renewals",
        "key_age_ms",
        "last_keepalive_status",
        "last_keepalive_ms",
    ] {
        assert!(
            health[field].is_i64() || health[field].is_u64(),
            "{field} in {health}"
        );
    }

    s.signal("TERM");
    let (status, _) = s.wait();
    assert!(status.success(), "{status:?}");
}

#[test]
fn listen_key_commands_use_each_products_way() {
    let ex = Exchange::start(&[]);
    // COIN-M: its WebSocket API; Portfolio Margin: REST /papi/v1/listenKey.
    let cases = [
        (
            "coinm",
            ex.coinm_ws_api.as_str(),
            [
                "userDataStream.start",
                "userDataStream.ping",
                "userDataStream.stop",
            ],
        ),
        (
            "pm",
            ex.ws_api.as_str(),
            [
                "POST /papi/v1/listenKey",
                "PUT /papi/v1/listenKey",
                "DELETE /papi/v1/listenKey",
            ],
        ),
    ];
    for (product, ws_api, requests) in cases {
        let before: Vec<u64> = requests.iter().map(|r| ex.requests(r)).collect();
        let run_op = |op: &str| {
            let out = command(&ex)
                .env("BINANCE_WS_API_URL", ws_api)
                .env("BINANCE_REST_URL", &ex.rest)
                .args(["--product", product, "listen-key", op])
                .output()
                .expect("run binance-uds");
            assert_secret_not_in(&out.stdout);
            assert_secret_not_in(&out.stderr);
            assert!(
                out.status.success(),
                "{product} {op}: {}",
                text(&out.stderr)
            );
            text(&out.stdout)
        };
        let key = run_op("start");
        assert_eq!(key.trim_end().len(), 64, "{product}: {key:?}");
        assert_eq!(
            run_op("keepalive"),
            key,
            "{product}: the same key, extended"
        );
        assert_eq!(run_op("stop"), "");
        for (r, b) in requests.iter().zip(before) {
            // The keepalive of PM asks start first (PUT names no key).
            assert!(ex.requests(r) > b, "{product}: no {r} reached the exchange");
        }
    }
}

const SECRET: &str = "cliSECRETkey0123456789abcdef";

/// `command` for `product`'s account with the signing key and REST base.
fn signed_command(ex: &Exchange, product: &str) -> Command {
    let mut cmd = command(ex);
    cmd.env("BINANCE_SECRET_KEY", SECRET)
        .env("BINANCE_REST_URL", &ex.rest)
        .args(["--product", product]);
    match product {
        "coinm" => {
            cmd.env("BINANCE_WS_API_URL", &ex.coinm_ws_api)
                .env("BINANCE_STREAM_URL", &ex.coinm_stream);
        }
        "pm" => {
            cmd.env("BINANCE_STREAM_URL", &ex.pm_stream);
        }
        _ => {}
    }
    cmd
}

#[test]
fn snapshot_prints_each_products_account_as_one_document() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    for (product, orders) in [
        ("usdm", "open_orders"),
        ("coinm", "open_orders"),
        ("pm", "um_open_orders"),
    ] {
        let acct = json!({"api_key": API_KEY, "product": product});
        let mut place = json!({"cmd": "order_place", "symbol": "ETHUSDT", "side": "BUY",
                               "quantity": "0.5", "price": "2000"});
        place
            .as_object_mut()
            .unwrap()
            .extend(acct.as_object().unwrap().clone());
        let mut deposit = json!({"cmd": "deposit", "asset": "USDT", "amount": "5000"});
        deposit
            .as_object_mut()
            .unwrap()
            .extend(acct.as_object().unwrap().clone());
        ex.control(deposit);
        let order = ex.control(place)["order_id"].clone();
        let out = signed_command(&ex, product)
            .arg("snapshot")
            .output()
            .expect("run binance-uds");
        for bytes in [&out.stdout, &out.stderr] {
            assert_secret_not_in(bytes);
            assert!(!text(bytes).contains(SECRET), "the secret was printed");
        }
        assert!(out.status.success(), "{product}: {}", text(&out.stderr));
        let doc: Value = serde_json::from_str(&text(&out.stdout)).expect("one JSON document");
        assert_eq!(doc["product"], product);
        assert_eq!(doc[orders][0]["orderId"], order, "{product}: {doc}");
        assert_eq!(doc["balances"][0]["asset"], "USDT", "{product}: {doc}");
    }
    // Without a signing key: the library's INVALID_ARGUMENT, naming what to set.
    let out = command(&ex).arg("snapshot").output().unwrap();
    assert_eq!(out.status.code(), Some(11), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("secret_key"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn stream_resync_prints_the_snapshot_first_and_after_a_gap() {
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET}")]);
    let mut child = signed_command(&ex, "coinm")
        .args(["stream", "--resync"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn binance-uds stream --resync");
    let stdout = lines_of(child.stdout.take().unwrap());
    let next = || -> Value {
        let line = stdout.recv_timeout(WAIT).expect("a line");
        assert!(!line.contains(API_KEY) && !line.contains(SECRET));
        serde_json::from_str(&line).unwrap()
    };
    let first = next();
    assert_eq!(first["e"], "binance.account_snapshot", "{first}");
    assert_eq!(first["product"], "coinm");
    ex.control(json!({"cmd": "drop", "target": "stream"}));
    let mut kinds = Vec::new();
    while kinds.last().map(String::as_str) != Some("binance.account_snapshot") {
        kinds.push(next()["e"].as_str().unwrap().to_owned());
    }
    assert!(
        kinds.contains(&"binance.stream_gap".to_owned()),
        "{kinds:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

/// An accounts file for `stream --accounts`, removed when dropped.
struct AccountsFile(std::path::PathBuf);

impl AccountsFile {
    fn new(name: &str, text: &str) -> AccountsFile {
        let path =
            std::env::temp_dir().join(format!("binance-uds-{}-{name}.conf", std::process::id()));
        std::fs::write(&path, text).expect("write the accounts file");
        AccountsFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for AccountsFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const KEY_A: &str = "cliACCOUNTaKEY0123456789";
const KEY_B: &str = "cliACCOUNTbKEY0123456789";
const SECRET_A: &str = "cliACCOUNTaSECRET0123456789";
const SECRET_B: &str = "cliACCOUNTbSECRET0123456789";
const KEY_D: &str = "cliACCOUNTdKEY0123456789";

fn assert_no_keys_in(line: &str) {
    for key in [API_KEY, KEY_A, KEY_B, KEY_D, SECRET_A, SECRET_B] {
        assert!(!line.contains(key), "a key was printed: {line}");
    }
}

#[test]
fn stream_accounts_tags_each_accounts_events_and_reports_the_one_that_fails() {
    let ex = Exchange::start(&[
        "--account",
        &format!("{KEY_A}:{SECRET_A}"),
        "--account",
        &format!("{KEY_B}:{SECRET_B}"),
        "--account",
        &format!("{KEY_D}:{SECRET_A}"),
    ]);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let file = AccountsFile::new(
        "desk",
        &format!(
            "# a desk: USD-M, COIN-M, and one whose WebSocket API is down\n\
             \n\
             alpha key_env=UDS_KEY_A secret_env=UDS_SECRET_A\n\
             name=beta key_env=UDS_KEY_B secret_env=UDS_SECRET_B product=coinm \
             ws_api={} stream={}   # dstream\n\
             gamma key_env=UDS_KEY_A secret_env=UDS_SECRET_A ws_api=wss://127.0.0.1:{port}/ws-fapi/v1\n\
             delta key_env=UDS_KEY_D secret_env=UDS_SECRET_A product=usdm\n",
            ex.coinm_ws_api, ex.coinm_stream
        ),
    );
    let mut child = command(&ex)
        .env("UDS_KEY_A", KEY_A)
        .env("UDS_KEY_B", KEY_B)
        .env("UDS_KEY_D", KEY_D)
        .env("UDS_SECRET_A", SECRET_A)
        .env("UDS_SECRET_B", SECRET_B)
        .env("BINANCE_REST_URL", &ex.rest)
        .args([
            "stream",
            "--accounts",
            file.path(),
            "--resync",
            "--health",
            "1",
            "--events",
            "binance.account_snapshot,ORDER_TRADE_UPDATE,ACCOUNT_UPDATE,TRADE_LITE",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binance-uds stream --accounts");
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    let next = || -> Value {
        let line = stdout.recv_timeout(WAIT).expect("an event line");
        assert_no_keys_in(&line);
        assert!(
            line.starts_with("{\"account\":\"") && line.contains(",\"event\":{"),
            "not tagged: {line}"
        );
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"))
    };

    // stderr: the health lines of the accounts that stream, tagged, and
    // the failed account's report, with its name; the others go on.
    let mut healthy = std::collections::BTreeSet::new();
    let mut other = Vec::new();
    while other.is_empty() || healthy.len() < 3 {
        let line = stderr.recv_timeout(WAIT).expect("a line on stderr");
        assert_no_keys_in(&line);
        match serde_json::from_str::<Value>(&line) {
            Ok(h) => {
                assert!(h["connected"].is_boolean(), "{h}");
                healthy.insert(h["account"].as_str().unwrap().to_owned());
            }
            Err(_) => other.push(line),
        }
    }
    assert_eq!(
        healthy.into_iter().collect::<Vec<_>>(),
        ["alpha", "beta", "delta"],
        "health lines"
    );
    assert_eq!(other.len(), 1, "{other:?}");
    let report = &other[0];
    assert!(
        report.starts_with("binance-uds: account gamma: BINANCE_CONNECT_FAILED"),
        "{report}"
    );
    // --resync: each account's snapshot first, of its own product.
    let mut snapshots = std::collections::BTreeMap::new();
    while snapshots.len() < 3 {
        let ev = next();
        assert_eq!(ev["event"]["e"], "binance.account_snapshot", "{ev}");
        snapshots.insert(
            ev["account"].as_str().unwrap().to_owned(),
            ev["event"]["product"].clone(),
        );
    }
    assert_eq!(snapshots["alpha"], "usdm");
    assert_eq!(snapshots["beta"], "coinm");
    assert_eq!(snapshots["delta"], "usdm");

    ex.wait_subscribed(3, WAIT);
    // One process: the two USD-M accounts share a stream connection,
    // COIN-M has its own.
    assert_eq!(ex.stat("stream_connections_open"), 2);
    // Filtered out by --events: never printed, before alpha's events.
    ex.control(json!({"cmd": "emit", "api_key": KEY_A, "type": "MARGIN_CALL"}));
    let a = ex.control(
        json!({"cmd": "emit", "api_key": KEY_A, "type": "ORDER_TRADE_UPDATE", "count": 2}),
    );
    let b = ex.control(json!({"cmd": "emit", "api_key": KEY_B, "product": "coinm",
                              "type": "ACCOUNT_UPDATE", "count": 2}));
    let d = ex.control(json!({"cmd": "emit", "api_key": KEY_D, "type": "TRADE_LITE"}));
    let mut seen: Vec<(String, String, i64)> = (0..5)
        .map(|_| {
            let ev = next();
            (
                ev["account"].as_str().unwrap().to_owned(),
                ev["event"]["e"].as_str().unwrap().to_owned(),
                ev["event"]["E"].as_i64().unwrap(),
            )
        })
        .collect();
    seen.sort();
    let [a, b, d] = [a, b, d].map(|e| e["first_E"].as_i64().unwrap());
    let kind = |k: &str| k.to_owned();
    assert_eq!(
        seen,
        vec![
            ("alpha".into(), kind("ORDER_TRADE_UPDATE"), a),
            ("alpha".into(), kind("ORDER_TRADE_UPDATE"), a + 1),
            ("beta".into(), kind("ACCOUNT_UPDATE"), b),
            ("beta".into(), kind("ACCOUNT_UPDATE"), b + 1),
            ("delta".into(), kind("TRADE_LITE"), d),
        ]
    );

    // SIGINT ends the others; the status is gamma's (10 + CONNECT_FAILED).
    let ok = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let deadline = Instant::now() + WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "binance-uds did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(12));
    let rest: Vec<String> = stderr.iter().filter(|l| !l.starts_with('{')).collect();
    for line in stdout.iter().chain(rest.iter().cloned()) {
        assert_no_keys_in(&line);
    }
    assert_eq!(
        rest,
        vec!["binance-uds: 1 of 4 accounts failed: gamma".to_string()]
    );
}

#[test]
fn stream_accounts_refuses_a_bad_line_with_its_number_and_no_key() {
    let ex = Exchange::start(&[]);
    for (contents, says) in [
        (
            format!("# desk\nalpha key_env=UDS_KEY_A\nbeta key_env={API_KEY}\n"),
            ":3: key_env: expected an upper-case environment variable name",
        ),
        (
            format!("alpha key_env=UDS_KEY_A secret_env=UDS_SECRET_A {SECRET_A}\n"),
            ":1: field 4: expected FIELD=VALUE",
        ),
        (
            "alpha key_env=UDS_KEY_A\n\nbeta key_env=UDS_NOT_SET\n".to_string(),
            ":3: account beta: UDS_NOT_SET is not set",
        ),
        (
            "alpha key_env=UDS_KEY_A product=spot\n".to_string(),
            ":1: product: expected usdm, coinm or pm",
        ),
    ] {
        let file = AccountsFile::new("bad", &contents);
        let out = command(&ex)
            .env("UDS_KEY_A", KEY_A)
            .env_remove("UDS_NOT_SET")
            .args(["stream", "--accounts", file.path()])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(out.stdout.is_empty());
        assert!(
            err.contains(&format!("{}{says}", file.path())),
            "{err} does not say {says}"
        );
        assert_no_keys_in(&err);
    }
    // --testnet applies to every account: Portfolio Margin has none.
    let file = AccountsFile::new("pm", "\n  pm1 key_env=UDS_KEY_A product=pm\n");
    let out = command(&ex)
        .env("UDS_KEY_A", KEY_A)
        .args(["--testnet", "stream", "--accounts", file.path()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "{}:2: account pm1: --testnet: Portfolio Margin has no testnet",
            file.path()
        )),
        "{err}"
    );
    // Nothing connected.
    assert_eq!(ex.stat("api_connections_open"), 0);
    let missing = command(&ex)
        .args(["stream", "--accounts", "/nonexistent/desk.conf"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(text(&missing.stderr).contains("--accounts /nonexistent/desk.conf"));
}

/// `Streaming` for a `stream` whose output is read from its first line
/// (nothing waited for before).
fn spawn_stream(mut cmd: Command, args: &[&str]) -> Streaming {
    let mut child = cmd
        .arg("stream")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn binance-uds stream");
    let stdout = lines_of(child.stdout.take().unwrap());
    let stderr = lines_of(child.stderr.take().unwrap());
    Streaming {
        child,
        stdout,
        stderr,
    }
}

#[test]
fn stream_no_wait_subscribed_says_when_live_and_a_refused_subscription_is_a_gap() {
    let ex = Exchange::start(&[]);
    // Acknowledged: binance.stream_subscribed is the first line, then the
    // account's events.
    let s = spawn_stream(command(&ex), &["--no-wait-subscribed", "--health", "1"]);
    let live = s.event();
    assert_eq!(live["e"], "binance.stream_subscribed", "{live}");
    assert!(live["from_ms"].as_i64().unwrap() > 0, "{live}");
    // --health says so too.
    loop {
        let line = s.stderr.recv_timeout(WAIT).expect("a health line");
        let health: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        if health["subscribed"] == true {
            break;
        }
    }
    let emitted = s.prints_emitted(&ex, "TRADE_LITE");
    assert_eq!(emitted["delivered"], 1, "{emitted}");
    s.signal("INT");
    let (status, stderr) = s.wait();
    assert!(status.success(), "{status:?}: {stderr}");

    // Refused after the open returned: the program goes on, and says so
    // with a gap (never "subscribed" before it) once it is live again.
    ex.control(json!({"cmd": "fail", "method": "SUBSCRIBE", "code": 2,
                      "msg": "Invalid request", "count": 1}));
    let s = spawn_stream(command(&ex), &["--no-wait-subscribed"]);
    let mut before = Vec::new();
    let gap = loop {
        let ev = s.event();
        if ev["e"] == "binance.stream_gap" {
            break ev;
        }
        before.push(ev["e"].as_str().unwrap_or("?").to_owned());
    };
    assert_eq!(gap["reason"], "subscribe_failed", "{gap}");
    assert!(
        !before.iter().any(|e| e == "binance.stream_subscribed"),
        "{before:?}"
    );
    assert!(
        before.iter().any(|e| e == "binance.stream_disconnected"),
        "{before:?}"
    );
    s.prints_emitted(&ex, "TRADE_LITE");
    s.signal("TERM");
    let (status, stderr) = s.wait();
    assert!(status.success(), "{status:?}: {stderr}");
}

#[test]
fn stream_accounts_opens_many_without_waiting_and_each_says_when_it_is_live() {
    const N: usize = 300;
    let ex = Exchange::start(&[]);
    let key = |i: usize| format!("cliMANY{i:04}KEY0123456789");
    let lines: String = (0..N)
        .map(|i| format!("acct{i} key_env=UDS_MANY_{i}\n"))
        .collect();
    let file = AccountsFile::new("many", &lines);
    let mut cmd = command(&ex);
    for i in 0..N {
        cmd.env(format!("UDS_MANY_{i}"), key(i));
    }
    let s = spawn_stream(cmd, &["--accounts", file.path()]);
    let next = || -> (usize, Value) {
        let line = s.stdout.recv_timeout(WAIT).expect("an event line");
        assert!(!line.contains("cliMANY"), "a key was printed: {line}");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?} is not JSON: {e}"));
        let name = v["account"].as_str().expect("tagged");
        let i = name.strip_prefix("acct").and_then(|n| n.parse().ok());
        (i.unwrap_or_else(|| panic!("{line}")), v["event"].clone())
    };
    // Events are emitted to every account from the start, each until one
    // reaches it: one that comes right after the acknowledgement must
    // still follow the account's binance.stream_subscribed line.
    let first_e = std::thread::scope(|scope| {
        let emitter = scope.spawn(|| {
            let mut first_e = vec![Value::Null; N];
            let mut pending: Vec<usize> = (0..N).collect();
            let deadline = Instant::now() + WAIT;
            while !pending.is_empty() {
                assert!(
                    Instant::now() < deadline,
                    "{} accounts never got an event",
                    pending.len()
                );
                pending.retain(|&i| {
                    let emitted = ex.control(
                        json!({"cmd": "emit", "api_key": key(i), "type": "ORDER_TRADE_UPDATE"}),
                    );
                    first_e[i] = emitted["first_E"].clone();
                    emitted["delivered"] != 1
                });
                std::thread::sleep(Duration::from_millis(10));
            }
            first_e
        });
        // Every account prints two lines: it is live, then its event.
        let mut lines: Vec<Vec<Value>> = vec![Vec::new(); N];
        for _ in 0..2 * N {
            let (i, ev) = next();
            assert!(lines[i].len() < 2, "acct{i}: a third line {ev}");
            lines[i].push(ev);
        }
        let first_e = emitter.join().expect("the emitting thread");
        for (i, l) in lines.iter().enumerate() {
            assert_eq!(l[0]["e"], "binance.stream_subscribed", "acct{i}: {l:?}");
            assert_eq!(l[1]["e"], "ORDER_TRADE_UPDATE", "acct{i}: {l:?}");
        }
        lines
            .iter()
            .map(|l| l[1]["E"].clone())
            .zip(first_e)
            .collect::<Vec<_>>()
    });
    for (i, (got, sent)) in first_e.iter().enumerate() {
        assert_eq!(got, sent, "acct{i}: the event delivered");
    }
    // Sharing connections: 200 accounts a connection.
    let conns = ex.control(json!({"cmd": "stream_connections"}));
    let conns = conns["connections"].as_array().unwrap();
    let keys: usize = conns
        .iter()
        .map(|c| c["keys"].as_array().unwrap().len())
        .sum();
    assert_eq!((conns.len(), keys), (2, N), "{conns:?}");
    s.signal("INT");
    let (status, stderr) = s.wait();
    assert!(status.success(), "{status:?}: {stderr}");
}
