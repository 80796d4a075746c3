//! What the tests and benches share. The local exchange as a child process
//! and its control port (`Exchange`, with its request counters), waiting
//! for a condition (`wait`), scripted servers (`http`, `proxy`), a
//! certificate and key builder (`cert`),
//! building and running C/C++ programs (`native`), the application's
//! account book (`book`) and the tests' RNG (`rng`).
//!
//! It does not depend on the library: `tests/common` re-exports this crate
//! and adds the helpers that use the library (a config for an exchange,
//! reading a stream), so a test writes `mod common;` and `common::…`.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod book;
pub mod cert;
mod exchange_bin;
pub mod http;
pub mod native;
pub mod proxy;
pub mod rng;
pub mod wait;

pub use exchange_bin::exchange_binary;
pub use rng::Rng;
pub use wait::wait_for;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const CONTROL_TIMEOUT: Duration = Duration::from_secs(60);

/// A running local exchange; killed (and its temp dir removed) on drop.
pub struct Exchange {
    /// `wss://127.0.0.1:PORT/ws-fapi/v1` (`ws://` when plain).
    pub ws_api: String,
    /// `wss://127.0.0.1:PORT/private`: the stream base (SUBSCRIBE on `{stream}/stream`).
    pub stream: String,
    /// COIN-M: `wss://127.0.0.1:PORT/ws-dapi/v1` and the dstream base,
    /// served under `/coinm`.
    pub coinm_ws_api: String,
    pub coinm_stream: String,
    /// Portfolio Margin's stream base, `wss://127.0.0.1:PORT/pm`.
    pub pm_stream: String,
    pub control: SocketAddr,
    /// `https://127.0.0.1:PORT` (`http://` when plain): the REST API.
    pub rest: String,
    /// The CA to trust (TLS only).
    pub ca_file: Option<PathBuf>,
    pub ca_pem: Option<String>,
    child: Child,
    stdin: Option<ChildStdin>,
    plain: bool,
    args: Vec<String>,
    dir: PathBuf,
    owns_dir: bool,
}

