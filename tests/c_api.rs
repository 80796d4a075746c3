//! The C API from C. Each program in `tests/c/` is compiled with the system C
//! compiler against `include/binance_uds.h` and the cdylib this build made,
//! and run against a fresh local exchange; it must exit 0. The C examples are
//! built and run the same way, end to end. `BINANCE_UDS_VALGRIND=1` and
//! `BINANCE_UDS_SANITIZE=1` run them all under valgrind or the sanitizers
//! (see tests/support/src/native.rs).

mod common;

use common::native::{self, Build, Mode, Run, CXX_FLAGS, C_AS_CXX_FLAGS, C_FLAGS};
use common::Exchange;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The API key the programs use: recognisable, so they can assert it never
/// appears in an error message (and this file, in their output).
const API_KEY: &str = "TESTKEYabcdef0123456789";

/// Compiles one source file (relative to the package root) into an
/// executable linked to the cdylib, and returns its path.
fn compile(source: &str, compiler: &str, flags: &[&str], out_name: &str, mode: Mode) -> PathBuf {
    Build {
        suite: "c_api",
        compiler,
        flags,
        includes: &["tests/c"],
        link: true,
    }
    .compile(Path::new(source), out_name, mode)
}

fn exchange_env(ex: &Exchange) -> Vec<(&'static str, String)> {
    native::exchange_env(ex, API_KEY)
}

fn run(exe: &Path, env: &[(&str, String)], mode: Mode) -> Run {
    native::run(exe, env, mode)
}

/// Compiles a test program, runs it against a fresh exchange, and asserts
/// it passed.
fn c_test(source: &str, compiler: &str, flags: &[&str], out_name: &str) {
    let mode = Mode::from_env();
    let exe = compile(source, compiler, flags, out_name, mode);
    let ex = Exchange::start(&[]);
    let run = run(&exe, &exchange_env(&ex), mode);
    run.assert_exit(0, API_KEY);
    println!("{}", run.output());
}

#[test]
fn arguments_and_null_handling() {
    c_test("tests/c/api_args.c", "cc", C_FLAGS, "api_args");
}

#[test]
fn header_compiles_and_runs_as_cxx() {
    c_test("tests/c/api_args.c", "c++", C_AS_CXX_FLAGS, "api_args_cxx");
}

#[test]
fn listen_key_and_api_errors() {
    c_test("tests/c/listen_key.c", "cc", C_FLAGS, "listen_key");
}

#[test]
fn server_faults_and_recovery() {
    c_test("tests/c/faults.c", "cc", C_FLAGS, "faults");
}

#[test]
fn connect_tls_and_timeouts() {
    c_test("tests/c/connect.c", "cc", C_FLAGS, "connect");
}

#[test]
fn user_stream_and_events() {
    c_test("tests/c/user_stream.c", "cc", C_FLAGS, "user_stream");
}

/// The secret key the account program signs with (the harness's default).
const SECRET_KEY: &str = "TESTSECRETzyxw9876543210";

/// Whether a signed request's signature verifies, with the HMAC secret or
/// the Ed25519 key.
fn signature_verifies(r: &common::http::Request, ed25519: &ed25519_dalek::VerifyingKey) -> bool {
    use ed25519_dalek::Verifier;
    use hmac::Mac;
    let Some((payload, signature)) = r.query.rsplit_once("&signature=") else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET_KEY.as_bytes()).unwrap();
    mac.update(payload.as_bytes());
    if data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes()) == signature {
        return true;
    }
    let b64 = signature
        .replace("%2B", "+")
        .replace("%2F", "/")
        .replace("%3D", "=");
    data_encoding::BASE64
        .decode(b64.as_bytes())
        .ok()
        .and_then(|b| ed25519_dalek::Signature::from_slice(&b).ok())
        .is_some_and(|sig| ed25519.verify(payload.as_bytes(), &sig).is_ok())
}

