//! Shared state: accounts (API key -> listenKey), open connections, faults,
//! switches and counters. One mutex guards it all; it is never held across an
//! `.await`, so every operation on it is short and atomic.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::mem::discriminant;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::{mpsc, Notify};

use crate::account::{Book, Event};
use crate::events;
use crate::limit::{self, Refused};
use crate::sign::Cred;

pub static VERBOSE: AtomicBool = AtomicBool::new(false);

/// `set clock_offset_ms`: how far the server's clock (for `serverTime` and
/// signed requests' timestamp checks) is ahead of the real one.
pub static CLOCK_OFFSET_MS: AtomicI64 = AtomicI64::new(0);

/// The server's clock as signed requests see it (the real one, offset).
/// The account an API key addresses on one product. Binance keeps one
/// listenKey and one book per product for a key; here they are named
/// `<api key>` (USDⓈ-M), `<api key>.coinm`, `<api key>.pm` (an API key is
/// letters and digits, so no name clashes).
pub fn account_id(api_key: &str, product: &str) -> String {
    match product {
        "coinm" | "pm" => format!("{api_key}.{product}"),
        _ => api_key.to_string(),
    }
}

pub fn server_ms() -> u64 {
    now_ms().saturating_add_signed(CLOCK_OFFSET_MS.load(std::sync::atomic::Ordering::Relaxed))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wall clock (CLOCK_REALTIME) in ns since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// An event's `e`: from its JSON, or (a `raw` text with placeholders that
/// is not JSON) from the first `"e":"…"` in it.
fn event_type(text: &str) -> Option<String> {
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        return v.get("e").and_then(Value::as_str).map(String::from);
    }
    let rest = &text[text.find(r#""e":""#)? + 5..];
    Some(rest[..rest.find('"')?].to_string())
}

/// API keys are never logged in full: the first 4 characters only.
pub fn short(api_key: &str) -> String {
    format!("{}…", api_key.chars().take(4).collect::<String>())
}

/// FNV-1a, to name an account in `keys` without revealing its API key.
pub fn key_hash(api_key: &str) -> String {
    let h = api_key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{h:016x}")
}

#[derive(Clone, Copy, Debug)]
pub struct Timings {
    pub key_lifetime_ms: u64,
    pub ping_interval_ms: u64,
    pub api_lifetime_ms: u64,
    pub stream_lifetime_ms: u64,
}

impl Default for Timings {
    fn default() -> Self {
        Timings {
            key_lifetime_ms: 3_600_000,
            ping_interval_ms: 180_000,
            api_lifetime_ms: 86_400_000,
            stream_lifetime_ms: 86_400_000,
        }
    }
}

/// Binance's limits (defaults), settable by flags and `set`; 0 turns one off.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Incoming messages per second on a stream connection.
    pub stream_max_msgs_per_sec: u64,
    /// Streams (subscriptions) per stream connection.
    pub stream_max_streams: u64,
    /// Request weight per IP in fixed windows (WebSocket API and REST), and
    /// the ban of an IP that does not back off.
    pub weight: limit::Rules,
    /// New stream connections per IP per rolling 5 minutes.
    pub stream_connects_per_5min: u64,
    /// Stream request ids must be unsigned integers (Binance's documented
    /// rule); off, strings of 1 to 36 characters and null are accepted too.
    pub strict_stream_ids: bool,
    /// Not a limit but the wire's other variable: wrapped events name their
    /// stream `<listenKey>@<EVENT>` (`--stream-name-form event`, the form
    /// testnet's LIST_SUBSCRIPTIONS shows) instead of `<listenKey>`.
    pub stream_name_event: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            stream_max_msgs_per_sec: 10,
            stream_max_streams: 1024,
            weight: limit::Rules::default(),
            stream_connects_per_5min: 300,
            strict_stream_ids: true,
            stream_name_event: false,
        }
    }
}

