//! `binance-uds`: listenKeys and the user data stream from the shell, on the
//! library's own engine (`binance_uds::engine`). `--help` is the manual.

mod accounts;

use binance_uds::engine::{Client, Config, Error, Status};
use binance_uds::engine::{Health, UserStream};
use binance_uds::engine::{Product, TESTNET_STREAM, TESTNET_WS_API};
use binance_uds::engine::{COINM_TESTNET_REST, COINM_TESTNET_STREAM, COINM_TESTNET_WS_API};
use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const NAME: &str = "binance-uds";

/// Exit status for bad arguments or environment.
const EXIT_USAGE: u8 = 2;
/// Library errors exit with this plus the `binance_status` value.
const EXIT_STATUS_BASE: u8 = 10;
/// Interrupted before the command completed (128 + SIGINT, as shells do).
const EXIT_INTERRUPTED: i32 = 130;

/// How often the terminal status line is refreshed.
const STATUS_EVERY: Duration = Duration::from_secs(1);

fn manual() -> String {
    let statuses: String = Status::ALL
        .iter()
        .filter(|s| **s != Status::Ok)
        .map(|s| format!("    {:<6} {}\n", EXIT_STATUS_BASE + *s as u8, s.name()))
        .collect();
    format!(
        "\
NAME
    {NAME} - Binance futures (USD-M, COIN-M, Portfolio Margin) listenKeys, user data stream and account snapshot, from the shell

SYNOPSIS
    {NAME} [--testnet] [--product usdm|coinm|pm] listen-key start|keepalive|stop
    {NAME} [--testnet] [--product usdm|coinm|pm] stream [--resync] [--events TYPE[,TYPE...]] [--health SECONDS] [--no-wait-subscribed]
    {NAME} [--testnet] [--product usdm|coinm|pm] stream --accounts FILE [--resync] [--events ...] [--health ...]
    {NAME} [--testnet] [--product usdm|coinm|pm] snapshot
    {NAME} --help | --version

DESCRIPTION
    listen-key start
        userDataStream.start: prints the account's listenKey on stdout. If
        the account has a valid key, that key is returned and extended by
        60 minutes.
    listen-key keepalive
        userDataStream.ping: extends the account's key by 60 minutes and
        prints the key the server extended. Fails with Binance's code -1125
        when the account has no valid key (run start again).
    listen-key stop
        userDataStream.stop: invalidates the account's key, for every
        connection and process that uses this API key. Prints nothing.
    stream
        Prints the account's user data events on stdout, one JSON object
        per line, exactly as received, until interrupted (SIGINT, SIGTERM)
        or stdout is closed; then closes the stream (the listenKey is left
        to other users of the account). The listenKey is kept alive and
        renewed, and the connection replaced when it drops. The library's
        own events are printed too, in order: binance.stream_gap (events
        may have been lost: with --resync the account snapshot follows,
        else take one), binance.listen_key_renewed,
        binance.stream_disconnected, and with --no-wait-subscribed (always
        with --accounts) binance.stream_subscribed. When stderr is a terminal, one status
        line there shows whether the stream is connected, the events
        delivered, the last event's age and the last keepalive.

    stream --accounts FILE
        Streams every account of FILE in one process, each with its own
        client and stream (accounts of one product share connections).
        The accounts are opened without waiting for their subscriptions,
        as with --no-wait-subscribed, so a thousand lines are open in
        about a second: each account's binance.stream_subscribed comes
        when it is live, before any event of it (unless --events leaves
        it out), or, if the server refuses the subscription,
        binance.stream_disconnected and then a binance.stream_gap with
        reason subscribe_failed once it is live again.
        Every event is printed as one line
        {{\"account\":\"NAME\",\"event\":EVENT}}, EVENT exactly as received
        (jq: select(.account == \"a\") | .event); --health lines get an
        \"account\" member. Lines of different accounts never interleave.
        No status line. An account whose stream fails is reported on
        stderr as \"{NAME}: account NAME: ...\" and the others go on
        until interrupted; the exit status is then the first failed
        account's, after a last line naming the failed accounts.

        FILE has one account a line, whitespace-separated FIELD=VALUE
        pairs (the first may be the bare name); blank lines and # comments
        are skipped:
            name=NAME        required: 1 to 64 of A-Z a-z 0-9 . _ - @ : /
            key_env=VAR      required: the variable holding the API key
            secret_env=VAR   the variable holding the HMAC secret key, or
            pem_file=PATH    an Ed25519 private key (PKCS#8 PEM) file
            product=usdm|coinm|pm      default: --product's
            ws_api=URL stream=URL rest=URL   endpoints, winning over
                             BINANCE_WS_API_URL, BINANCE_STREAM_URL and
                             BINANCE_REST_URL (needed to mix products
                             on non-default endpoints)
        Keys are never written in FILE: the variables must be upper-case
        names (A-Z, 0-9, _). A bad line stops the program before anything
        connects, naming FILE, the line and what is wrong; so does an unset
        variable or an unreadable key file. For example:
            desk-a key_env=DESK_A_KEY secret_env=DESK_A_SECRET
            desk-b key_env=DESK_B_KEY pem_file=/etc/uds/b.pem product=coinm

    snapshot
        Prints the account's state as one JSON document (the library's
        account snapshot: balances, positions, open orders and algo orders;
        Portfolio Margin's shape per book, see README.md). Needs a signing
        key: BINANCE_SECRET_KEY or BINANCE_PRIVATE_KEY_FILE.

    Errors go to stderr as \"{NAME}: STATUS (code C, HTTP status H): message\",
    with Binance's error code when it sent one. The API key is never printed.

OPTIONS
    --testnet
        Use Binance's testnet endpoints instead of production's
        (BINANCE_WS_API_URL and BINANCE_STREAM_URL, when set, still win).
        Portfolio Margin has no testnet.
    --product usdm|coinm|pm
        The account's product: USD-M Futures (the default), COIN-M Futures
        (WebSocket API wss://ws-dapi.binance.com/ws-dapi/v1, stream
        wss://dstream.binance.com) or Portfolio Margin (listenKey over REST
        POST/PUT/DELETE https://papi.binance.com/papi/v1/listenKey, stream
        wss://fstream.binance.com/pm). The listen-key commands do what the
        product offers: on pm, start is POST, keepalive PUT, stop DELETE.
    --resync
        stream: heal every gap in-band: the account snapshot
        (binance.account_snapshot) is printed when the stream opens and
        after every binance.stream_gap, before the events that followed
        it. Needs BINANCE_SECRET_KEY or BINANCE_PRIVATE_KEY_FILE.
    --events TYPE[,TYPE...]
        stream: print only events of these types, e.g.
        ORDER_TRADE_UPDATE,binance.stream_gap. May be given more than once.
    --health SECONDS
        stream: every SECONDS seconds, print the stream's health snapshot
        on stderr as one JSON object (connected, subscribed, reconnects,
        events delivered, dropped and queued, gaps, key renewals, last
        event time, key age, last keepalive's status and time; times in
        ms).
    --no-wait-subscribed
        stream: return from opening the stream as soon as its subscription
        is sent, instead of waiting for the server's acknowledgement (the
        default with --accounts). The library event
        binance.stream_subscribed (from_ms: when it was asked) is then
        printed when the stream is live, before any event of the account.
        A subscription the server
        refuses does not end the program: binance.stream_disconnected is
        printed, and binance.stream_gap (reason subscribe_failed) once the
        stream is live again.
    -h, --help
        Print this manual.
    -V, --version
        Print the version.

ENVIRONMENT
    BINANCE_API_KEY
        The API key (required; never printed). The listenKey methods need
        no secret key.
    BINANCE_WS_API_URL
        The WebSocket API endpoint. Default: wss://ws-fapi.binance.com/ws-fapi/v1
        (with --testnet: wss://testnet.binancefuture.com/ws-fapi/v1).
    BINANCE_STREAM_URL
        The user data stream base. Default: wss://fstream.binance.com/private
        (with --testnet: wss://fstream.binancefuture.com/private).
    BINANCE_SECRET_KEY, BINANCE_PRIVATE_KEY_FILE
        The key that signs REST requests (snapshot, stream --resync): an
        HMAC secret, or the path of an Ed25519 private key (PKCS#8 PEM).
        Never printed.
    BINANCE_REST_URL
        The REST base (Portfolio Margin's listenKey goes over REST).
        Default: the product's, e.g. https://papi.binance.com.
    BINANCE_CA_FILE
        A PEM file of CA certificates to trust besides the system's.
    HTTPS_PROXY, ALL_PROXY, NO_PROXY
        An HTTP CONNECT proxy for both connections, as curl reads them.
    An empty variable counts as unset.

EXIT STATUS
    0      success; for stream, ended by SIGINT, SIGTERM or a closed stdout
    2      usage: bad arguments, BINANCE_API_KEY unset, BINANCE_CA_FILE unreadable,
           a bad --accounts FILE
    10+N   the library's status N (binance_status, see binance_uds.h):
{statuses}    130    interrupted before the command completed

EXAMPLES
    key=$({NAME} listen-key start)
        The account's listenKey, for another program.
    */30 * * * * {NAME} listen-key keepalive >/dev/null
        A crontab line that keeps the account's key alive.
    {NAME} stream --events ORDER_TRADE_UPDATE | jq -r '.o.s + \" \" + .o.X'
        Each order update's symbol and status.
    {NAME} --testnet stream --health 60 2>>health.jsonl
        Testnet events on stdout, a health line a minute in health.jsonl.
    {NAME} stream --accounts desk.conf --resync | jq -c 'select(.account == \"desk-a\") | .event'
        A desk's accounts in one process, one tagged line per event;
        the events of desk-a, as received.
"
    )
}

/// Why the program stops early: the exit status and what to print.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: EXIT_USAGE,
            message: format!("{}\nTry '{NAME} --help'.", message.into()),
        }
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Failure {
        let mut details = Vec::new();
        if e.api_code != 0 {
            details.push(format!("code {}", e.api_code));
        }
        if e.http_status != 0 {
            details.push(format!("HTTP status {}", e.http_status));
        }
        let details = if details.is_empty() {
            String::new()
        } else {
            format!(" ({})", details.join(", "))
        };
        Failure {
            code: EXIT_STATUS_BASE + e.status as u8,
            message: format!("{}{details}: {}", e.status.name(), e.message),
        }
    }
}

#[derive(Debug, PartialEq)]
enum KeyOp {
    Start,
    Keepalive,
    Stop,
}

#[derive(Debug, PartialEq)]
enum Command {
    ListenKey(KeyOp),
    Stream {
        /// Print only these types (all when empty).
        events: Vec<String>,
        /// Print the health snapshot this often.
        health: Option<Duration>,
        /// Heal gaps with the account snapshot.
        resync: bool,
        /// `--accounts FILE`: many accounts, each line tagged.
        accounts: Option<String>,
        /// `--no-wait-subscribed`: the open returns once the subscription
        /// is sent; `binance.stream_subscribed` says when it is live.
        no_wait: bool,
    },
    Snapshot,
}

#[derive(Debug, PartialEq)]
enum Invocation {
    Help,
    Version,
    Run {
        testnet: bool,
        product: Product,
        command: Command,
    },
}

fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Invocation, String> {
    use lexopt::prelude::*;
    let mut parser = lexopt::Parser::from_args(args);
    let mut testnet = false;
    let mut product = Product::UsdM;
    let mut events: Vec<String> = Vec::new();
    let mut health = None;
    let mut resync = false;
    let mut accounts = None;
    let mut no_wait = false;
    let mut words: Vec<String> = Vec::new();
    while let Some(arg) = parser.next().map_err(|e| e.to_string())? {
        match arg {
            Short('h') | Long("help") => return Ok(Invocation::Help),
            Short('V') | Long("version") => return Ok(Invocation::Version),
            Long("testnet") => testnet = true,
            Long("resync") => resync = true,
            Long("no-wait-subscribed") => no_wait = true,
            Long("accounts") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                accounts = Some(value.string().map_err(|e| e.to_string())?);
            }
            Long("product") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                product = match value.string().map_err(|e| e.to_string())?.as_str() {
                    "usdm" => Product::UsdM,
                    "coinm" => Product::CoinM,
                    "pm" => Product::PortfolioMargin,
                    other => {
                        return Err(format!("--product {other:?}: expected usdm, coinm or pm"))
                    }
                };
            }
            Long("events") => {
                let list = parser.value().map_err(|e| e.to_string())?;
                let list = list.string().map_err(|e| e.to_string())?;
                for kind in list.split(',').map(str::trim) {
                    if kind.is_empty() {
                        return Err(format!("--events {list:?}: an empty event type"));
                    }
                    events.push(kind.to_string());
                }
            }
            Long("health") => {
                let value = parser.value().map_err(|e| e.to_string())?;
                let text = value.string().map_err(|e| e.to_string())?;
                match text.parse::<u64>() {
                    Ok(secs) if (1..=86_400).contains(&secs) => {
                        health = Some(Duration::from_secs(secs))
                    }
                    _ => {
                        return Err(format!(
                            "--health {text:?}: expected a whole number of seconds, 1 to 86400"
                        ))
                    }
                }
            }
            Value(word) => words.push(word.string().map_err(|e| e.to_string())?),
            _ => return Err(arg.unexpected().to_string()),
        }
    }
    let stream_options =
        !events.is_empty() || health.is_some() || resync || no_wait || accounts.is_some();
    let command = match words.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["listen-key", op] => Command::ListenKey(match op {
            "start" => KeyOp::Start,
            "keepalive" => KeyOp::Keepalive,
            "stop" => KeyOp::Stop,
            other => {
                return Err(format!(
                    "listen-key {other:?}: expected start, keepalive or stop"
                ))
            }
        }),
        ["listen-key"] => return Err("listen-key: expected start, keepalive or stop".into()),
        ["stream"] => Command::Stream {
            events,
            health,
            resync,
            accounts,
            no_wait,
        },
        ["snapshot"] => Command::Snapshot,
        [] => return Err("no command: expected listen-key, stream or snapshot".into()),
        [first, ..] if !["listen-key", "stream", "snapshot"].contains(&first) => {
            return Err(format!(
                "unknown command {first:?}: expected listen-key, stream or snapshot"
            ))
        }
        _ => return Err(format!("unexpected argument {:?}", words.last().unwrap())),
    };
    if !matches!(command, Command::Stream { .. }) && stream_options {
        return Err(
            "--accounts, --events, --health, --no-wait-subscribed and --resync go with stream"
                .into(),
        );
    }
    if testnet && product == Product::PortfolioMargin {
        return Err("--testnet: Portfolio Margin has no testnet".into());
    }
    Ok(Invocation::Run {
        testnet,
        product,
        command,
    })
}

/// An environment variable; `None` when unset or empty.
fn env(name: &str) -> Result<Option<String>, Failure> {
    match std::env::var(name) {
        Ok(v) if v.is_empty() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => {
            Err(Failure::usage(format!("{name} is not valid UTF-8")))
        }
    }
}

/// The signing key of an account, for the snapshot and --resync.
enum Signing {
    None,
    /// An environment variable holding the HMAC secret key.
    SecretEnv(String),
    /// An Ed25519 private key file; `label` names where its path came from.
    PemFile {
        label: String,
        path: String,
    },
}

/// Where an account's keys and endpoints come from.
struct Source<'a> {
    /// The environment variable holding the API key.
    api_key_env: &'a str,
    signing: Signing,
    /// Endpoints that win over the environment's (an accounts file line's).
    ws_api: Option<&'a str>,
    stream: Option<&'a str>,
    rest: Option<&'a str>,
}

impl Source<'static> {
    /// The single account of the environment, as the examples read it.
    fn environment() -> Result<Source<'static>, Failure> {
        let signing = if env("BINANCE_SECRET_KEY")?.is_some() {
            Signing::SecretEnv("BINANCE_SECRET_KEY".into())
        } else if let Some(path) = env("BINANCE_PRIVATE_KEY_FILE")? {
            Signing::PemFile {
                label: format!("BINANCE_PRIVATE_KEY_FILE {path}"),
                path,
            }
        } else {
            Signing::None
        };
        Ok(Source {
            api_key_env: "BINANCE_API_KEY",
            signing,
            ws_api: None,
            stream: None,
            rest: None,
        })
    }
}

/// The library's config for the account of `source`.
fn config(testnet: bool, product: Product, source: &Source) -> Result<Config, Failure> {
    let key_env = source.api_key_env;
    let api_key = env(key_env)?.ok_or_else(|| {
        Failure::usage(format!(
            "{key_env} is not set: export your Binance API key in it"
        ))
    })?;
    let mut cfg = Config::default();
    cfg.set_api_key(&api_key).map_err(|e| e.context(key_env))?;
    let code = match product {
        Product::UsdM => 0,
        Product::CoinM => 1,
        Product::PortfolioMargin => 2,
    };
    cfg.set_product(code)?;
    // Testnet: the product's (Portfolio Margin has none: refused by parse).
    let (testnet_api, testnet_stream, testnet_rest) = match product {
        Product::CoinM => (
            COINM_TESTNET_WS_API,
            COINM_TESTNET_STREAM,
            Some(COINM_TESTNET_REST),
        ),
        _ => (TESTNET_WS_API, TESTNET_STREAM, None),
    };
    // The source's own endpoint, else the environment's, else testnet's.
    let endpoint = |own: Option<&str>, var: &str, testnet_url: Option<&str>| {
        Ok::<_, Failure>(match own {
            Some(url) => Some(url.to_string()),
            None => env(var)?.or_else(|| testnet.then_some(testnet_url).flatten().map(Into::into)),
        })
    };
    if let Some(url) = endpoint(source.ws_api, "BINANCE_WS_API_URL", Some(testnet_api))? {
        cfg.set_endpoint(&url)
            .map_err(|e| e.context("BINANCE_WS_API_URL"))?;
    }
    if let Some(url) = endpoint(source.stream, "BINANCE_STREAM_URL", Some(testnet_stream))? {
        cfg.set_stream_endpoint(&url)
            .map_err(|e| e.context("BINANCE_STREAM_URL"))?;
    }
    if let Some(url) = endpoint(source.rest, "BINANCE_REST_URL", testnet_rest)? {
        cfg.set_rest_endpoint(&url)
            .map_err(|e| e.context("BINANCE_REST_URL"))?;
    }
    // The signing key, for the snapshot and --resync: never printed (the
    // library's errors about it name the variable, never the key).
    match &source.signing {
        Signing::None => {}
        Signing::SecretEnv(var) => {
            let secret = env(var)?.ok_or_else(|| Failure::usage(format!("{var} is not set")))?;
            cfg.set_secret_key(&secret).map_err(|e| e.context(var))?;
        }
        Signing::PemFile { label, path } => {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| Failure::usage(format!("{label}: {e}")))?;
            cfg.set_private_key_pem(&pem)
                .map_err(|e| e.context(label))?;
        }
    }
    if let Some(path) = env("BINANCE_CA_FILE")? {
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| Failure::usage(format!("BINANCE_CA_FILE {path}: {e}")))?;
        cfg.add_root_certificate_pem(&pem)
            .map_err(|e| e.context(&format!("BINANCE_CA_FILE {path}")))?;
    }
    Ok(cfg)
}

