//! `local-exchange`: a Binance-compatible loopback server for the USDⓈ-M
//! Futures WebSocket API listenKey methods and the user data stream, with a
//! control port to inject faults. Specification: docs/local-exchange.md.

/// Log to stderr when `--verbose` was given (connections, keys).
macro_rules! vlog {
    ($($t:tt)*) => {
        if $crate::state::VERBOSE.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("local-exchange: {}", format_args!($($t)*));
        }
    };
}

mod account;
mod api;
mod conn;
mod control;
mod events;
mod limit;
mod rest;
mod sign;
mod state;
mod stream;
mod tls;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_native_tls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{StatusCode, Uri};

use conn::Io;
use limit::Refused;
use state::{Limits, Shared, StreamConn, Timings, HANDSHAKE_WEIGHT};

const USAGE: &str =
    "usage: local-exchange [--listen ADDR] [--ca-out PATH] [--ca-key PATH] [--plain] [--self-signed] \
[--key-lifetime-ms N] [--ping-interval-ms N] [--api-lifetime-ms N] [--stream-lifetime-ms N] \
[--stream-max-msgs-per-sec N] [--stream-max-streams N] [--api-weight-per-min N] \
[--weight-window-ms N] [--ban-after N] [--ban-first-ms N] [--ban-max-ms N] \
[--stream-connects-per-5min N] [--stream-string-ids] [--stream-name-form key|event] \
[--account API_KEY:SECRET]... [--account-ed25519 API_KEY:PEM_FILE]... \
[--control JSON]... [--die-with-stdin] [--verbose]";

/// A TLS handshake or WebSocket upgrade that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

struct Opts {
    listen: String,
    ca_out: Option<PathBuf>,
    ca_key: Option<PathBuf>,
    plain: bool,
    self_signed: bool,
    timings: Timings,
    limits: Limits,
    /// (API key, credential) from `--account` and `--account-ed25519`.
    accounts: Vec<(String, sign::Cred)>,
    controls: Vec<String>,
    die_with_stdin: bool,
}

/// Where an accepted WebSocket upgrade goes.
pub enum Route {
    /// `/ws-fapi/v1` (`product` "usdm") or `/ws-dapi/v1` ("coinm");
    /// `rate_limits` is false with `?returnRateLimits=false`.
    Api {
        rate_limits: bool,
        product: &'static str,
    },
    /// A stream route: `/private/...`, `/public/...`, `/market/...`, legacy.
    Stream(StreamConn),
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        listen: "127.0.0.1:0".into(),
        ca_out: None,
        ca_key: None,
        plain: false,
        self_signed: false,
        timings: Timings::default(),
        limits: Limits::default(),
        accounts: Vec::new(),
        controls: Vec::new(),
        die_with_stdin: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--plain" => o.plain = true,
            "--self-signed" => o.self_signed = true,
            "--die-with-stdin" => o.die_with_stdin = true,
            "--stream-string-ids" => o.limits.strict_stream_ids = false,
            "--verbose" => state::VERBOSE.store(true, std::sync::atomic::Ordering::Relaxed),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => {
                let v = args.next().ok_or(format!("{a} needs a value"))?;
                let ms = || {
                    v.parse::<u64>()
                        .map_err(|_| format!("{a}: not a number: {v}"))
                };
                match a.as_str() {
                    "--listen" => o.listen = v.clone(),
                    "--ca-out" => o.ca_out = Some(v.clone().into()),
                    "--ca-key" => o.ca_key = Some(v.clone().into()),
                    "--key-lifetime-ms" => o.timings.key_lifetime_ms = ms()?,
                    "--ping-interval-ms" => o.timings.ping_interval_ms = ms()?,
                    "--api-lifetime-ms" => o.timings.api_lifetime_ms = ms()?,
                    "--stream-lifetime-ms" => o.timings.stream_lifetime_ms = ms()?,
                    "--stream-max-msgs-per-sec" => o.limits.stream_max_msgs_per_sec = ms()?,
                    "--stream-max-streams" => o.limits.stream_max_streams = ms()?,
                    "--api-weight-per-min" => o.limits.weight.weight_per_window = ms()?,
                    "--weight-window-ms" => o.limits.weight.window_ms = ms()?,
                    "--ban-after" => o.limits.weight.ban_after = ms()?,
                    "--ban-first-ms" => o.limits.weight.ban_first_ms = ms()?,
                    "--ban-max-ms" => o.limits.weight.ban_max_ms = ms()?,
                    "--stream-connects-per-5min" => o.limits.stream_connects_per_5min = ms()?,
                    "--control" => o.controls.push(v.clone()),
                    "--stream-name-form" => {
                        o.limits.stream_name_event = match v.as_str() {
                            "key" => false,
                            "event" => true,
                            _ => return Err(format!("{a}: key or event, not {v}")),
                        }
                    }
                    "--account" | "--account-ed25519" => {
                        let (key, rest) = v
                            .split_once(':')
                            .filter(|(k, r)| !k.is_empty() && !r.is_empty())
                            .ok_or(format!(
                                "{a} wants API_KEY:{}",
                                if a == "--account" {
                                    "SECRET"
                                } else {
                                    "PEM_FILE"
                                }
                            ))?;
                        let cred = if a == "--account" {
                            sign::Cred::Hmac(rest.as_bytes().to_vec())
                        } else {
                            let pem =
                                std::fs::read(rest).map_err(|e| format!("{a}: {rest}: {e}"))?;
                            sign::Cred::ed25519(&pem).map_err(|e| format!("{a}: {rest}: {e}"))?
                        };
                        o.accounts.push((key.to_string(), cred));
                    }
                    _ => return Err(format!("unknown option {a}")),
                }
            }
        }
    }
    Ok(o)
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("local-exchange: {msg}");
    std::process::exit(2)
}

