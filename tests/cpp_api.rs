//! The C++ layer (`include/binance_uds.hpp`) from C++: `tests/cpp/hpp_test.cpp`
//! and the example `examples/cpp/user_stream.cpp` are compiled with
//! `c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror` against the cdylib this
//! build made, and run against a fresh local exchange.
//!
//! `BINANCE_UDS_VALGRIND=1` runs them under valgrind's memcheck
//! (suppressions: `tests/valgrind.supp`); `BINANCE_UDS_SANITIZE=1` builds them
//! with AddressSanitizer and UndefinedBehaviorSanitizer, as `tests/c_api.rs`.

mod common;

use common::native::{self, manifest_dir, Build, Mode, Program, CXX_FLAGS};
use common::Exchange;
use serde_json::json;
use std::path::{Path, PathBuf};

/// Recognisable, so we can assert it is never printed.
const API_KEY: &str = "TESTKEYcpp0123456789abcdef";

/// Compiles `source` (relative to the package root) into `out_name`.
fn compile(source: &str, out_name: &str, mode: Mode) -> PathBuf {
    Build {
        suite: "cpp_api",
        compiler: "c++",
        flags: CXX_FLAGS,
        // tests/c/blocked.h
        includes: &["tests/c"],
        link: true,
    }
    .compile(Path::new(source), out_name, mode)
}

fn exchange_env(ex: &Exchange) -> Vec<(&'static str, String)> {
    native::exchange_env(ex, API_KEY)
}

/// The HMAC secret registered for API_KEY on the exchange: recognisable too.
const SECRET_KEY: &str = "TESTSECRETcpp9876543210";
/// The API key registered with the Ed25519 key.
const ED25519_API_KEY: &str = "EDKEYcpp0123456789abcdef";

#[test]
fn hpp_layer_against_the_local_exchange() {
    let mode = Mode::from_env();
    let exe = compile("tests/cpp/hpp_test.cpp", "hpp_test", mode);
    let (pem, _) = common::cert::ed25519_key();
    let pem_file =
        std::env::temp_dir().join(format!("binance-uds-hpp-test-{}.pem", std::process::id()));
    std::fs::write(&pem_file, pem).unwrap();
    let ex = Exchange::start(&[
        "--account",
        &format!("{API_KEY}:{SECRET_KEY}"),
        "--account-ed25519",
        &format!("{ED25519_API_KEY}:{}", pem_file.display()),
    ]);
    let mut env = exchange_env(&ex);
    env.push(("BINANCE_REST_URL", ex.rest.clone()));
    env.push(("BINANCE_SECRET_KEY", SECRET_KEY.to_owned()));
    env.push(("BINANCE_PRIVATE_KEY_FILE", pem_file.display().to_string()));
    env.push(("BINANCE_ED25519_API_KEY", ED25519_API_KEY.to_owned()));
    let run = Program::start(&exe, &env, mode).wait();
    let _ = std::fs::remove_file(&pem_file);
    run.assert_exit(0, API_KEY);
    run.assert_exit(0, SECRET_KEY);
    assert!(run.stdout.contains("all passed"), "{}", run.output());
    println!("{}", run.output());
}