/// The account snapshot, one JSON document on stdout.
fn snapshot(cfg: &Config) -> Result<(), Failure> {
    let client = Client::new(cfg)?;
    println!("{}", client.account_snapshot()?);
    Ok(())
}

fn listen_key(cfg: &Config, op: KeyOp) -> Result<(), Failure> {
    let client = Client::new(cfg)?;
    match op {
        KeyOp::Start => println!("{}", client.listen_key_start()?),
        KeyOp::Keepalive => println!("{}", client.listen_key_keepalive()?),
        KeyOp::Stop => client.listen_key_stop()?,
    }
    Ok(())
}

/// SIGINT and SIGTERM, handled on a thread of their own: before a stream
/// is open they end the process (status 130); once one is, they shut every
/// stream down, which wakes each stream's wait for the next event.
struct Interrupts {
    state: Arc<Mutex<Watched>>,
}

#[derive(Default)]
struct Watched {
    interrupted: bool,
    streams: Vec<Arc<UserStream>>,
}

impl Interrupts {
    fn install() -> Result<Interrupts, Failure> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        // Registered now, before anything connects, so that no signal is
        // missed; the thread then waits for one (no polling).
        let mut signals =
            signal_hook::iterator::Signals::new([SIGINT, SIGTERM]).map_err(|e| Failure {
                code: EXIT_STATUS_BASE + Status::InternalError as u8,
                message: format!("cannot handle SIGINT and SIGTERM: {e}"),
            })?;
        let state = Arc::new(Mutex::new(Watched::default()));
        let watched = state.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                if signals.forever().next().is_none() {
                    return;
                }
                let mut w = watched.lock().unwrap_or_else(|p| p.into_inner());
                if w.streams.is_empty() {
                    std::process::exit(EXIT_INTERRUPTED);
                }
                w.interrupted = true;
                w.streams.iter().for_each(|s| s.shutdown());
            })
            .map_err(|e| Failure {
                code: EXIT_STATUS_BASE + Status::InternalError as u8,
                message: format!("cannot start the signal thread: {e}"),
            })?;
        Ok(Interrupts { state })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Watched> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on a signal shuts `stream` down.
    fn watch(&self, stream: Arc<UserStream>) {
        let mut w = self.lock();
        if w.interrupted {
            stream.shutdown();
        }
        w.streams.push(stream);
    }

    /// Shuts every stream down, as a signal does (stdout was closed).
    fn stop_all(&self) {
        let mut w = self.lock();
        w.interrupted = true;
        w.streams.iter().for_each(|s| s.shutdown());
    }

    fn interrupted(&self) -> bool {
        self.lock().interrupted
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// "3s ago", "4m05s ago", "2h07m ago"; "none yet" for 0.
fn ago(ms: i64) -> String {
    if ms <= 0 {
        return "none yet".into();
    }
    let s = (now_ms() - ms).max(0) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m{:02}s ago", s / 60, s % 60),
        _ => format!("{}h{:02}m ago", s / 3600, s / 60 % 60),
    }
}