impl Limits {
    /// The window as Binance names it: (`interval`, `intervalNum`) for
    /// `rateLimits`, and the `X-MBX-USED-WEIGHT-` header's suffix.
    pub fn weight_interval(&self) -> (&'static str, u64, String) {
        let ms = self.weight.window_ms.max(1);
        if ms % 60_000 == 0 {
            ("MINUTE", ms / 60_000, format!("{}M", ms / 60_000))
        } else {
            let s = ms.div_ceil(1000);
            ("SECOND", s, format!("{s}S"))
        }
    }
}

/// Weight of a WebSocket API handshake (DOC-WSAPI).
pub const HANDSHAKE_WEIGHT: u64 = 5;
const CONNECT_WINDOW: Duration = Duration::from_secs(300);

/// How a stream connection asked for its streams (`stream_connections`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Form {
    /// `/private/stream` or `/private/ws` without `listenKey=`: SUBSCRIBE (and `?streams=`).
    Subscribe,
    /// `/private/ws?listenKey=` or `/private/stream?listenKey=..&listenKey=..`.
    Query,
    /// `/private/ws/<listenKey>`: accepted, silent (as mainnet since 2026-04-23).
    Path,
    /// `/ws`, `/ws/<x>`, `/stream`: accepted, silent.
    Legacy,
    /// `/public/...` and `/market/...`: accepted, no market data.
    Market,
}

impl Form {
    pub fn name(self) -> &'static str {
        match self {
            Form::Subscribe => "subscribe",
            Form::Query => "query",
            Form::Path => "path",
            Form::Legacy => "legacy",
            Form::Market => "market",
        }
    }
    /// Whether user data is ever pushed on this form.
    pub fn delivers(self) -> bool {
        matches!(self, Form::Subscribe | Form::Query)
    }
}

/// One stream of a connection: a listenKey on `/private` (or any name elsewhere).
pub struct Sub {
    pub name: String,
    /// `events=A/B`: only these event types (listenKeyExpired always passes).
    pub events: Option<Vec<String>>,
}

pub struct StreamConn {
    pub form: Form,
    /// Stream mode: events wrapped as `{"stream":..,"data":..}`; ws mode: bare.
    pub combined: bool,
    pub subs: Vec<Sub>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Api,
    Stream,
}

#[derive(Clone, Copy)]
pub enum Target {
    Api,
    Stream,
    All,
}

impl Target {
    pub fn parse(s: Option<&str>) -> Result<Target, String> {
        match s {
            None | Some("all") => Ok(Target::All),
            Some("api") => Ok(Target::Api),
            Some("stream") => Ok(Target::Stream),
            Some(o) => Err(format!("target must be api, stream or all, not {o}")),
        }
    }
    pub fn has(self, k: Kind) -> bool {
        matches!(
            (self, k),
            (Target::All, _) | (Target::Api, Kind::Api) | (Target::Stream, Kind::Stream)
        )
    }
}

/// An API answer ready to go, with the faults that shape how it is sent.
pub struct Reply {
    pub text: String,
    /// Unrelated messages sent before the answer.
    pub spam: Vec<String>,
    pub duplicate: bool,
    /// Send only the first half of the frame's bytes, then go silent.
    pub cut: bool,
    /// Send the answer in a binary frame.
    pub binary: bool,
    /// Send these bytes (a binary frame) instead of the answer.
    pub bytes: Option<Vec<u8>>,
}

/// How an emitted event goes on the wire.
pub enum Frame {
    Text,
    Binary,
    Bytes(Vec<u8>),
}

/// What other tasks ask a connection task to do.
pub enum Out {
    /// An event's text, in a text frame (or a binary one when `true`).
    Event(String, bool),
    /// Exact bytes in a binary frame (`emit` with `hex`).
    Bytes(Vec<u8>),
    Reply(Reply),
    Pings(u64),
    Close(u16, String),
    Revoke,
    /// Send `serverShutdown`, then close (1001) after this long.
    Shutdown(Duration),
}

pub struct Conn {
    pub kind: Kind,
    pub tx: mpsc::UnboundedSender<Out>,
    /// Notified to drop the TCP connection without a close frame.
    pub kill: Arc<Notify>,
    pub path: String,
    pub ip: IpAddr,
    pub opened_ms: u64,
    /// Stream connections: route form and subscriptions.
    pub stream: Option<StreamConn>,
    /// API connections: the API keys used on it (for `revoke`).
    pub api_keys: HashSet<String>,
}