/// tests/c/account.c against a REST server that verifies its signatures
/// and answers by the recvWindow the program chose (see the program), and
/// against the local exchange's signed REST API with both key types.
#[test]
fn account_snapshot_signing_and_errors() {
    use common::http::{binance_answer, Response, Server};
    let mode = Mode::from_env();
    let exe = compile("tests/c/account.c", "cc", C_FLAGS, "account", mode);
    let (pem, verifying) = common::cert::ed25519_key();
    let pem_file =
        std::env::temp_dir().join(format!("binance-uds-c-account-{}.pem", std::process::id()));
    std::fs::write(&pem_file, pem).unwrap();
    const ED25519_API_KEY: &str = "EDKEY0123456789abcdef";
    let ex = Exchange::start(&[
        "--account",
        &format!("{API_KEY}:{SECRET_KEY}"),
        "--account-ed25519",
        &format!("{ED25519_API_KEY}:{}", pem_file.display()),
    ]);
    let rest = Server::start(move |r| {
        if r.path == "/fapi/v1/time" {
            return Some(binance_answer(r, 0));
        }
        Some(match r.param("recvWindow") {
            Some("4291") => Response::json(429, r#"{"code":-1003,"msg":"Too many requests."}"#)
                .header("Retry-After", "3"),
            Some("1021") => Response::json(
                400,
                r#"{"code":-1021,"msg":"Timestamp for this request is outside of the recvWindow."}"#,
            ),
            _ if !signature_verifies(r, &verifying) => Response::json(
                400,
                r#"{"code":-1022,"msg":"Signature for this request is not valid."}"#,
            ),
            _ => binance_answer(r, 0),
        })
    });
    let mut env = exchange_env(&ex);
    env.push(("BINANCE_REST_URL", rest.url()));
    env.push(("BINANCE_SECRET_KEY", SECRET_KEY.to_owned()));
    env.push(("BINANCE_PRIVATE_KEY_FILE", pem_file.display().to_string()));
    env.push(("BINANCE_EXCHANGE_REST_URL", ex.rest.clone()));
    env.push(("BINANCE_ED25519_API_KEY", ED25519_API_KEY.to_owned()));
    let run = run(&exe, &env, mode);
    let _ = std::fs::remove_file(&pem_file);
    run.assert_exit(0, API_KEY);
    run.assert_exit(0, SECRET_KEY);
    // Three good snapshots reached the server, each with its five requests.
    assert!(
        rest.count("/fapi/v1/openAlgoOrders") >= 3,
        "{:?}",
        rest.requests()
    );
    println!("{}", run.output());
}

#[test]
fn one_client_from_many_threads() {
    c_test("tests/c/threads.c", "cc", C_FLAGS, "threads");
}

/// An example run end to end: exit 0, each step printed, the key masked to
/// its first 4 characters and `…`, the key stopped on the exchange. Then its
/// error paths: no API key, nothing listening, an API error.
fn example(source: &str, compiler: &str, flags: &[&str], out_name: &str) {
    let mode = Mode::from_env();
    let exe = compile(source, compiler, flags, out_name, mode);
    let ex = Exchange::start(&[]);
    let env = exchange_env(&ex);

    let ok = run(&exe, &env, mode);
    ok.assert_exit(0, API_KEY);
    for step in ["start: listenKey ", "keepalive: listenKey ", "stop: "] {
        assert!(
            ok.stdout.contains(step),
            "no {step:?} line:\n{}",
            ok.output()
        );
    }
    let masked = ok
        .stdout
        .split("start: listenKey ")
        .nth(1)
        .and_then(|rest| rest.split('…').next())
        .unwrap_or_default();
    assert!(
        masked.len() == 4 && masked.bytes().all(|b| b.is_ascii_alphanumeric()),
        "the key is not shown as 4 characters and …:\n{}",
        ok.output()
    );
    // No whole key (64 letters and digits) anywhere.
    let longest_word = ok
        .stdout
        .split(|c: char| !c.is_ascii_alphanumeric())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_word < 16,
        "a listenKey was printed:\n{}",
        ok.output()
    );
    let stats = ex.stats();
    for method in [
        "userDataStream.start",
        "userDataStream.ping",
        "userDataStream.stop",
    ] {
        assert_eq!(stats["requests"][method], 1, "{method}: {stats}");
    }

    // Each failure: exit status 1 and the status named on stderr.
    let without = |name: &str| -> Vec<(&'static str, String)> {
        env.iter().filter(|(k, _)| *k != name).cloned().collect()
    };
    let no_key = run(&exe, &without("BINANCE_API_KEY"), mode);
    assert_eq!(no_key.status.code(), Some(1), "{}", no_key.output());
    assert!(
        no_key.stderr.contains("BINANCE_API_KEY"),
        "{}",
        no_key.output()
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("wss://{}/ws-fapi/v1", closed.local_addr().unwrap());
    drop(closed);
    let mut env_closed = without("BINANCE_WS_API_URL");
    env_closed.push(("BINANCE_WS_API_URL", closed_url));
    let refused = run(&exe, &env_closed, mode);
    assert_eq!(refused.status.code(), Some(1), "{}", refused.output());
    assert!(
        refused.stderr.contains("BINANCE_CONNECT_FAILED"),
        "{}",
        refused.output()
    );

    ex.control(serde_json::json!({
        "cmd": "fail", "status": 401, "code": -2015,
        "msg": "Invalid API-key, IP, or permissions for action.", "count": 1
    }));
    let rejected = run(&exe, &env, mode);
    assert_eq!(rejected.status.code(), Some(1), "{}", rejected.output());
    for part in ["BINANCE_API_ERROR", "-2015", "401", "Invalid API-key"] {
        assert!(
            rejected.stderr.contains(part),
            "no {part:?}:\n{}",
            rejected.output()
        );
    }
    assert!(!rejected.stderr.contains(API_KEY), "{}", rejected.output());
    println!("{}", ok.output());
}

#[test]
fn c_example_end_to_end() {
    example(
        "examples/c/listen_key.c",
        "cc",
        C_FLAGS,
        "example_listen_key_c",
    );
}

#[test]
fn cxx_example_end_to_end() {
    example(
        "examples/cpp/listen_key.cpp",
        "c++",
        CXX_FLAGS,
        "example_listen_key_cpp",
    );
}

/// Emits `types` on the exchange once a program's stream is subscribed
/// there, from a thread (the program runs meanwhile).
fn emit_once_subscribed(
    ex: &Exchange,
    types: &'static [&'static str],
) -> std::thread::JoinHandle<()> {
    let control = ex.control;
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        while common::control_at(control, serde_json::json!({"cmd": "stream_connections"}))
            ["connections"]
            .as_array()
            .is_none_or(|c| {
                c.iter()
                    .all(|c| c["keys"].as_array().is_none_or(Vec::is_empty))
            })
        {
            assert!(
                Instant::now() < deadline,
                "the example never opened its stream"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for t in types {
            common::control_at(
                control,
                serde_json::json!({"cmd": "emit", "api_key": API_KEY, "type": t}),
            );
        }
    })
}