impl Exchange {
    /// Starts a TLS exchange with these extra options (see docs/local-exchange.md).
    pub fn start(extra_args: &[&str]) -> Exchange {
        Self::spawn(
            false,
            extra_args.iter().map(|s| s.to_string()).collect(),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts a plain `ws://` exchange.
    pub fn start_plain(extra_args: &[&str]) -> Exchange {
        Self::spawn(
            true,
            extra_args.iter().map(|s| s.to_string()).collect(),
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn spawn(plain: bool, args: Vec<String>, dir: Option<PathBuf>) -> Result<Exchange, String> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = dir.unwrap_or_else(|| {
            let n = SEQ.fetch_add(1, Ordering::Relaxed);
            std::env::temp_dir().join(format!("local-exchange-test-{}-{n}", std::process::id()))
        });
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut cmd = Command::new(exchange_binary());
        cmd.arg("--die-with-stdin");
        if plain {
            cmd.arg("--plain");
        } else {
            // A fixed CA file and key: a restart keeps the same CA.
            cmd.arg("--ca-out")
                .arg(dir.join("ca.pem"))
                .arg("--ca-key")
                .arg(dir.join("ca.key"));
        }
        cmd.args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn local-exchange");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout");

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return; // keep nothing; the exchange prints nothing else
                }
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        let (mut ws_api, mut stream, mut control, mut ca_file) = (None, None, None, None);
        let mut rest = None;
        let (mut coinm_ws_api, mut coinm_stream, mut pm_stream) = (None, None, None);
        let missing = |v: &[bool]| v.iter().any(|have| !have);
        while missing(&[
            ws_api.is_some(),
            stream.is_some(),
            control.is_some(),
            rest.is_some(),
            plain || ca_file.is_some(),
        ]) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(l) => l,
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!("local-exchange did not print its ready lines: {e}"));
                }
            };
            let (k, v) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            match k {
                "ws_api" => ws_api = Some(v.to_string()),
                "stream" => stream = Some(v.to_string()),
                "control" => control = Some(v.parse().expect("control address")),
                "ca_file" => ca_file = Some(PathBuf::from(v)),
                "rest" => rest = Some(v.to_string()),
                "coinm_ws_api" => coinm_ws_api = Some(v.to_string()),
                "coinm_stream" => coinm_stream = Some(v.to_string()),
                "pm_stream" => pm_stream = Some(v.to_string()),
                _ => {} // a ready line added later: not ours to know
            }
        }
        let ca_pem = ca_file
            .as_ref()
            .map(|p| std::fs::read_to_string(p).expect("read CA"));
        Ok(Exchange {
            ws_api: ws_api.expect("ws_api line"),
            stream: stream.expect("stream line"),
            coinm_ws_api: coinm_ws_api.expect("coinm_ws_api line"),
            coinm_stream: coinm_stream.expect("coinm_stream line"),
            pm_stream: pm_stream.expect("pm_stream line"),
            control: control.expect("control line"),
            rest: rest.expect("rest line"),
            ca_file,
            ca_pem,
            child,
            stdin,
            plain,
            args,
            dir,
            owns_dir: true,
        })
    }

    /// The CA to trust, as PEM; panics for a plain exchange.
    pub fn ca_pem(&self) -> &str {
        self.ca_pem.as_deref().expect("a TLS exchange")
    }

    /// The CA file; panics for a plain exchange.
    pub fn ca_file(&self) -> &std::path::Path {
        self.ca_file.as_deref().expect("a TLS exchange")
    }

    /// `host:port` of the WebSocket listener.
    pub fn addr(&self) -> String {
        let rest = self.ws_api.split_once("://").map_or("", |(_, r)| r);
        rest.split('/').next().unwrap_or("").to_string()
    }

    /// Sends a control command and returns the answer, `ok:false` included.
    pub fn control_raw(&self, cmd: Value) -> Value {
        control_at(self.control, cmd)
    }

    /// Sends a control command; panics when the exchange answers `ok:false`.
    pub fn control(&self, cmd: Value) -> Value {
        let answer = self.control_raw(cmd.clone());
        if answer["ok"] != true {
            panic!("control {cmd} failed: {}", answer["error"]);
        }
        answer
    }

    /// Stream subscriptions (listenKeys on user-data connections) now.
    pub fn subscriptions(&self) -> usize {
        let c = self.control(serde_json::json!({"cmd": "stream_connections"}));
        c["connections"].as_array().map_or(0, |conns| {
            conns
                .iter()
                .filter(|c| c["form"] == "subscribe" || c["form"] == "query")
                .map(|c| c["keys"].as_array().map_or(0, Vec::len))
                .sum()
        })
    }

    /// Waits until `n` stream subscriptions exist (an event emitted before
    /// a stream subscribed is not delivered to it).
    pub fn wait_subscribed(&self, n: usize, limit: Duration) {
        wait_for(&format!("{n} stream subscription(s)"), limit, || {
            self.subscriptions() >= n
        });
    }

    pub fn stats(&self) -> Value {
        self.control(serde_json::json!({"cmd": "stats"}))
    }

    /// A counter of `stats` (e.g. "api_connections_open"); 0 if absent.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name].as_u64().unwrap_or(0)
    }

    /// Requests of `method` (e.g. "userDataStream.ping") the exchange has
    /// received: its view of what is in flight.
    pub fn requests(&self, method: &str) -> u64 {
        self.stats()["requests"][method].as_u64().unwrap_or(0)
    }

    /// Waits until the exchange has received more than `seen` requests of
    /// `method`: a call that sends one is then known to be under way.
    pub fn wait_requests(&self, method: &str, seen: u64, limit: Duration) {
        wait_for(
            &format!("a {method} request to reach the exchange"),
            limit,
            || self.requests(method) > seen,
        );
    }

    /// Kills the exchange and starts a new one on the same address, same mode
    /// and options (and, with TLS, the same CA). Keys and counters are lost.
    pub fn restart_same_port(&mut self) {
        self.kill();
        let mut args = self.args.clone();
        args.extend(["--listen".to_string(), self.addr()]);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port was just freed; retry briefly in case it is not yet bindable.
            match Self::spawn(self.plain, args.clone(), Some(self.dir.clone())) {
                Ok(new) => {
                    let mut old = std::mem::replace(self, new);
                    old.owns_dir = false; // the new one uses the same dir (the CA)
                    return;
                }
                Err(e) if Instant::now() >= deadline => panic!("restart on {}: {e}", self.addr()),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn kill(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.kill();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Sends a control command to a control address (for use from other
/// threads); returns the answer, `ok:false` included.
pub fn control_at(addr: SocketAddr, cmd: Value) -> Value {
    let s = send_control(addr, &cmd);
    s.set_read_timeout(Some(CONTROL_TIMEOUT)).ok();
    read_answer(s)
}

/// Writes a control command without waiting for its answer (`emit` answers
/// only once every event is queued); `finish_control` reads it.
pub fn send_control(addr: SocketAddr, cmd: &Value) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect to the control port");
    s.set_nodelay(true).ok();
    writeln!(s, "{cmd}").expect("write control");
    s
}

/// Reads the answer to a command `send_control` wrote; panics on `ok:false`.
pub fn finish_control(s: TcpStream, cmd: &Value) -> Value {
    let answer = read_answer(s);
    assert_eq!(answer["ok"], true, "control {cmd} failed: {answer}");
    answer
}

fn read_answer(s: TcpStream) -> Value {
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("read control");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("control answer {line:?}: {e}"))
}
