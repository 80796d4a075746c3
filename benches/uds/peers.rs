//! The official SDKs as peers: each against binance-uds as a user of the
//! same language would call it, in child processes, alternating.
//!
//! Every peer speaks one protocol: `<command> cold WS_API CA_FILE API_KEY`
//! and `<command> warm WS_API CA_FILE API_KEY N`, printing
//! `RESULT {"us": ...}` or `RESULT {"samples": [...]}` (µs); and
//! `<command> events WS_API STREAM CA_FILE API_KEY N WARMUP`, which opens
//! the account's user stream, prints `READY`, and then prints the latency
//! of the last N of the N + WARMUP events the benchmark emits (`samples`).
//! `scripts/bench.sh` installs the SDKs (pinned) and tells this benchmark
//! where they are through the environment:
//!   UDS_PEER_PYTHON      a python with binance-sdk-derivatives-trading-usds-futures
//!   UDS_PEER_NODE_PATH   node_modules with @binance/derivatives-trading-usds-futures and koffi
//!   UDS_PEER_RUST_SDK    the peer-rust-sdk binary (benches/peers/rust-sdk)
//! and, where an install failed, `UDS_PEER_<NAME>_MISSING` says why.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a peer has to say READY (imports, connections, subscription),
/// and then to print its RESULT once the events are emitted.
const PEER_WAIT: Duration = Duration::from_secs(60);

/// One command line of the peer protocol.
#[derive(Clone)]
pub struct Cmd {
    program: PathBuf,
    prefix: Vec<String>,
    env: Vec<(String, String)>,
}

impl Cmd {
    /// Runs `<command> <args>`: (the RESULT, wall time in µs).
    pub fn run(&self, args: &[&str]) -> Result<(Value, f64), String> {
        let t = Instant::now();
        let out = Command::new(&self.program)
            .args(&self.prefix)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .map_err(|e| format!("{} did not start: {e}", self.program.display()))?;
        let wall = t.elapsed().as_secs_f64() * 1e6;
        let stdout = String::from_utf8_lossy(&out.stdout);
        match stdout.lines().find_map(|l| l.strip_prefix("RESULT ")) {
            Some(l) if out.status.success() => serde_json::from_str(l)
                .map(|v| (v, wall))
                .map_err(|e| format!("RESULT is not JSON: {e}")),
            _ => Err(format!(
                "{} {:?} failed ({}): {}",
                self.program.display(),
                args.first(),
                out.status,
                why(&String::from_utf8_lossy(&out.stderr))
            )),
        }
    }
}

/// What a failed peer's stderr says: from its last error line (Python's
/// `...Error: ...`, Node's `Error: ...`, a Rust panic and its message),
/// else its last three lines.
fn why(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let error = lines
        .iter()
        .rposition(|l| l.contains("Error:") || l.contains("panicked at"));
    match error {
        Some(i) => lines[i..lines.len().min(i + 2)].join(" / "),
        None => lines[lines.len().saturating_sub(3)..].join(" / "),
    }
}

/// A child process killed and reaped when dropped, whatever happened.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The text after `prefix` on the next line that starts with it, within
/// `PEER_WAIT`.
fn line_after(lines: &mpsc::Receiver<String>, prefix: &str) -> Result<String, String> {
    let deadline = Instant::now() + PEER_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(l) => {
                if let Some(rest) = l.strip_prefix(prefix) {
                    return Ok(rest.to_string());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no {prefix:?} line in {} s", PEER_WAIT.as_secs()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("ended before its {prefix:?} line"))
            }
        }
    }
}

impl Cmd {
    /// Runs `<command> events <args>`: waits for its `READY`, calls `emit`
    /// (which sends the events), then returns its RESULT. The process is
    /// killed and reaped on every path; a failure says why, with the end of
    /// the peer's stderr.
    pub fn events(
        &self,
        args: &[&str],
        emit: impl FnOnce() -> Result<(), String>,
    ) -> Result<Value, String> {
        let mut child = Command::new(&self.program)
            .args(&self.prefix)
            .arg("events")
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{} did not start: {e}", self.program.display()))?;
        let (stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let child = Reaped(child);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in stdout.into_iter().flat_map(|o| BufReader::new(o).lines()) {
                if l.map(|l| tx.send(l)).is_err() {
                    break;
                }
            }
        });
        let errors = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(e) = stderr.as_mut() {
                let _ = e.read_to_string(&mut text);
            }
            text
        });
        let got = line_after(&lines, "READY")
            .and_then(|_| emit())
            .and_then(|()| line_after(&lines, "RESULT "))
            .and_then(|l| serde_json::from_str(&l).map_err(|e| format!("RESULT is not JSON: {e}")));
        drop(child);
        got.map_err(|e| {
            let stderr = errors.join().unwrap_or_default();
            format!("{} events: {e}: {}", self.program.display(), why(&stderr))
        })
    }
}

