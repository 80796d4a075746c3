//! The C++ layer (`include/binance_uds.hpp`) from C++: `tests/cpp/hpp_test.cpp`
//! and the example `examples/cpp/user_stream.cpp` are compiled with
//! `c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror` against the cdylib this
//! build made, and run against a fresh local exchange.
//!
//! `BINANCE_UDS_VALGRIND=1` runs them under valgrind's memcheck
//! (suppressions: `tests/valgrind.supp`); `BINANCE_UDS_SANITIZE=1` builds them
//! with AddressSanitizer and UndefinedBehaviorSanitizer, as `tests/c_api.rs`.

mod common;

use common::Exchange;
use serde_json::json;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Recognisable, so we can assert it is never printed.
const API_KEY: &str = "TESTKEYcpp0123456789abcdef";

const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
const SANITIZE_FLAGS: &[&str] = &["-fsanitize=address,undefined", "-fno-omit-frame-pointer"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Valgrind,
    Sanitize,
}

impl Mode {
    fn from_env() -> Mode {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        match (on("BINANCE_UDS_VALGRIND"), on("BINANCE_UDS_SANITIZE")) {
            (true, true) => panic!("set BINANCE_UDS_VALGRIND or BINANCE_UDS_SANITIZE, not both"),
            (true, false) => Mode::Valgrind,
            (false, true) => Mode::Sanitize,
            (false, false) => Mode::Plain,
        }
    }

    fn time_limit(self) -> Duration {
        match self {
            Mode::Valgrind => Duration::from_secs(900),
            _ => Duration::from_secs(120),
        }
    }

    fn dir_name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Valgrind => "valgrind",
            Mode::Sanitize => "sanitize",
        }
    }
}

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The directory of the cdylib: `target/<profile>/deps/`, where `cargo test`
/// builds the library with all its crate types, else `target/<profile>/`.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let deps = exe.parent().expect("the test executable's directory");
    let file = format!(
        "{}binance_uds{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    let found = [Some(deps), deps.parent()]
        .into_iter()
        .flatten()
        .find(|dir| dir.join(&file).exists())
        .map(Path::to_path_buf);
    found.unwrap_or_else(|| {
        panic!(
            "{file} not found in {} or its parent: build the library first (`cargo build`)",
            deps.display()
        )
    })
}

/// `target/<profile>/cpp_api/<mode>/`: where the programs are built.
fn work_dir(mode: Mode) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let dir = profile_dir.join("cpp_api").join(mode.dir_name());
    std::fs::create_dir_all(&dir).expect("create the build dir under target/");
    dir
}

/// Compiles `source` (relative to the package root) into `out_name`.
fn compile(source: &str, out_name: &str, mode: Mode) -> PathBuf {
    let lib_dir = library_dir();
    let exe = work_dir(mode).join(out_name);
    let mut cmd = Command::new("c++");
    cmd.args(CXX_FLAGS).arg("-g");
    if mode == Mode::Sanitize {
        cmd.args(SANITIZE_FLAGS);
    }
    cmd.arg("-I")
        .arg(manifest_dir().join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(manifest_dir().join(source))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lbinance_uds")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lpthread");
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("running {cmd:?}: {e} (the C++ tests need a C++17 compiler as `c++`)")
    });
    assert!(
        out.status.success(),
        "compiling {source} failed: {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// The environment the programs read.
fn exchange_env(ex: &Exchange) -> Vec<(&'static str, String)> {
    let ca_file = ex.ca_file.as_ref().expect("a TLS exchange has a CA file");
    vec![
        ("BINANCE_WS_API_URL", ex.ws_api.clone()),
        ("BINANCE_STREAM_URL", ex.stream.clone()),
        ("BINANCE_CA_FILE", ca_file.display().to_string()),
        ("BINANCE_TEST_CONTROL", ex.control.to_string()),
        ("BINANCE_API_KEY", API_KEY.to_owned()),
    ]
}

/// A started program; its output goes to files next to it.
struct Program {
    child: Child,
    command: String,
    out_path: PathBuf,
    err_path: PathBuf,
    deadline: Instant,
}

/// What a program did.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    command: String,
}

