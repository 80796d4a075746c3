//! Building and running C and C++ programs against the cdylib this build
//! made: shared by the C, C++ and README tests.
//!
//! `BINANCE_UDS_VALGRIND=1` runs every program under valgrind's memcheck
//! (suppressions: `tests/valgrind.supp`; definite and indirect leaks are
//! errors); `BINANCE_UDS_SANITIZE=1` builds them with AddressSanitizer and
//! UndefinedBehaviorSanitizer (the Rust library is not instrumented; its
//! allocations are still checked for leaks).

use super::Exchange;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const C_FLAGS: &[&str] = &["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
/// A C program compiled as C++: the header must work there as is.
pub const C_AS_CXX_FLAGS: &[&str] = &["-x", "c++", "-std=c++17", "-Wall", "-Wextra", "-Werror"];
pub const CXX_FLAGS: &[&str] = &["-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror"];
const SANITIZE_FLAGS: &[&str] = &["-fsanitize=address,undefined", "-fno-omit-frame-pointer"];

/// The variables a program may read from its environment: cleared before
/// each run so that only what the test gives counts (and no proxy applies).
const CLEARED: &[&str] = &[
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
    "BINANCE_SECRET_KEY",
    "BINANCE_REST_URL",
    "BINANCE_PRIVATE_KEY_FILE",
    "BINANCE_EXCHANGE_REST_URL",
    "BINANCE_ED25519_API_KEY",
];

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    Plain,
    Valgrind,
    Sanitize,
}

impl Mode {
    pub fn from_env() -> Mode {
        let on = |name: &str| std::env::var(name).is_ok_and(|v| v == "1");
        match (on("BINANCE_UDS_VALGRIND"), on("BINANCE_UDS_SANITIZE")) {
            (true, true) => panic!("set BINANCE_UDS_VALGRIND or BINANCE_UDS_SANITIZE, not both"),
            (true, false) => Mode::Valgrind,
            (false, true) => Mode::Sanitize,
            (false, false) => Mode::Plain,
        }
    }

    /// How long one program may run.
    pub fn time_limit(self) -> Duration {
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

/// The binance-uds package root (this crate is tests/support in it).
pub fn manifest_dir() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .canonicalize()
            .expect("the package root")
    })
}

/// The directory of the cdylib this test run was built with. Tests run from
/// `target/<profile>/deps/`, where `cargo test` (re)builds the library with
/// all its crate types; the copy in `target/<profile>/` is only refreshed by
/// `cargo build`, so it may be stale and is the fallback.
pub fn library_dir() -> PathBuf {
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

/// `target/<profile>/<suite>/<mode>/`: where a suite's programs are built.
pub fn work_dir(suite: &str, mode: Mode) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable is in target/<profile>/deps");
    let dir = profile_dir.join(suite).join(mode.dir_name());
    std::fs::create_dir_all(&dir).expect("create the build dir under target/");
    dir
}

/// Whether `program` runs at all.
pub fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// How to build one program.
pub struct Build<'a> {
    pub suite: &'a str,
    pub compiler: &'a str,
    pub flags: &'a [&'a str],
    /// Include directories relative to the package root (besides include/).
    pub includes: &'a [&'a str],
    /// Link to the library (false: compile only, `-c`).
    pub link: bool,
}

impl Build<'_> {
    /// Compiles `source` (a path, relative to the package root unless
    /// absolute) into `out_name` and returns the output's path.
    pub fn compile(&self, source: &Path, out_name: &str, mode: Mode) -> PathBuf {
        assert!(
            have(self.compiler),
            "the compiler `{}` was not found: these tests need a C and C++ compiler \
             (on Debian/Ubuntu: apt-get install gcc g++)",
            self.compiler
        );
        let out = work_dir(self.suite, mode).join(out_name);
        let mut cmd = Command::new(self.compiler);
        cmd.args(self.flags).arg("-g");
        if mode == Mode::Sanitize {
            cmd.args(SANITIZE_FLAGS);
        }
        cmd.arg("-I").arg(manifest_dir().join("include"));
        for dir in self.includes {
            cmd.arg("-I").arg(manifest_dir().join(dir));
        }
        cmd.arg("-o").arg(&out).arg(manifest_dir().join(source));
        if self.link {
            let lib_dir = library_dir();
            cmd.arg(format!("-L{}", lib_dir.display()))
                .arg("-lbinance_uds")
                .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
                .arg("-lpthread");
        } else {
            cmd.arg("-c");
        }
        let result = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        assert!(
            result.status.success(),
            "compiling {} failed: {cmd:?}\n{}{}",
            source.display(),
            String::from_utf8_lossy(&result.stdout),
            String::from_utf8_lossy(&result.stderr)
        );
        out
    }
}

/// The environment the programs read: the exchange, its CA, its control port
/// and the API key.
pub fn exchange_env(ex: &Exchange, api_key: &str) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("BINANCE_WS_API_URL", ex.ws_api.clone()),
        ("BINANCE_STREAM_URL", ex.stream.clone()),
        ("BINANCE_TEST_CONTROL", ex.control.to_string()),
        ("BINANCE_API_KEY", api_key.to_owned()),
    ];
    if let Some(ca) = &ex.ca_file {
        env.push(("BINANCE_CA_FILE", ca.display().to_string()));
    }
    env
}

/// A started program; its output goes to files next to it (no pipe to
/// drain while waiting).
pub struct Program {
    child: Child,
    command: String,
    out_path: PathBuf,
    err_path: PathBuf,
    deadline: Instant,
    time_limit: Duration,
}

/// What a program did.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub command: String,
}

impl Program {
    /// Starts `exe` with exactly `env` among the variables it reads (under
    /// valgrind in that mode).
    pub fn start(exe: &Path, env: &[(&str, String)], mode: Mode) -> Program {
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
        for name in CLEARED {
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
            time_limit: mode.time_limit(),
        }
    }

    /// What it printed on stdout so far.
    #[allow(dead_code)] // not every suite reads a running program
    pub fn stdout_so_far(&self) -> String {
        read(&self.out_path)
    }

    /// What it printed so far, for a failure message.
    #[allow(dead_code)]
    pub fn output_so_far(&self) -> String {
        format!(
            "$ {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            read(&self.out_path),
            read(&self.err_path)
        )
    }

    /// Asks it to stop, as Ctrl-C would: SIGTERM (valgrind runs the program
    /// in its own process, so the program's handler gets it there too).
    #[allow(dead_code)]
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {}: {status}", self.child.id());
    }

    /// Waits for it to exit (killing it at the time limit).
    pub fn wait(mut self) -> Run {
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the program") {
                break status;
            }
            if Instant::now() > self.deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} still ran after {:?}: killed\n--- stdout ---\n{}\n--- stderr ---\n{}",
                    self.command,
                    self.time_limit,
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

/// Runs `exe` to its end.
pub fn run(exe: &Path, env: &[(&str, String)], mode: Mode) -> Run {
    Program::start(exe, env, mode).wait()
}

fn read(p: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(p).unwrap_or_default()).into_owned()
}

impl Run {
    pub fn output(&self) -> String {
        format!(
            "$ {}\n{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.status, self.stdout, self.stderr
        )
    }

    /// Exit status `code`, and `secret` printed nowhere.
    pub fn assert_exit(&self, code: i32, secret: &str) {
        assert_eq!(self.status.code(), Some(code), "{}", self.output());
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "the API key was printed:\n{}",
            self.output()
        );
    }
}
