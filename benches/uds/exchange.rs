//! The local exchange as a child process, and its control port.

use serde_json::Value;

#[path = "../../tests/common/exchange_bin.rs"]
mod exchange_bin;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};

pub struct Exchange {
    pub ws_api: String,
    pub stream: String,
    pub control: SocketAddr,
    pub ca_file: PathBuf,
    pub ca_pem: String,
    child: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
}

impl Exchange {
    /// Starts `local-exchange` (TLS, its own CA) and waits for its ready lines.
    pub fn start() -> Exchange {
        let dir = std::env::temp_dir().join(format!("uds-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut child = Command::new(exchange_bin::exchange_binary())
            .arg("--die-with-stdin")
            // Benchmarks open hundreds of connections and run keepalives
            // back to back: far above Binance's per-IP limits, on purpose.
            .args([
                "--api-weight-per-min",
                "0",
                "--stream-connects-per-5min",
                "0",
            ])
            .arg("--ca-out")
            .arg(dir.join("ca.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn local-exchange");
        let stdin = child.stdin.take();
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (mut ws_api, mut stream, mut control, mut ca_file) = (None, None, None, None);
        while ca_file.is_none() {
            let line = lines
                .next()
                .expect("local-exchange ended before it was ready")
                .expect("read");
            let (k, v) = line.split_once('=').expect("key=value line");
            match k {
                "ws_api" => ws_api = Some(v.to_string()),
                "stream" => stream = Some(v.to_string()),
                "control" => control = Some(v.parse().expect("control address")),
                "ca_file" => ca_file = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        let ca_file = ca_file.expect("ca_file");
        Exchange {
            ws_api: ws_api.expect("ws_api"),
            stream: stream.expect("stream"),
            control: control.expect("control"),
            ca_pem: std::fs::read_to_string(&ca_file).expect("read CA"),
            ca_file,
            child,
            stdin,
            dir,
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        self.stdin.take();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends one control command and returns the answer; panics on `ok:false`.
pub fn control(addr: SocketAddr, cmd: &Value) -> Value {
    let pending = send_control(addr, cmd);
    finish_control(pending, cmd)
}

/// Writes a command without waiting for its answer (`emit` answers only
/// once every event is queued).
pub fn send_control(addr: SocketAddr, cmd: &Value) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect to the control port");
    s.set_nodelay(true).ok();
    writeln!(s, "{cmd}").expect("write control");
    s
}

pub fn finish_control(s: TcpStream, cmd: &Value) -> Value {
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .expect("read control");
    let v: Value = serde_json::from_str(&line).expect("control answer is JSON");
    assert_eq!(v["ok"], true, "control {cmd} failed: {v}");
    v
}
