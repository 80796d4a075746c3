//! The official SDKs as peers: each against binance-uds as a user of the
//! same language would call it, in child processes, alternating.
//!
//! Every peer speaks one protocol: `<command> cold WS_API CA_FILE API_KEY`
//! and `<command> warm WS_API CA_FILE API_KEY N`, printing
//! `RESULT {"us": ...}` or `RESULT {"samples": [...]}` (µs).
//! `scripts/bench.sh` installs the SDKs (pinned) and tells this benchmark
//! where they are through the environment:
//!   UDS_PEER_PYTHON      a python with binance-sdk-derivatives-trading-usds-futures
//!   UDS_PEER_NODE_PATH   node_modules with @binance/derivatives-trading-usds-futures and koffi
//!   UDS_PEER_RUST_SDK    the peer-rust-sdk binary (benches/peers/rust-sdk)
//! and, where an install failed, `UDS_PEER_<NAME>_MISSING` says why.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// One command line of the peer protocol.
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
                String::from_utf8_lossy(&out.stderr)
                    .lines()
                    .rev()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" / ")
            )),
        }
    }
}

/// An SDK and binance-uds in the same language.
pub struct Peer {
    pub id: &'static str,
    /// "Python", "Node.js", "Rust".
    pub lang: &'static str,
    pub sdk_name: &'static str,
    pub lib_name: &'static str,
    /// Both commands, or why the peer cannot run here.
    pub cmds: Result<(Cmd, Cmd), String>,
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
        (cmd("sdk"), cmd("binding"))
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
        (cmd("sdk"), cmd("ffi"))
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
        (sdk, lib)
    });
    vec![
        Peer {
            id: "P1",
            lang: "Python",
            sdk_name: "binance-sdk-derivatives-trading-usds-futures 18.1.0",
            lib_name: "bindings/python (ctypes)",
            cmds: python,
        },
        Peer {
            id: "P2",
            lang: "Node.js",
            sdk_name: "@binance/derivatives-trading-usds-futures 38.1.1",
            lib_name: "the C API through koffi",
            cmds: node,
        },
        Peer {
            id: "P3",
            lang: "Rust",
            sdk_name: "binance-sdk 77.2.0 (derivatives_trading_usds_futures)",
            lib_name: "the C API",
            cmds: rust,
        },
    ]
}