#[tokio::main]
async fn main() {
    let opts = parse_args().unwrap_or_else(|e| die(format!("{e}\n{USAGE}")));
    if opts.die_with_stdin {
        // Tests pipe stdin; when they end (even by a crash) the pipe closes.
        std::thread::spawn(|| {
            let (mut stdin, mut buf) = (std::io::stdin(), [0u8; 256]);
            loop {
                match stdin.read(&mut buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(0) | Err(_) => std::process::exit(0),
                    Ok(_) => {}
                }
            }
        });
    }
    let listener = TcpListener::bind(&opts.listen)
        .await
        .unwrap_or_else(|e| die(format!("cannot listen on {}: {e}", opts.listen)));
    // REST on a port of its own beside the WebSocket one (as Binance's
    // REST host is not its WebSocket host), on the same interface.
    let rest_bind = SocketAddr::new(
        listener
            .local_addr()
            .map_or(Ipv4Addr::LOCALHOST.into(), |a| a.ip()),
        0,
    );
    let rest = TcpListener::bind(rest_bind)
        .await
        .unwrap_or_else(|e| die(format!("cannot bind the REST port: {e}")));
    let control = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| die(format!("cannot bind the control port: {e}")));
    let (addr, caddr, raddr) = match (
        listener.local_addr(),
        control.local_addr(),
        rest.local_addr(),
    ) {
        (Ok(a), Ok(c), Ok(r)) => (a, c, r),
        _ => die("cannot read the bound addresses"),
    };
    let tls = if opts.plain {
        None
    } else {
        let ca_out = opts.ca_out.clone().unwrap_or_else(|| {
            std::env::temp_dir().join(format!("local-exchange-{}-ca.pem", std::process::id()))
        });
        let acceptor = if opts.self_signed {
            tls::self_signed_acceptor(&ca_out)
        } else {
            tls::acceptor(&ca_out, opts.ca_key.as_deref())
        }
        .unwrap_or_else(|e| die(format!("TLS setup failed: {e}")));
        Some((acceptor, std::fs::canonicalize(&ca_out).unwrap_or(ca_out)))
    };

    let shared = Arc::new(Shared::new(opts.timings, opts.limits));
    shared.lock().creds.extend(opts.accounts);
    for c in &opts.controls {
        let cmd = serde_json::from_str(c).unwrap_or_else(|e| die(format!("--control {c}: {e}")));
        let answer = control::command(&shared, &cmd).await;
        if answer["ok"] != true {
            die(format!("--control {c}: {}", answer["error"]));
        }
    }
    tokio::spawn(sweeper(shared.clone()));
    tokio::spawn(control::serve(shared.clone(), control));
    tokio::spawn(rest::serve(
        shared.clone(),
        rest,
        tls.as_ref().map(|(a, _)| a.clone()),
    ));

    let (scheme, host) = (if tls.is_some() { "wss" } else { "ws" }, printable(addr));
    let mut ready = vec![
        format!("ws_api={scheme}://{host}/ws-fapi/v1"),
        format!("stream={scheme}://{host}/private"),
        format!("coinm_ws_api={scheme}://{host}/ws-dapi/v1"),
        format!("coinm_stream={scheme}://{host}/coinm"),
        format!("pm_stream={scheme}://{host}/pm"),
        format!("control={caddr}"),
    ];
    if let Some((_, ca)) = &tls {
        ready.push(format!("ca_file={}", ca.display()));
    }
    // Last, so that readers that stop at ca_file= (or control=) still work.
    let http = if tls.is_some() { "https" } else { "http" };
    ready.push(format!("rest={http}://{}", printable(raddr)));
    let mut out = std::io::stdout();
    for line in ready {
        // A closed stdout is not a reason to stop serving.
        let _ = writeln!(out, "{line}").and_then(|_| out.flush());
    }

    let acceptor = tls.map(|(a, _)| a);
    loop {
        match listener.accept().await {
            Ok((tcp, _)) => {
                tokio::spawn(accept(shared.clone(), tcp, acceptor.clone()));
            }
            // Out of descriptors and the like: back off briefly, keep serving.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// The address as clients should dial it (an unspecified bind becomes loopback).
fn printable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Expire lapsed listenKeys at their deadline; woken early when keys change.
async fn sweeper(shared: Arc<Shared>) {
    loop {
        let next = shared.lock().sweep(Instant::now());
        let wait = next.map_or(Duration::from_secs(3600), |t| {
            t.saturating_duration_since(Instant::now())
        });
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.sweep.notified() => {}
        }
    }
}

fn classify(uri: &Uri) -> Option<Route> {
    let (path, query) = (uri.path(), uri.query().unwrap_or(""));
    let product = match path {
        "/ws-fapi/v1" => Some("usdm"),
        "/ws-dapi/v1" => Some("coinm"),
        _ => None,
    };
    if let Some(product) = product {
        let off = query
            .split('&')
            .any(|kv| kv.eq_ignore_ascii_case("returnRateLimits=false"));
        return Some(Route::Api {
            rate_limits: !off,
            product,
        });
    }
    stream::route(path, query).map(Route::Stream)
}

fn http_error(status: StatusCode) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(
        status.canonical_reason().unwrap_or("error").to_string(),
    ));
    *r.status_mut() = status;
    r
}

