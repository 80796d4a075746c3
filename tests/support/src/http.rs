//! A scripted HTTP/1.1 server on loopback for the REST error paths the
//! local exchange cannot be made to produce on demand: each request is
//! answered by a closure, connections are kept alive, and every request is
//! recorded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

#[cfg(target_os = "linux")]
use crate::cert::self_signed;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// What Binance answers the snapshot's requests, with fixed content; the
/// server clock runs `skew_ms` ahead of ours.
pub fn binance_answer(r: &Request, skew_ms: i64) -> Response {
    use serde_json::json;
    match r.path.as_str() {
        "/fapi/v1/time" => {
            Response::json(200, json!({"serverTime": now_ms() + skew_ms}).to_string())
        }
        "/fapi/v3/account" => Response::json(
            200,
            json!({
                "totalWalletBalance": "100.0",
                "assets": [{"asset": "USDT", "walletBalance": "100.0", "updateTime": 11}],
                "positions": [{"symbol": "BTCUSDT", "positionAmt": "0.010"}]
            })
            .to_string(),
        ),
        "/fapi/v3/positionRisk" => Response::json(
            200,
            json!([{"symbol": "BTCUSDT", "positionSide": "BOTH", "positionAmt": "0.010",
                     "entryPrice": "60000.0", "updateTime": 12}])
            .to_string(),
        ),
        "/fapi/v1/openOrders" => Response::json(
            200,
            json!([{"orderId": 7, "symbol": "BTCUSDT", "status": "NEW", "updateTime": 13}])
                .to_string(),
        ),
        "/fapi/v1/openAlgoOrders" => Response::json(
            200,
            json!([{"algoId": 9, "symbol": "BTCUSDT", "algoStatus": "NEW", "updateTime": 14}])
                .to_string(),
        ),
        _ => Response::json(404, r#"{"code":-1000,"msg":"no such path"}"#),
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Request {
    /// Path without the query, e.g. `/fapi/v1/time`.
    pub path: String,
    /// The query string without `?` (empty when none).
    pub query: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    /// Which connection (0, 1, ...) carried it.
    pub connection: usize,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }
}

/// An answer: status, extra headers, body.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Response {
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.into(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// The TLS side of a server: none off Linux, where the tests have no
/// OpenSSL (Cargo.toml's openssl dev-dependency is Linux only).
#[cfg(target_os = "linux")]
type Acceptor = openssl::ssl::SslAcceptor;
#[cfg(not(target_os = "linux"))]
type Acceptor = std::convert::Infallible;

type Handler = dyn Fn(&Request) -> Option<Response> + Send + Sync;

pub struct Server {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Request>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Server {
    /// Serves every request with `handler`; `None` means never answer
    /// (the connection stays open and silent).
    pub fn start(handler: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static) -> Server {
        Self::spawn(None, handler)
    }

    /// The same over TLS with a self-signed certificate for 127.0.0.1 and
    /// localhost; returns the server and the certificate (PEM) to trust.
    /// Linux only (the openssl dev-dependency is; see Cargo.toml).
    #[cfg(target_os = "linux")]
    pub fn start_tls(
        handler: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static,
    ) -> (Server, String) {
        use openssl::ssl::{SslAcceptor, SslMethod};
        use openssl::x509::X509;
        let (pem, key) = self_signed();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
        acceptor
            .set_certificate(&X509::from_pem(pem.as_bytes()).unwrap())
            .unwrap();
        acceptor.set_private_key(&key).unwrap();
        (Self::spawn(Some(acceptor.build()), handler), pem)
    }

    fn spawn(
        tls: Option<Acceptor>,
        handler: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let (r, c, s) = (requests.clone(), connections.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let n = c.fetch_add(1, Ordering::SeqCst);
                let (r, h, tls) = (r.clone(), handler.clone(), tls.clone());
                std::thread::spawn(move || match tls {
                    None => serve(conn, n, r, h),
                    #[cfg(target_os = "linux")]
                    Some(acceptor) => {
                        if let Ok(conn) = acceptor.accept(conn) {
                            serve(conn, n, r, h)
                        }
                    }
                    #[cfg(not(target_os = "linux"))]
                    Some(never) => match never {},
                });
            }
        });
        Server {
            addr,
            requests,
            connections,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    conn: impl Read + Write,
    n: usize,
    requests: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Handler>,
) {
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_owned(), q.to_owned()),
            None => (target.clone(), String::new()),
        };
        let request = Request {
            path,
            query,
            headers,
            connection: n,
        };
        requests.lock().unwrap().push(request.clone());
        let Some(response) = handler(&request) else {
            // Never answer: hold the connection until the client gives up.
            let mut sink = String::new();
            let _ = reader.read_line(&mut sink);
            return;
        };
        let mut head = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            response.status,
            response.body.len()
        );
        for (k, v) in &response.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let conn = reader.get_mut();
        if conn.write_all(head.as_bytes()).is_err()
            || conn.write_all(response.body.as_bytes()).is_err()
            || conn.flush().is_err()
        {
            return;
        }
    }
}