/// The one-line status on a terminal's stderr.
struct StatusLine {
    shown: bool,
}

impl StatusLine {
    fn draw(&mut self, h: &Health) {
        let keepalive = match h.last_keepalive_status {
            -1 => "not yet".to_string(),
            s => format!(
                "{} {}",
                ago(h.last_keepalive_ms),
                Status::from_i32(s).map_or("failed", |s| if s == Status::Ok {
                    "ok"
                } else {
                    s.name()
                })
            ),
        };
        let state = if h.connected {
            "connected"
        } else {
            "reconnecting"
        };
        eprint!(
            "\r\x1b[2K{state} | {} events | last event {} | keepalive {keepalive}",
            h.events_delivered,
            ago(h.last_event_ms)
        );
        self.shown = true;
    }

    fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// The health snapshot as JSON, with the time it was taken.
fn health_json(h: &Health) -> serde_json::Value {
    let mut v = h.to_json();
    v["time_ms"] = now_ms().into();
    v
}

/// One stream until it ends. `tag` (an accounts file's name) is added to
/// every line printed; untagged, a terminal's stderr shows a status line.
fn stream(
    interrupts: &Interrupts,
    tag: Option<&str>,
    cfg: &Config,
    events: &[String],
    health_every: Option<Duration>,
) -> Result<(), Failure> {
    let client = Client::new(cfg)?;
    let stream = Arc::new(UserStream::open(&client, None)?);
    interrupts.watch(stream.clone());

    let mut status =
        (tag.is_none() && std::io::stderr().is_terminal()).then_some(StatusLine { shown: false });
    let mut next_status = Instant::now();
    let mut next_health = health_every.map(|every| Instant::now() + every);
    let result = loop {
        let now = Instant::now();
        if let Some(line) = status.as_mut() {
            if now >= next_status {
                line.draw(&stream.health());
                next_status = now + STATUS_EVERY;
            }
        }
        if let (Some(at), Some(every)) = (next_health.as_mut(), health_every) {
            if now >= *at {
                if let Some(line) = status.as_mut() {
                    line.clear();
                }
                let mut health = health_json(&stream.health());
                if let Some(name) = tag {
                    health["account"] = name.into();
                }
                eprintln!("{health}");
                *at = now + every;
            }
        }
        // Wait for the next event, or until the next line is due.
        let due = [status.as_ref().map(|_| next_status), next_health]
            .into_iter()
            .flatten()
            .min();
        let wait = due.map_or(Duration::from_secs(3600), |d| {
            d.saturating_duration_since(Instant::now())
        });
        match stream.next(wait) {
            Ok(Some(ev)) => {
                if !events.is_empty() && !events.iter().any(|k| k == ev.kind()) {
                    continue;
                }
                if let Some(line) = status.as_mut() {
                    line.clear();
                    next_status = Instant::now(); // redrawn below the event
                }
                let tagged = tag.map(|name| accounts::tag(name, ev.json()));
                // One line under stdout's lock: other accounts' lines never
                // interleave with it.
                let mut out = std::io::stdout().lock();
                let written = writeln!(out, "{}", tagged.as_deref().unwrap_or(ev.json()))
                    .and_then(|()| out.flush());
                if written.is_err() {
                    // stdout closed (e.g. `| head -1`): done, every account.
                    interrupts.stop_all();
                    break Ok(());
                }
            }
            Ok(None) => {}
            Err(e) if e.status == Status::StreamClosed && interrupts.interrupted() => break Ok(()),
            Err(e) => break Err(Failure::from(e)),
        }
    };
    if let Some(line) = status.as_mut() {
        line.clear();
    }
    // Closes the connection and the stream's task; the key stays valid.
    stream.close();
    result
}

/// `stream --accounts FILE`: every account of the file on a thread of its
/// own, in one process. An account that fails is reported on stderr with
/// its name and the others go on; the status is the first failed one's.
fn stream_accounts(
    file: &str,
    testnet: bool,
    product: Product,
    resync: bool,
    events: &[String],
    health: Option<Duration>,
) -> Result<(), Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Failure::usage(format!("--accounts {file}: {e}")))?;
    let list = accounts::parse(file, &text).map_err(Failure::usage)?;
    // Every account's config first: a variable unset or a key file
    // unreadable stops the program before anything connects.
    let mut configs = Vec::new();
    for a in &list {
        let at = |f: Failure| Failure {
            code: f.code,
            message: format!("{file}:{}: account {}: {}", a.line, a.name, f.message),
        };
        let product = a.product.unwrap_or(product);
        if testnet && product == Product::PortfolioMargin {
            return Err(at(Failure::usage(
                "--testnet: Portfolio Margin has no testnet",
            )));
        }
        let source = Source {
            api_key_env: &a.key_env,
            signing: match (&a.secret_env, &a.pem_file) {
                (Some(var), _) => Signing::SecretEnv(var.clone()),
                (None, Some(path)) => Signing::PemFile {
                    label: format!("pem_file {path}"),
                    path: path.clone(),
                },
                (None, None) => Signing::None,
            },
            ws_api: a.ws_api.as_deref(),
            stream: a.stream.as_deref(),
            rest: a.rest.as_deref(),
        };
        let mut cfg = config(testnet, product, &source).map_err(at)?;
        if resync {
            cfg.set_account_resync(1).map_err(|e| at(e.into()))?;
        }
        // Every open returns once its subscription is sent: the accounts
        // sharing a connection go out together in a few SUBSCRIBEs, instead
        // of each open waiting for its acknowledgement.
        cfg.set_open_waits_for_subscription(0)
            .map_err(|e| at(e.into()))?;
        configs.push(cfg);
    }
    let interrupts = Interrupts::install()?;
    let codes: Vec<Option<u8>> = std::thread::scope(|scope| {
        let threads: Vec<_> = list
            .iter()
            .zip(&configs)
            .map(|(a, cfg)| {
                let interrupts = &interrupts;
                scope.spawn(move || {
                    let result = stream(interrupts, Some(&a.name), cfg, events, health);
                    result.err().map(|f| {
                        eprintln!("{NAME}: account {}: {}", a.name, f.message);
                        f.code
                    })
                })
            })
            .collect();
        threads
            .into_iter()
            .zip(&list)
            .map(|(t, a)| {
                t.join().unwrap_or_else(|_| {
                    eprintln!("{NAME}: account {}: its thread panicked", a.name);
                    Some(EXIT_STATUS_BASE + Status::InternalError as u8)
                })
            })
            .collect()
    });
    let failed: Vec<&str> = list
        .iter()
        .zip(&codes)
        .filter(|(_, c)| c.is_some())
        .map(|(a, _)| a.name.as_str())
        .collect();
    match codes.iter().flatten().next() {
        None => Ok(()),
        Some(&code) => Err(Failure {
            code,
            message: format!(
                "{} of {} accounts failed: {}",
                failed.len(),
                list.len(),
                failed.join(", ")
            ),
        }),
    }
}

