//! The C API from C. Each program in `tests/c/` is compiled with the system C
//! compiler against `include/binance_uds.h` and the cdylib this build made,
//! and run against a fresh local exchange; it must exit 0. The examples in
//! `examples/c` and `examples/cpp` are built and run the same way, end to end.
//!
//! `BINANCE_UDS_VALGRIND=1` runs every program under valgrind's memcheck
//! (suppressions: `tests/valgrind.supp`); `BINANCE_UDS_SANITIZE=1` builds them
//! with AddressSanitizer and UndefinedBehaviorSanitizer (the Rust library is
//! not instrumented; its allocations are still checked for leaks).

mod common;

use common::Exchange;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The API key the programs use: recognisable, so they can assert it never
/// appears in an error message (and this file, in their output).
const API_KEY: &str = "TESTKEYabcdef0123456789";

const C_FLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
/// One C test is also compiled as C++: the header must work there as is.
const C_AS_CXX_FLAGS: &[&str] = &["-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-Werror"];
const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
const SANITIZE_FLAGS: &[&str] = &["-fsanitize=address,undefined", "-fno-omit-frame-pointer"];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
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

    /// How long one program may run.
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

/// The directory of the cdylib this test run was built with. This test runs
/// from `target/<profile>/deps/`, where `cargo test` (re)builds the library
/// with all its crate types; the copy in `target/<profile>/` is only
/// refreshed by `cargo build`, so it may be stale and is the fallback.
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

/// A directory under the target dir for this mode's executables.
fn work_dir(mode: Mode) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let dir = profile_dir.join("c_api").join(mode.dir_name());
    std::fs::create_dir_all(&dir).expect("create the build dir under target/");
    dir
}

/// Whether `program` runs at all.
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// Compiles one source file (relative to the package root) into an
/// executable linked to the cdylib, and returns its path.
fn compile(source: &str, compiler: &str, flags: &[&str], out_name: &str, mode: Mode) -> PathBuf {
    assert!(
        have(compiler),
        "the compiler `{compiler}` was not found: the C API tests need a C and C++ compiler \
         (on Debian/Ubuntu: apt-get install gcc g++)"
    );
    let lib_dir = library_dir();
    let exe = work_dir(mode).join(out_name);
    let mut cmd = Command::new(compiler);
    cmd.args(flags).arg("-g");
    if mode == Mode::Sanitize {
        cmd.args(SANITIZE_FLAGS);
    }
    cmd.arg("-I")
        .arg(manifest_dir().join("include"))
        .arg("-I")
        .arg(manifest_dir().join("tests/c"))
        .arg("-o")
        .arg(&exe)
        .arg(manifest_dir().join(source))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lbinance_uds")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-lpthread");
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "compiling {source} failed: {cmd:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// What a program did.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
    command: String,
}

impl Run {
    fn output(&self) -> String {
        format!(
            "$ {}\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    fn assert_success(&self) {
        assert!(
            self.status.success(),
            "the program failed:\n{}",
            self.output()
        );
        assert!(
            !self.stdout.contains(API_KEY) && !self.stderr.contains(API_KEY),
            "the API key was printed:\n{}",
            self.output()
        );
    }
}

/// The environment the programs read: the exchange, its CA, its control port
/// and the API key.
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

/// Runs `exe` with exactly `env` on top of ours (under valgrind in that
/// mode), within the mode's time limit.
fn run(exe: &Path, env: &[(&str, String)], mode: Mode) -> Run {
    let mut cmd = match mode {
        Mode::Valgrind => {
            assert!(
                have("valgrind"),
                "BINANCE_UDS_VALGRIND=1 but valgrind was not found (apt-get install valgrind)"
            );
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
            // Fewer iterations: valgrind runs everything tens of times slower.
            c.env("BINANCE_TEST_SCALE", "0.1");
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
    // Hermetic: no proxy from the caller's environment on loopback.
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
        "BINANCE_WS_API_URL",
        "BINANCE_CA_FILE",
        "BINANCE_TEST_CONTROL",
        "BINANCE_API_KEY",
    ] {
        cmd.env_remove(name);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let command = format!("{cmd:?}");

    // Output goes to files: no pipe to drain while waiting.
    let name = exe
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("program");
    let out_path = exe.with_file_name(format!("{name}.stdout"));
    let err_path = exe.with_file_name(format!("{name}.stderr"));
    cmd.stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("stdout file"))
        .stderr(File::create(&err_path).expect("stderr file"));
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("starting {command}: {e}"));
    let deadline = Instant::now() + mode.time_limit();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the program") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{command} still ran after {:?}: killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                mode.time_limit(),
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read =
        |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned();
    Run {
        status,
        stdout: read(&out_path),
        stderr: read(&err_path),
        command,
    }
}

/// Compiles a test program, runs it against a fresh exchange, and asserts
/// it passed.
fn c_test(source: &str, compiler: &str, flags: &[&str], out_name: &str) {
    let mode = Mode::from_env();
    let exe = compile(source, compiler, flags, out_name, mode);
    let ex = Exchange::start(&[]);
    let run = run(&exe, &exchange_env(&ex), mode);
    run.assert_success();
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
    ok.assert_success();
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

/// examples/c/user_stream.c prints the events the exchange emits, in order,
/// with the fields it picks out, and stops after BINANCE_MAX_EVENTS.
#[test]
fn c_user_stream_example_end_to_end() {
    let mode = Mode::from_env();
    let exe = compile(
        "examples/c/user_stream.c",
        "cc",
        C_FLAGS,
        "example_user_stream_c",
        mode,
    );
    let ex = Exchange::start(&[]);
    let mut env = exchange_env(&ex);
    env.push(("BINANCE_MAX_EVENTS", "4".to_owned()));
    let control = ex.control;
    let emitter = std::thread::spawn(move || {
        // Once the example's stream is up, some account activity.
        let deadline = Instant::now() + Duration::from_secs(60);
        while common::control_at(control, serde_json::json!({"cmd": "stats"}))
            ["stream_connections_open"]
            != 1
        {
            assert!(
                Instant::now() < deadline,
                "the example never opened its stream"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for t in [
            "ORDER_TRADE_UPDATE",
            "ACCOUNT_UPDATE",
            "TRADE_LITE",
            "ORDER_TRADE_UPDATE",
        ] {
            common::control_at(
                control,
                serde_json::json!({"cmd": "emit", "api_key": API_KEY, "type": t}),
            );
        }
    });
    let out = run(&exe, &env, mode);
    emitter.join().unwrap();
    out.assert_success();
    let lines: Vec<&str> = out.stdout.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{}", out.output());
    assert!(
        lines[0].ends_with("ORDER_TRADE_UPDATE BTCUSDT NEW"),
        "{}",
        out.output()
    );
    assert!(lines[1].contains(" ACCOUNT_UPDATE {"), "{}", out.output());
    assert!(lines[2].contains(" TRADE_LITE {"), "{}", out.output());
    assert!(!out.stdout.contains(API_KEY) && !out.stderr.contains(API_KEY));
}