pub struct Account {
    pub listen_key: Option<String>,
    pub expires: Instant,
    /// The last event time handed out: `E` is strictly increasing per account.
    pub last_e: u64,
}

/// The counters of `stats`, listed once for the struct and its JSON.
macro_rules! counters {
    ($($name:ident),*) => {
        #[derive(Default)]
        pub struct Stats {
            $(pub $name: u64,)*
            /// Requests per method (only requests that named one).
            pub requests: BTreeMap<String, u64>,
        }
        impl Stats {
            pub fn to_json(&self) -> Value {
                let mut m = serde_json::Map::new();
                $(m.insert(stringify!($name).into(), self.$name.into());)*
                m.insert("requests".into(), json!(self.requests));
                Value::Object(m)
            }
        }
    };
}

counters!(
    api_connections_total,
    api_connections_open,
    stream_connections_total,
    stream_connections_open,
    answers_sent,
    pings_sent,
    pongs_ok,
    pongs_bad,
    events_emitted,
    events_delivered,
    refused_total,
    rate_limited_total,
    path_form_connects,
    legacy_connects,
    stream_limit_closes
);

/// Switches set by control commands; `reset` restores the default.
#[derive(Default)]
pub struct Switches {
    pub shuffle_max_us: u64,
    pub ping_first: bool,
    pub refuse_api: bool,
    pub refuse_stream: bool,
    pub silent: bool,
    /// Unrelated messages sent before every answer.
    pub spam: u64,
}

#[derive(Clone)]
pub enum FaultKind {
    Fail {
        status: u16,
        code: i64,
        msg: String,
        retry_after_ms: Option<u64>,
    },
    Delay(u64),
    NoAnswer,
    Raw(String),
    Oversize(usize),
    Duplicate,
    Cut,
    Reset,
    /// The answer in a binary frame, or these bytes instead of it.
    Binary(Option<Vec<u8>>),
}

/// Where a request came in, for the faults that apply to it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Api,
    Rest,
    Stream,
}

pub struct Fault {
    pub kind: FaultKind,
    /// Requests left; negative: until `reset`.
    pub left: i64,
    pub method: Option<String>,
}

pub struct State {
    pub timings: Timings,
    pub limits: Limits,
    /// Set by `emit`'s `stream` for its events: the name their wrapper
    /// gives instead of the key (a name no subscription matches).
    pub stream_name_override: Option<String>,
    /// Signing credentials per API key (`--account`, `--account-ed25519`, `account`).
    pub creds: HashMap<String, Cred>,
    /// The futures account behind each API key (created on first use).
    pub books: HashMap<String, Book>,
    next_order_id: u64,
    /// Request weight, 429s and bans per IP.
    ips: HashMap<IpAddr, limit::Ip>,
    /// Portfolio Margin's request weight per IP, counted apart.
    pm_ips: HashMap<IpAddr, limit::Ip>,
    /// Stream connections accepted per IP, within 5 minutes.
    connects: HashMap<IpAddr, VecDeque<Instant>>,
    pub accounts: HashMap<String, Account>,
    pub conns: HashMap<u64, Conn>,
    next_id: u64,
    pub faults: Vec<Fault>,
    pub sw: Switches,
    pub stats: Stats,
    rng: u64,
}

pub struct Shared {
    state: Mutex<State>,
    /// Wakes the sweeper when a key's deadline may have moved earlier.
    pub sweep: Notify,
}

impl Shared {
    pub fn new(timings: Timings, limits: Limits) -> Self {
        Shared {
            state: Mutex::new(State::new(timings, limits)),
            sweep: Notify::new(),
        }
    }
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not take the whole server down with it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

impl State {
    fn new(timings: Timings, limits: Limits) -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let rng = (nanos ^ ((std::process::id() as u64) << 32) ^ 0x9e37_79b9_7f4a_7c15) | 1;
        State {
            timings,
            limits,
            stream_name_override: None,
            creds: HashMap::new(),
            books: HashMap::new(),
            next_order_id: 8_886_774,
            ips: HashMap::new(),
            pm_ips: HashMap::new(),
            connects: HashMap::new(),
            accounts: HashMap::new(),
            conns: HashMap::new(),
            next_id: 1,
            faults: Vec::new(),
            sw: Switches::default(),
            stats: Stats::default(),
            rng,
        }
    }