/// The example prints each event as it arrives and stops after
/// BINANCE_MAX_EVENTS.
#[test]
fn user_stream_example_prints_events() {
    let mode = Mode::from_env();
    let exe = compile("examples/cpp/user_stream.cpp", "user_stream", mode);
    let ex = Exchange::start(&[]);
    let mut env = exchange_env(&ex);
    env.push(("BINANCE_MAX_EVENTS", "3".to_owned()));
    let program = Program::start(&exe, &env, mode);

    // Emit once its stream is connected (an event emitted before is not
    // delivered to it).
    ex.wait_subscribed(1, mode.time_limit());
    let orders = ex.control(
        json!({"cmd": "emit", "api_key": API_KEY, "type": "ORDER_TRADE_UPDATE", "count": 2}),
    );
    let account = ex
        .control(json!({"cmd": "emit", "api_key": API_KEY, "type": "ACCOUNT_UPDATE", "count": 1}));

    let run = program.wait();
    run.assert_exit(0, API_KEY);
    let events: Vec<&str> = run
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("connected"))
        .skip(1)
        .collect();
    let want = [
        format!(
            "ORDER_TRADE_UPDATE E={} symbol=BTCUSDT status=NEW",
            orders["first_E"]
        ),
        format!(
            "ORDER_TRADE_UPDATE E={} symbol=BTCUSDT status=NEW",
            orders["last_E"]
        ),
        format!("ACCOUNT_UPDATE E={}", account["first_E"]),
    ];
    assert_eq!(events, want, "{}", run.output());
    println!("{}", run.output());
}

/// Each failure: exit status 1, the status named on stderr.
#[test]
fn user_stream_example_reports_errors() {
    let mode = Mode::from_env();
    let exe = compile("examples/cpp/user_stream.cpp", "user_stream_errors", mode);
    let ex = Exchange::start(&[]);
    let env = exchange_env(&ex);
    let replaced = |name: &'static str, value: Option<String>| {
        let mut e: Vec<(&'static str, String)> =
            env.iter().filter(|(k, _)| *k != name).cloned().collect();
        e.extend(value.map(|v| (name, v)));
        e
    };

    let no_key = Program::start(&exe, &replaced("BINANCE_API_KEY", None), mode).wait();
    no_key.assert_exit(1, API_KEY);
    assert!(
        no_key.stderr.contains("BINANCE_API_KEY"),
        "{}",
        no_key.output()
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_url = format!("wss://{}/ws-fapi/v1", closed.local_addr().unwrap());
    drop(closed);
    let refused = Program::start(
        &exe,
        &replaced("BINANCE_WS_API_URL", Some(closed_url)),
        mode,
    )
    .wait();
    refused.assert_exit(1, API_KEY);
    assert!(
        refused.stderr.contains("error: BINANCE_CONNECT_FAILED"),
        "{}",
        refused.output()
    );

    ex.control(json!({"cmd": "fail", "status": 401, "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}));
    let rejected = Program::start(&exe, &env, mode).wait();
    rejected.assert_exit(1, API_KEY);
    assert!(
        rejected
            .stderr
            .contains("error: BINANCE_API_ERROR (API code -2015, HTTP status 401): ")
            && rejected.stderr.contains("Invalid API-key"),
        "{}",
        rejected.output()
    );
}

/// The C++ snippet the docs show (a ```cpp block including binance_uds.hpp,
/// in docs/bindings.md or README.md) is the example's code: each of its
/// lines is in examples/cpp/user_stream.cpp, in order.
#[test]
fn docs_cpp_snippet_is_the_example() {
    let example = std::fs::read_to_string(manifest_dir().join("examples/cpp/user_stream.cpp"))
        .expect("read the example");
    let mut checked = 0;
    for doc in ["docs/bindings.md", "README.md"] {
        let Ok(text) = std::fs::read_to_string(manifest_dir().join(doc)) else {
            continue;
        };
        let blocks = text
            .split("```cpp\n")
            .skip(1)
            .filter_map(|rest| rest.split("```").next());
        for block in blocks.filter(|b| b.contains("binance_uds.hpp")) {
            let mut at = 0;
            for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
                match example[at..].find(line) {
                    Some(i) => at += i + line.len(),
                    None => panic!(
                        "{doc}: the C++ snippet line {line:?} is not in examples/cpp/user_stream.cpp \
                         (after the lines before it): copy the snippet from the example"
                    ),
                }
            }
            checked += 1;
        }
    }
    assert!(
        checked > 0,
        "no C++ snippet including binance_uds.hpp in docs/bindings.md or README.md"
    );
}