fn main() -> ExitCode {
    let invocation = match parse(std::env::args_os().skip(1)) {
        Ok(i) => i,
        Err(message) => {
            let f = Failure::usage(message);
            eprintln!("{NAME}: {}", f.message);
            return ExitCode::from(f.code);
        }
    };
    let result = match invocation {
        Invocation::Help => {
            print!("{}", manual());
            Ok(())
        }
        Invocation::Version => {
            println!("{NAME} {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Invocation::Run {
            testnet,
            product,
            command,
        } => match command {
            Command::Stream {
                events,
                health,
                resync,
                accounts: Some(file),
                ..
            } => stream_accounts(&file, testnet, product, resync, &events, health),
            command => Source::environment()
                .and_then(|source| config(testnet, product, &source))
                .and_then(|mut cfg| match command {
                    Command::ListenKey(op) => listen_key(&cfg, op),
                    // With --accounts: matched above.
                    Command::Stream {
                        events,
                        health,
                        resync,
                        no_wait,
                        ..
                    } => {
                        if resync {
                            cfg.set_account_resync(1)?;
                        }
                        if no_wait {
                            cfg.set_open_waits_for_subscription(0)?;
                        }
                        let interrupts = Interrupts::install()?;
                        stream(&interrupts, None, &cfg, &events, health)
                    }
                    Command::Snapshot => snapshot(&cfg),
                }),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("{NAME}: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Invocation, String> {
        parse(words.iter().map(OsString::from))
    }

    #[test]
    fn parses_the_commands_and_options() {
        assert_eq!(
            parse_words(&["--testnet", "listen-key", "start"]),
            Ok(Invocation::Run {
                testnet: true,
                product: Product::UsdM,
                command: Command::ListenKey(KeyOp::Start)
            })
        );
        assert_eq!(
            parse_words(&[
                "stream",
                "--events",
                "ORDER_TRADE_UPDATE,binance.stream_gap",
                "--events=TRADE_LITE",
                "--health=5"
            ]),
            Ok(Invocation::Run {
                testnet: false,
                product: Product::UsdM,
                command: Command::Stream {
                    events: vec![
                        "ORDER_TRADE_UPDATE".into(),
                        "binance.stream_gap".into(),
                        "TRADE_LITE".into()
                    ],
                    health: Some(Duration::from_secs(5)),
                    resync: false,
                    accounts: None,
                    no_wait: false,
                }
            })
        );
        assert_eq!(parse_words(&["stream", "-h"]), Ok(Invocation::Help));
        assert_eq!(parse_words(&["--version"]), Ok(Invocation::Version));
        assert_eq!(
            parse_words(&[
                "--product",
                "coinm",
                "stream",
                "--resync",
                "--no-wait-subscribed"
            ]),
            Ok(Invocation::Run {
                testnet: false,
                product: Product::CoinM,
                command: Command::Stream {
                    events: vec![],
                    health: None,
                    resync: true,
                    accounts: None,
                    no_wait: true,
                }
            })
        );
        assert_eq!(
            parse_words(&[
                "--product=coinm",
                "stream",
                "--accounts",
                "desk.conf",
                "--resync"
            ]),
            Ok(Invocation::Run {
                testnet: false,
                product: Product::CoinM,
                command: Command::Stream {
                    events: vec![],
                    health: None,
                    resync: true,
                    accounts: Some("desk.conf".into()),
                    no_wait: false,
                }
            })
        );
        assert_eq!(
            parse_words(&["--product", "pm", "snapshot"]),
            Ok(Invocation::Run {
                testnet: false,
                product: Product::PortfolioMargin,
                command: Command::Snapshot,
            })
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        for (args, says) in [
            (&[][..], "no command"),
            (&["listen"][..], "unknown command \"listen\""),
            (&["listen-key"][..], "expected start, keepalive or stop"),
            (&["listen-key", "go"][..], "listen-key \"go\""),
            (&["stream", "extra"][..], "unexpected argument \"extra\""),
            (&["stream", "--health", "0"][..], "--health \"0\""),
            (&["stream", "--health"][..], "--health"),
            (&["stream", "--events", "A,,B"][..], "empty event type"),
            (
                &["listen-key", "stop", "--health", "5"][..],
                "go with stream",
            ),
            (&["stream", "--verbose"][..], "--verbose"),
            (&["snapshot", "--resync"][..], "go with stream"),
            (&["snapshot", "--accounts", "f"][..], "go with stream"),
            (
                &["listen-key", "start", "--no-wait-subscribed"][..],
                "go with stream",
            ),
            (&["stream", "--accounts"][..], "--accounts"),
            (&["--product", "spot", "stream"][..], "--product \"spot\""),
            (
                &["--testnet", "--product", "pm", "stream"][..],
                "no testnet",
            ),
        ] {
            let err = parse_words(args).expect_err(&format!("{args:?} parsed"));
            assert!(
                err.contains(says),
                "{args:?}: {err:?} does not say {says:?}"
            );
        }
    }

    #[test]
    fn exit_statuses_follow_the_library_status() {
        let f = Failure::from(Error::new(Status::Timeout, "no answer"));
        assert_eq!(f.code, 14);
        assert_eq!(f.message, "BINANCE_TIMEOUT: no answer");
        let mut e = Error::new(Status::ApiError, "Invalid listenKey.");
        e.api_code = -1125;
        e.http_status = 400;
        assert_eq!(
            Failure::from(e).message,
            "BINANCE_API_ERROR (code -1125, HTTP status 400): Invalid listenKey."
        );
        // The manual lists every status with its exit code.
        let manual = manual();
        for s in Status::ALL.iter().filter(|s| **s != Status::Ok) {
            assert!(manual.contains(&format!("{}", EXIT_STATUS_BASE + *s as u8)));
            assert!(manual.contains(s.name()));
        }
    }

    #[test]
    fn the_manual_has_the_sections_of_a_man_page() {
        let manual = manual();
        let mut at = 0;
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "ENVIRONMENT",
            "EXIT STATUS",
            "EXAMPLES",
        ] {
            let found = manual[at..]
                .find(&format!("\n{section}\n"))
                .or_else(|| (at == 0 && manual.starts_with(section)).then_some(0))
                .unwrap_or_else(|| panic!("no {section} section after byte {at}"));
            at += found + 1;
        }
    }
}
