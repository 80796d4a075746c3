//! One stream connection and the subscriptions it carries.
//!
//! On the SUBSCRIBE form (the default, what Binance's own SDKs use) a
//! connection to `<base>/stream` carries any number of listenKeys, up to a
//! cap: each is subscribed with `{"method":"SUBSCRIBE","params":[...],
//! "id":N}`, acknowledged with `{"result":null,"id":N}`, and its events
//! arrive wrapped as `{"stream":"<listenKey>","data":{...}}`, routed here to
//! every stream subscribed to that key. Several accounts' streams may share
//! one connection (see `pool`). On the query form a connection to
//! `<base>/ws?listenKey=<key>` carries exactly one key, unwrapped.
//!
//! One task per connection owns the socket: it reads and routes, sends
//! subscription requests paced under Binance's 10 incoming messages per
//! second, replaces itself make-before-break before the server's 24 h limit
//! or when the server announces `serverShutdown` (nothing lost, nothing
//! delivered twice), and when the connection is lost or goes silent tells
//! every stream on it, each of which then reports its own gap.
//!
//! - `handle`: the connection as the pool and the streams hold it;
//! - `task`: the serve loop and routing;
//! - `pacer`: our requests, their pacing and their answers;
//! - `rotate`: make-before-break rotation and its `Dedup`.

mod handle;
mod pacer;
mod rotate;
mod task;
#[cfg(test)]
mod tests;

pub use handle::{Answer, ConnHandle, Membership};

use crate::engine::config::StreamForm;
use crate::engine::event::now_ms;
use crate::engine::net::connect::{Dialer, Ws};
use crate::engine::net::lead::SocketMark;
use crate::engine::net::url::Endpoint;
use std::sync::atomic::{AtomicI64, AtomicUsize};
use std::time::Duration;
use tokio::time::Instant;

/// What a connection needs; shared by every connection of one identity.
pub struct ConnSettings {
    pub base: Endpoint,
    pub dialer: Dialer,
    pub form: StreamForm,
    pub request_timeout: Duration,
    pub silence: Duration,
    pub rotate_after: Duration,
    /// Subscriptions one connection carries at most.
    pub max_streams: usize,
    /// Whether streams of different clients may share a connection.
    pub sharing: bool,
    /// Streams with equal identities (endpoint, proxy, roots, form, cap)
    /// may share a connection.
    pub identity: u64,
}

/// What a stream's health shows of its connection.
pub struct ConnStats {
    pub id: u64,
    /// Subscriptions (streams) on the connection now.
    pub streams: AtomicUsize,
    /// When the server last pinged, ms since the epoch; 0 if never.
    pub last_ping_ms: AtomicI64,
}

/// Why a connection ended.
struct Lost {
    reason: &'static str,
    message: String,
}

impl Lost {
    fn new(reason: &'static str, message: impl Into<String>) -> Lost {
        Lost {
            reason,
            message: message.into(),
        }
    }
}

/// A live socket and what is known of it.
struct Link {
    /// Its socket, as the one a reader leading the connection sleeps on
    /// (`lead`). Declared first: dropped before `ws` closes the socket.
    _socket: Option<SocketMark>,
    ws: Ws,
    opened: Instant,
    last_frame: Instant,
    last_frame_ms: i64,
}

impl Link {
    #[cfg(test)]
    fn new(ws: Ws) -> Link {
        Link::with_socket(ws, None)
    }

    fn with_socket(ws: Ws, socket: Option<SocketMark>) -> Link {
        Link {
            _socket: socket,
            ws,
            opened: Instant::now(),
            last_frame: Instant::now(),
            last_frame_ms: now_ms(),
        }
    }

    fn heard(&mut self) {
        self.last_frame = Instant::now();
        self.last_frame_ms = now_ms();
    }
}

/// `<base>/ws?listenKey=<key>`.
pub fn query_url(base: &Endpoint, key: &str) -> Endpoint {
    let mut e = base.join("ws");
    e.path
        .push_str(if e.path.contains('?') { "&" } else { "?" });
    e.path.push_str("listenKey=");
    e.path.push_str(key);
    e
}

fn far() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365)
}