    /// xorshift64*: plenty for listenKeys and jitter on a test server.
    pub fn rand(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn new_listen_key(&mut self) -> String {
        (0..64)
            .map(|_| ALNUM[(self.rand() % ALNUM.len() as u64) as usize] as char)
            .collect()
    }

    pub fn register(&mut self, conn: Conn) -> u64 {
        let (total, open) = match conn.kind {
            Kind::Api => (
                &mut self.stats.api_connections_total,
                &mut self.stats.api_connections_open,
            ),
            Kind::Stream => (
                &mut self.stats.stream_connections_total,
                &mut self.stats.stream_connections_open,
            ),
        };
        *total += 1;
        *open += 1;
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(id, conn);
        id
    }

    pub fn unregister(&mut self, id: u64) {
        match self.conns.remove(&id).map(|c| c.kind) {
            Some(Kind::Api) => self.stats.api_connections_open -= 1,
            Some(Kind::Stream) => self.stats.stream_connections_open -= 1,
            None => {}
        }
    }

    /// Takes at most one fault of each kind that applies to a request of
    /// `method`. A fault without a method applies to WebSocket API requests
    /// only; REST requests (`method` "GET /fapi/v1/openOrders") take the
    /// faults naming them or "REST"; stream requests ("SUBSCRIBE", …) the
    /// faults naming them.
    pub fn take_faults(&mut self, method: Option<&str>, scope: Scope) -> Vec<FaultKind> {
        let mut taken: Vec<FaultKind> = Vec::new();
        for f in &mut self.faults {
            let applies = match f.method.as_deref() {
                None => scope == Scope::Api,
                Some("REST") => scope == Scope::Rest,
                Some(m) => Some(m) == method,
            };
            if f.left == 0
                || !applies
                || taken
                    .iter()
                    .any(|t| discriminant(t) == discriminant(&f.kind))
            {
                continue;
            }
            if f.left > 0 {
                f.left -= 1;
            }
            taken.push(f.kind.clone());
        }
        self.faults.retain(|f| f.left != 0);
        taken
    }

    fn account(&mut self, api_key: &str) -> &mut Account {
        (self.accounts.entry(api_key.to_string())).or_insert_with(|| Account {
            listen_key: None,
            expires: Instant::now(),
            last_e: 0,
        })
    }

    fn next_e(&mut self, api_key: &str) -> u64 {
        let acct = self.account(api_key);
        acct.last_e = now_ms().max(acct.last_e + 1);
        acct.last_e
    }

    /// The account's listenKey if still valid; a key past its deadline is
    /// expired first (listenKeyExpired sent), whether or not the sweeper ran.
    pub fn active_key(&mut self, api_key: &str) -> Option<String> {
        let acct = self.accounts.get(api_key)?;
        let key = acct.listen_key.clone()?;
        if acct.expires <= Instant::now() {
            self.expire(api_key);
            return None;
        }
        Some(key)
    }

    fn extend(&mut self, api_key: &str) {
        let life = Duration::from_millis(self.timings.key_lifetime_ms);
        if let Some(a) = self.accounts.get_mut(api_key) {
            a.expires = Instant::now() + life;
        }
    }

    /// `userDataStream.start`: the active key extended, or a new one.
    pub fn start_key(&mut self, api_key: &str) -> String {
        if let Some(k) = self.ping_key(api_key) {
            return k;
        }
        let key = self.new_listen_key();
        self.account(api_key).listen_key = Some(key.clone());
        self.extend(api_key);
        vlog!("listenKey {}… issued for {}", &key[..8], short(api_key));
        key
    }

    /// `userDataStream.ping`: the active key extended, if any.
    pub fn ping_key(&mut self, api_key: &str) -> Option<String> {
        let k = self.active_key(api_key)?;
        self.extend(api_key);
        Some(k)
    }

    /// `userDataStream.stop`: invalidate the key. Query-form connections left
    /// with no valid key are closed (1000); SUBSCRIBE-form connections stay
    /// open (they may carry other keys) and the key goes silent on them.
    pub fn stop_key(&mut self, api_key: &str) -> bool {
        let Some(key) = self.active_key(api_key) else {
            return false;
        };
        if let Some(a) = self.accounts.get_mut(api_key) {
            a.listen_key = None;
        }
        let valid: HashSet<&str> = (self.accounts.values())
            .filter_map(|a| a.listen_key.as_deref())
            .collect();
        for c in self.conns.values() {
            let Some(s) = c.stream.as_ref().filter(|s| s.form == Form::Query) else {
                continue;
            };
            let has = |k: &str| s.subs.iter().any(|x| x.name == k);
            if has(&key) && !s.subs.iter().any(|x| valid.contains(x.name.as_str())) {
                let _ = c.tx.send(Out::Close(1000, String::new()));
            }
        }
        vlog!("listenKey {}… stopped for {}", &key[..8], short(api_key));
        true
    }

    /// Expire the account's key now: listenKeyExpired to its connections.
    pub fn expire(&mut self, api_key: &str) -> bool {
        let Some(key) = self
            .accounts
            .get_mut(api_key)
            .and_then(|a| a.listen_key.take())
        else {
            return false;
        };
        let e = self.next_e(api_key);
        self.send_to_key(&key, events::expired(e, &key), false, &Frame::Text);
        vlog!("listenKey {}… expired for {}", &key[..8], short(api_key));
        true
    }

    /// Expire every lapsed key; returns the next deadline.
    pub fn sweep(&mut self, now: Instant) -> Option<Instant> {
        let due: Vec<String> = (self.accounts.iter())
            .filter(|(_, a)| a.listen_key.is_some() && a.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.expire(&k);
        }
        self.accounts
            .values()
            .filter(|a| a.listen_key.is_some())
            .map(|a| a.expires)
            .min()
    }

    /// One event for the account: allocates `E`, queues the text on every
    /// connection subscribed to its valid key (filtered by `events=` on the
    /// event's `e`), in a text frame. Returns (E, connections reached).
    pub fn emit_one(&mut self, api_key: &str, make: &dyn Fn(u64) -> String) -> (u64, u64) {
        self.emit_framed(api_key, make, &Frame::Text)
    }

    /// `emit_one` with the frame chosen: `Binary` sends the same (wrapped)
    /// text in a binary frame; `Bytes` sends exactly these bytes, unwrapped
    /// and unfiltered, in a binary frame (`make` then only takes the `E`).
    pub fn emit_framed(
        &mut self,
        api_key: &str,
        make: &dyn Fn(u64) -> String,
        frame: &Frame,
    ) -> (u64, u64) {
        let key = self.active_key(api_key);
        let e = self.next_e(api_key);
        self.stats.events_emitted += 1;
        let Some(k) = key else {
            return (e, 0);
        };
        (e, self.send_to_key(&k, make(e), true, frame))
    }

    /// Queues the event `text` on the connections subscribed to `key`
    /// (wrapped in stream mode); `filtered`: subject to `events=` filters
    /// (listenKeyExpired is not).
    fn send_to_key(&mut self, key: &str, text: String, filtered: bool, frame: &Frame) -> u64 {
        if self.sw.silent {
            return 0;
        }
        let mut n = 0;
        let mut wrapped = None;
        let mut typ = None; // read from the text only when a filter or the name asks
        let name_event = self.limits.stream_name_event;
        let name_override = self.stream_name_override.clone();
        for c in self.conns.values() {
            let Some(s) = c.stream.as_ref().filter(|s| s.form.delivers()) else {
                continue;
            };
            let Some(sub) = s.subs.iter().find(|x| x.name == key) else {
                continue;
            };
            let passes = match &sub.events {
                _ if matches!(frame, Frame::Bytes(_)) => true,
                Some(ev) if filtered => {
                    let t = typ.get_or_insert_with(|| event_type(&text));
                    ev.iter().any(|x| Some(x.as_str()) == t.as_deref())
                }
                _ => true,
            };
            if !passes {
                continue;
            }
            let out = if let Frame::Bytes(b) = frame {
                Out::Bytes(b.clone())
            } else if s.combined {
                let w = wrapped.get_or_insert_with(|| {
                    let name = if let Some(n) = &name_override {
                        n.clone()
                    } else if name_event {
                        let t = typ.get_or_insert_with(|| event_type(&text));
                        format!("{key}@{}", t.as_deref().unwrap_or_default())
                    } else {
                        key.to_owned()
                    };
                    format!(r#"{{"stream":{},"data":{text}}}"#, Value::from(name))
                });
                Out::Event(w.clone(), matches!(frame, Frame::Binary))
            } else {
                Out::Event(text.clone(), matches!(frame, Frame::Binary))
            };
            if c.tx.send(out).is_ok() {
                n += 1;
            }
        }
        self.stats.events_delivered += n;
        n
    }

    /// A fresh order, algo or trade id (one sequence for all).
    pub fn next_id(&mut self) -> u64 {
        self.next_order_id += 1;
        self.next_order_id
    }

    /// Emits an account change's events in order; returns their `E`s.
    pub fn emit_all(&mut self, api_key: &str, events: Vec<Event>) -> Vec<u64> {
        events
            .iter()
            .map(|ev| self.emit_one(api_key, &|e| ev(e)).0)
            .collect()
    }

    /// Charges `weight` to `ip` in its window (limit::Ip::charge): the
    /// weight used including this, or why it is refused (nothing charged).
    pub fn charge(&mut self, ip: IpAddr, weight: u64) -> Result<u64, Refused> {
        self.charge_in(false, ip, weight)
    }

    /// As [`State::charge`], on Portfolio Margin's own count when `pm`.
    pub fn charge_in(&mut self, pm: bool, ip: IpAddr, weight: u64) -> Result<u64, Refused> {
        let rules = self.limits.weight;
        let ips = if pm { &mut self.pm_ips } else { &mut self.ips };
        let r = ips
            .entry(ip)
            .or_default()
            .charge(&rules, server_ms(), weight);
        if r.is_err() {
            self.stats.rate_limited_total += 1;
        }
        r
    }

    /// Refuses anything from a banned IP (stream connections: weight 0).
    pub fn check_ban(&mut self, ip: IpAddr) -> Result<(), Refused> {
        let r = self.ips.entry(ip).or_default().check_ban(server_ms());
        if r.is_err() {
            self.stats.rate_limited_total += 1;
        }
        r
    }

    /// The weight each IP used in the current window.
    pub fn weights_used(&self) -> BTreeMap<String, u64> {
        let (rules, now) = (self.limits.weight, server_ms());
        (self.ips.iter())
            .map(|(ip, a)| (ip.to_string(), a.used(&rules, now)))
            .collect()
    }

    /// Per IP: weight used this window, 429s, 418s, bans, the current ban.
    pub fn ips_json(&self) -> Value {
        let (rules, now) = (self.limits.weight, server_ms());
        (self.ips.iter())
            .map(|(ip, a)| (ip.to_string(), a.to_json(&rules, now)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }

    /// `unban`: every IP's bans and 429 waits forgotten.
    pub fn unban(&mut self) {
        self.ips.values_mut().for_each(limit::Ip::pardon);
    }

    /// Counts a new stream connection from `ip`; `Err(retry_after_ms)` past the limit.
    pub fn stream_connect(&mut self, ip: IpAddr) -> Result<(), u64> {
        let now = Instant::now();
        let q = self.connects.entry(ip).or_default();
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= CONNECT_WINDOW)
        {
            q.pop_front();
        }
        let limit = self.limits.stream_connects_per_5min;
        if limit > 0 && q.len() as u64 >= limit {
            self.stats.rate_limited_total += 1;
            let at = q.front().map_or(now, |t| *t + CONNECT_WINDOW);
            return Err(at.saturating_duration_since(now).as_millis() as u64);
        }
        q.push_back(now);
        Ok(())
    }
}