/// The programs of one peer.
pub struct Cmds {
    pub sdk: Cmd,
    /// binance-uds as the warm and cold rows call it.
    pub lib: Cmd,
    /// binance-uds for the event rows, one per `Peer::event_faces`.
    pub event_libs: Vec<Cmd>,
}

/// An SDK and binance-uds in the same language.
pub struct Peer {
    pub id: &'static str,
    /// "Python", "Node.js", "Rust".
    pub lang: &'static str,
    pub sdk_name: &'static str,
    pub lib_name: &'static str,
    /// binance-uds as that language's user reads a stream, for the event
    /// rows (Python: blocking and asyncio).
    pub event_faces: &'static [&'static str],
    /// Its commands, or why the peer cannot run here.
    pub cmds: Result<Cmds, String>,
}

fn env_path(var: &str) -> Result<PathBuf, String> {
    if let Some(why) = std::env::var_os(format!("{var}_MISSING")) {
        return Err(why.to_string_lossy().into_owned());
    }
    match std::env::var_os(var) {
        Some(p) if Path::new(&p).exists() => Ok(PathBuf::from(p)),
        Some(p) => Err(format!("{} does not exist", Path::new(&p).display())),
        None => Err("not installed: scripts/bench.sh installs it".into()),
    }
}

/// The peers, found from the environment. `exe` is this benchmark (the
/// Rust peer's binance-uds side is its `child peer` mode), `so` the
/// release libbinance_uds.so the bindings load.
pub fn find(exe: &Path, so: &Path, ca_file: &Path) -> Vec<Peer> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let so_env = ("BINANCE_UDS_LIBRARY".to_string(), so.display().to_string());
    let python = env_path("UDS_PEER_PYTHON").map(|py| {
        let script = manifest
            .join("benches/peers/python_peer.py")
            .display()
            .to_string();
        let cmd = |which: &str| Cmd {
            program: py.clone(),
            prefix: vec![script.clone(), which.into()],
            env: vec![so_env.clone()],
        };
        Cmds {
            sdk: cmd("sdk"),
            lib: cmd("binding"),
            event_libs: vec![cmd("binding"), cmd("aio")],
        }
    });
    let node = env_path("UDS_PEER_NODE_PATH").map(|modules| {
        let script = manifest
            .join("benches/peers/js_peer.mjs")
            .display()
            .to_string();
        let cmd = |which: &str| Cmd {
            program: "node".into(),
            prefix: vec![script.clone(), which.into()],
            env: vec![
                so_env.clone(),
                ("NODE_PATH".into(), modules.display().to_string()),
                // How the SDK is told to trust a private CA.
                ("NODE_EXTRA_CA_CERTS".into(), ca_file.display().to_string()),
            ],
        };
        Cmds {
            sdk: cmd("sdk"),
            lib: cmd("ffi"),
            event_libs: vec![cmd("ffi")],
        }
    });
    let rust = env_path("UDS_PEER_RUST_SDK").map(|bin| {
        let sdk = Cmd {
            program: bin,
            prefix: Vec::new(),
            env: Vec::new(),
        };
        let lib = Cmd {
            program: exe.to_path_buf(),
            prefix: vec!["child".into(), "peer".into()],
            env: Vec::new(),
        };
        Cmds {
            sdk,
            event_libs: vec![lib.clone()],
            lib,
        }
    });
    vec![
        Peer {
            id: "P1",
            lang: "Python",
            sdk_name: "binance-sdk-derivatives-trading-usds-futures 18.1.0",
            lib_name: "bindings/python (ctypes)",
            event_faces: &[
                "bindings/python blocking next_event",
                "binance_uds.aio (asyncio)",
            ],
            cmds: python,
        },
        Peer {
            id: "P2",
            lang: "Node.js",
            sdk_name: "@binance/derivatives-trading-usds-futures 38.1.1",
            lib_name: "the C API through koffi",
            event_faces: &["binance_user_stream_next through koffi"],
            cmds: node,
        },
        Peer {
            id: "P3",
            lang: "Rust",
            sdk_name: "binance-sdk 77.2.0 (derivatives_trading_usds_futures)",
            lib_name: "the C API",
            event_faces: &["binance_user_stream_next"],
            cmds: rust,
        },
    ]
}