/// HTTP 429 with `Retry-After` (whole seconds, rounded up).
fn too_many(retry_after_ms: u64) -> ErrorResponse {
    retry_after(StatusCode::TOO_MANY_REQUESTS, retry_after_ms)
}

/// A refused upgrade: 429 past the weight, 418 banned, with `Retry-After`.
fn refused_upgrade(r: Refused) -> ErrorResponse {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    retry_after(status, r.retry_at_ms().saturating_sub(state::server_ms()))
}

fn retry_after(status: StatusCode, retry_after_ms: u64) -> ErrorResponse {
    let mut r = http_error(status);
    if let Ok(v) = retry_after_ms.div_ceil(1000).to_string().parse() {
        r.headers_mut().insert("Retry-After", v);
    }
    r
}

/// TLS (unless plain), then the WebSocket upgrade with routing, then serve.
// The upgrade callback's error type is tungstenite's, not ours to shrink.
#[allow(clippy::result_large_err)]
async fn accept(shared: Arc<Shared>, tcp: TcpStream, tls: Option<TlsAcceptor>) {
    let _ = tcp.set_nodelay(true);
    let Ok(peer) = tcp.peer_addr() else { return };
    let io: Box<dyn Io> = match tls {
        None => Box::new(tcp),
        Some(acceptor) => match timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(Ok(s)) => Box::new(s),
            _ => return,
        },
    };
    let mut registration = None;
    let check = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        let r = classify(req.uri()).ok_or_else(|| http_error(StatusCode::NOT_FOUND))?;
        let mut st = shared.lock();
        let refused = match r {
            Route::Api { .. } => st.sw.refuse_api,
            Route::Stream(_) => st.sw.refuse_stream,
        };
        if refused {
            st.stats.refused_total += 1;
            return Err(http_error(StatusCode::SERVICE_UNAVAILABLE));
        }
        match &r {
            Route::Api { .. } => {
                st.charge(peer.ip(), HANDSHAKE_WEIGHT)
                    .map_err(refused_upgrade)?;
            }
            Route::Stream(s) => {
                st.check_ban(peer.ip()).map_err(refused_upgrade)?;
                st.stream_connect(peer.ip()).map_err(too_many)?;
                match s.form {
                    state::Form::Path => {
                        st.stats.path_form_connects += 1;
                        // The path holds a listenKey: not logged.
                        vlog!(
                            "/private/ws/<listenKey>: path form, nothing will be pushed \
(Binance's /private pushes nothing on it since 2026-04-23; use /private/stream and \
SUBSCRIBE, or /private/ws?listenKey=)"
                        );
                    }
                    state::Form::Legacy => {
                        st.stats.legacy_connects += 1;
                        vlog!(
                            "/{}: legacy route, nothing will be pushed (retired 2026-04-23; \
use /private)",
                            req.uri().path().split('/').nth(1).unwrap_or("")
                        );
                    }
                    _ => {}
                }
            }
        }
        drop(st);
        registration = Some(conn::register(&shared, r, req.uri().path(), peer.ip()));
        Ok(resp)
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(io, check, None);
    let ws = match timeout(HANDSHAKE_TIMEOUT, upgrade).await {
        Ok(Ok(ws)) => ws,
        _ => return,
    };
    if let Some(reg) = registration {
        conn::run(shared, ws, reg).await;
    }
}