/// Runs a stream example that prints a line per event after its first
/// line, with account activity once it is up, and checks the events it
/// printed are the ones emitted, in order, with the fields it picks out.
fn stream_example_prints_the_events(source: &str, out_name: &str) {
    let mode = Mode::from_env();
    let exe = compile(source, "cc", C_FLAGS, out_name, mode);
    let ex = Exchange::start(&[]);
    let mut env = exchange_env(&ex);
    env.push(("BINANCE_MAX_EVENTS", "4".to_owned()));
    let emitter = emit_once_subscribed(
        &ex,
        &[
            "ORDER_TRADE_UPDATE",
            "ACCOUNT_UPDATE",
            "TRADE_LITE",
            "ORDER_TRADE_UPDATE",
        ],
    );
    let out = run(&exe, &env, mode);
    emitter.join().unwrap();
    out.assert_exit(0, API_KEY);
    let lines: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{}", out.output());
    assert!(
        lines[0].ends_with("ORDER_TRADE_UPDATE BTCUSDT NEW"),
        "{}",
        out.output()
    );
    assert!(lines[1].contains(" ACCOUNT_UPDATE {"), "{}", out.output());
    assert!(lines[2].contains(" TRADE_LITE {"), "{}", out.output());
    assert!(
        lines[3].ends_with("ORDER_TRADE_UPDATE BTCUSDT NEW"),
        "{}",
        out.output()
    );
    assert!(!out.stdout.contains(API_KEY) && !out.stderr.contains(API_KEY));
}