impl Program {
    /// Starts `exe` with `env` (and nothing of ours that it reads).
    fn start(exe: &Path, env: &[(&str, String)], mode: Mode) -> Program {
        let mut cmd = match mode {
            Mode::Valgrind => {
                let mut c = Command::new("valgrind");
                c.args([
                    "--error-exitcode=99",
                    "--leak-check=full",
                    "--errors-for-leak-kinds=definite,indirect",
                    "--show-leak-kinds=definite,indirect",
                    "--num-callers=40",
                ])
                .arg(format!(
                    "--suppressions={}",
                    manifest_dir().join("tests/valgrind.supp").display()
                ))
                .arg(exe);
                c
            }
            Mode::Sanitize => {
                let mut c = Command::new(exe);
                c.env("ASAN_OPTIONS", "detect_leaks=1")
                    .env("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1");
                c
            }
            Mode::Plain => Command::new(exe),
        };
        for name in [
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
            "NO_PROXY",
            "no_proxy",
            "BINANCE_WS_API_URL",
            "BINANCE_STREAM_URL",
            "BINANCE_CA_FILE",
            "BINANCE_TEST_CONTROL",
            "BINANCE_API_KEY",
            "BINANCE_MAX_EVENTS",
        ] {
            cmd.env_remove(name);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let command = format!("{cmd:?}");
        let name = exe
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("program");
        let out_path = exe.with_file_name(format!("{name}.stdout"));
        let err_path = exe.with_file_name(format!("{name}.stderr"));
        cmd.stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"));
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {command}: {e}"));
        Program {
            child,
            command,
            out_path,
            err_path,
            deadline: Instant::now() + mode.time_limit(),
        }
    }

    /// Waits for it to exit (killing it at the time limit).
    fn wait(mut self) -> Run {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the program") {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still ran at its time limit: killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.command,
                    read(&self.out_path),
                    read(&self.err_path)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            status,
            stdout: read(&self.out_path),
            stderr: read(&self.err_path),
            command: self.command,
        }
    }
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

impl Run {
    fn output(&self) -> String {
        format!(
            "$ {}\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    fn assert_exit(&self, code: i32) {
        assert_eq!(self.status.code(), Some(code), "{}", self.output());
        assert!(
            !self.stdout.contains(API_KEY) && !self.stderr.contains(API_KEY),
            "the API key was printed:\n{}",
            self.output()
        );
    }
}

#[test]
fn hpp_layer_against_the_local_exchange() {
    let mode = Mode::from_env();
    let exe = compile("tests/cpp/hpp_test.cpp", "hpp_test", mode);
    let ex = Exchange::start(&[]);
    let run = Program::start(&exe, &exchange_env(&ex), mode).wait();
    run.assert_exit(0);
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
    let deadline = Instant::now() + mode.time_limit();
    while ex.stats()["stream_connections_open"] != 1 {
        assert!(
            Instant::now() < deadline,
            "the example never connected its stream"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let orders = ex.control(
        json!({"cmd": "emit", "api_key": API_KEY, "type": "ORDER_TRADE_UPDATE", "count": 2}),
    );
    let account = ex
        .control(json!({"cmd": "emit", "api_key": API_KEY, "type": "ACCOUNT_UPDATE", "count": 1}));

    let run = program.wait();
    run.assert_exit(0);
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
    no_key.assert_exit(1);
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
    refused.assert_exit(1);
    assert!(
        refused.stderr.contains("error: BINANCE_CONNECT_FAILED"),
        "{}",
        refused.output()
    );

    ex.control(json!({"cmd": "fail", "status": 401, "code": -2015, "msg": "Invalid API-key, IP, or permissions for action."}));
    let rejected = Program::start(&exe, &env, mode).wait();
    rejected.assert_exit(1);
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