/// examples/c/user_stream.c prints the events the exchange emits, in order,
/// with the fields it picks out, and stops after BINANCE_MAX_EVENTS.
#[test]
fn c_user_stream_example_end_to_end() {
    stream_example_prints_the_events("examples/c/user_stream.c", "example_user_stream_c");
}

/// examples/c/poll_stream.c, a poll() loop on the stream's descriptor,
/// prints the same events the same way.
#[test]
fn c_poll_stream_example_end_to_end() {
    stream_example_prints_the_events("examples/c/poll_stream.c", "example_poll_stream_c");
}

/// One value of the exchange's JSON as the example prints it: strings
/// unquoted, numbers as their JSON text.
fn printed(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

/// The exchange's open orders and (non-zero) positions, as the lines of
/// examples/c/account_book.c's book, sorted.
fn exchange_book(ex: &Exchange) -> Vec<String> {
    let t = ex.control(serde_json::json!({"cmd": "snapshot", "api_key": API_KEY}));
    let mut lines: Vec<String> = t["open_orders"]
        .as_array()
        .expect("open_orders")
        .iter()
        .map(|o| {
            format!(
                "order {} {} {} {} price={} origQty={} executedQty={} updateTime={}",
                printed(&o["orderId"]),
                printed(&o["symbol"]),
                printed(&o["side"]),
                printed(&o["status"]),
                printed(&o["price"]),
                printed(&o["origQty"]),
                printed(&o["executedQty"]),
                printed(&o["updateTime"])
            )
        })
        .collect();
    lines.extend(
        t["positions"]
            .as_array()
            .expect("positions")
            .iter()
            .filter(|p| printed(&p["positionAmt"]).parse::<f64>().unwrap_or(0.0) != 0.0)
            .map(|p| {
                format!(
                    "position {} {} positionAmt={} entryPrice={} updateTime={}",
                    printed(&p["symbol"]),
                    printed(&p["positionSide"]),
                    printed(&p["positionAmt"]),
                    printed(&p["entryPrice"]),
                    printed(&p["updateTime"])
                )
            }),
    );
    lines.sort();
    lines
}

/// The last complete book the example printed (between "book after" and
/// "end of book"), sorted; None before the first.
fn last_printed_book(stdout: &str) -> Option<Vec<String>> {
    let lines: Vec<&str> = stdout.lines().collect();
    let end = lines.iter().rposition(|l| *l == "end of book")?;
    let start = lines[..end]
        .iter()
        .rposition(|l| l.starts_with("book after "))?;
    let mut book: Vec<String> = lines[start + 1..end]
        .iter()
        .map(|l| l.trim().to_owned())
        .collect();
    book.sort();
    Some(book)
}

/// Trading through the control port, as tests/account.rs's `trade()`.
fn control(ex: &Exchange, cmd: serde_json::Value) -> serde_json::Value {
    let mut cmd = cmd;
    cmd["api_key"] = API_KEY.into();
    ex.control(cmd)
}

fn place(
    ex: &Exchange,
    symbol: &str,
    side: &str,
    quantity: &str,
    price: &str,
) -> serde_json::Value {
    control(
        ex,
        serde_json::json!({"cmd": "order_place", "symbol": symbol, "side": side,
                           "quantity": quantity, "price": price}),
    )["order_id"]
        .clone()
}

/// examples/c/account_book.c (issue 11) keeps the account's open orders and
/// positions from the first snapshot, the events and, after a dropped
/// stream with trading during the outage, the snapshot that follows the
/// gap: after each phase its printed book is the exchange's own state.
#[test]
fn c_account_book_example_follows_the_exchange() {
    let mode = Mode::from_env();
    let exe = compile(
        "examples/c/account_book.c",
        "cc",
        C_FLAGS,
        "example_account_book_c",
        mode,
    );
    let ex = Exchange::start(&["--account", &format!("{API_KEY}:{SECRET_KEY}")]);
    let mut env = exchange_env(&ex);
    env.push(("BINANCE_SECRET_KEY", SECRET_KEY.to_owned()));
    env.push(("BINANCE_REST_URL", ex.rest.clone()));
    let program = native::Program::start(&exe, &env, mode);
    let deadline = Instant::now() + mode.time_limit();
    // Waits until the example's latest book is the exchange's and `also`
    // holds for its output.
    let settle = |phase: &str, also: &dyn Fn(&str) -> bool| loop {
        let out = program.stdout_so_far();
        let want = exchange_book(&ex);
        if also(&out) && last_printed_book(&out).as_ref() == Some(&want) {
            return;
        }
        if Instant::now() > deadline {
            program.terminate();
            panic!(
                "{phase}: the example's book is not the exchange's {want:#?}\n{}",
                program.output_so_far()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };

    // The first snapshot: an empty account.
    settle("the first snapshot", &|out| {
        out.contains("book after binance.account_snapshot")
    });

    // Trading while the stream is up: the events build the book.
    control(
        &ex,
        serde_json::json!({"cmd": "deposit", "asset": "USDT", "amount": "1000"}),
    );
    let a = place(&ex, "BTCUSDT", "BUY", "0.010", "60000");
    let b = place(&ex, "BTCUSDT", "BUY", "0.002", "59000");
    let c = place(&ex, "ETHUSDT", "SELL", "0.5", "3000");
    control(
        &ex,
        serde_json::json!({"cmd": "order_fill", "order_id": a, "quantity": "0.004"}),
    );
    control(&ex, serde_json::json!({"cmd": "order_fill", "order_id": b}));
    control(
        &ex,
        serde_json::json!({"cmd": "order_cancel", "order_id": c}),
    );
    settle("events while connected", &|out| {
        out.contains("book after ORDER_TRADE_UPDATE") && out.contains("book after ACCOUNT_UPDATE")
    });

    // The stream drops; trading goes on while it is down. The gap, then the
    // snapshot, bring the book back to the exchange's state.
    ex.control(serde_json::json!({"cmd": "drop", "target": "stream"}));
    let d = place(&ex, "BTCUSDT", "SELL", "0.003", "61000");
    control(&ex, serde_json::json!({"cmd": "order_fill", "order_id": a}));
    control(
        &ex,
        serde_json::json!({"cmd": "order_fill", "order_id": d, "quantity": "0.001"}),
    );
    let e = place(&ex, "ETHUSDT", "BUY", "1", "2900");
    settle("after the gap", &|out| {
        out.contains("gap: reason=")
            && out.matches("book after binance.account_snapshot").count() >= 2
    });

    // And the events after the resync apply on top of that snapshot. The
    // output so far is measured before the trades: their events can be
    // printed before the second control command returns.
    let before = program.stdout_so_far().len();
    control(
        &ex,
        serde_json::json!({"cmd": "order_cancel", "order_id": e}),
    );
    control(&ex, serde_json::json!({"cmd": "order_fill", "order_id": d}));
    settle("events after the resync", &|out| {
        out.len() > before && out[before..].contains("book after ORDER_TRADE_UPDATE")
    });

    program.terminate();
    let finished = program.wait();
    finished.assert_exit(0, API_KEY);
    finished.assert_exit(0, SECRET_KEY);
    assert_eq!(
        last_printed_book(&finished.stdout),
        Some(exchange_book(&ex)),
        "{}",
        finished.output()
    );
    println!("{}", finished.output());

    // Without a signing key it says what is missing and fails.
    let unsigned: Vec<_> = env
        .iter()
        .filter(|(k, _)| *k != "BINANCE_SECRET_KEY")
        .cloned()
        .collect();
    let no_secret = run(&exe, &unsigned, mode);
    assert_eq!(no_secret.status.code(), Some(1), "{}", no_secret.output());
    assert!(
        no_secret.stderr.contains("BINANCE_SECRET_KEY"),
        "{}",
        no_secret.output()
    );
    // A secret the exchange rejects: the stream opens, and its first event
    // is the failed snapshot (-1022), printed; BINANCE_MAX_EVENTS stops it.
    let mut wrong: Vec<_> = unsigned;
    wrong.push(("BINANCE_SECRET_KEY", "WRONGSECRET0123456789".to_owned()));
    wrong.push(("BINANCE_MAX_EVENTS", "1".to_owned()));
    let rejected = run(&exe, &wrong, mode);
    rejected.assert_exit(0, "WRONGSECRET0123456789");
    assert!(
        rejected
            .stdout
            .contains("snapshot failed: BINANCE_API_ERROR (code -1022)"),
        "{}",
        rejected.output()
    );
}
