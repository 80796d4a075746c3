//! The user data stream: events delivered in order, with keepalive, key
//! renewal, reconnection, rotation and silence detection done for the user.
//!
//! - `conn`: one stream connection and the subscriptions it carries (the
//!   SUBSCRIBE form by default; the query form on request): its handle,
//!   the serve loop and routing, request pacing, make-before-break
//!   rotation;
//! - `sink`: a stream as its connection sees it, and the signals it gets;
//! - `shared`: a stream's queue and health, changed only through verbs;
//! - `pool`: connections shared by streams configured alike;
//! - `runner`: one task per stream, keeping its key alive and renewed and
//!   moving it to a working connection, with a `binance.stream_gap` for
//!   every span in which events may have been lost;
//! - `wire`: what a stream connection receives, told apart;
//! - this module: the handle the application holds.

mod conn;
pub mod pool;
mod runner;
mod shared;
mod sink;
mod wire;

use super::config::Config;
use super::error::{Error, Result, Status};
use super::event::Event;
use super::gate::Gate;
use super::net::runtime::RuntimeRef;
use super::queue::Popped;
use super::signal::RawFd;
use super::Client;
use conn::ConnSettings;
use shared::Shared;
use sink::Sink;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinHandle;

/// The callback form: called in order, from the stream's own thread.
pub type Callback = Box<dyn FnMut(Event) + Send>;

/// What a stream needs from the client's config.
pub struct StreamSettings {
    pub conn: Arc<ConnSettings>,
    pub keepalive: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    pub capacity: usize,
    pub open_waits: bool,
}

impl StreamSettings {
    pub fn from_config(config: &Config) -> Result<StreamSettings> {
        let base = config.stream_endpoint.clone();
        let dialer = super::client::dialer(config, &base)?;
        // Streams that could share a connection: same place, same way.
        let identity = config.connection_identity(
            &base,
            dialer.proxy.as_ref(),
            (
                config.product,
                config.stream_form,
                config.stream_subscriptions_per_connection,
                config.silence_timeout,
                config.rotate_after,
            ),
        );
        Ok(StreamSettings {
            conn: Arc::new(ConnSettings {
                base,
                dialer,
                form: config.stream_form,
                request_timeout: config.request_timeout,
                silence: config.silence_timeout,
                rotate_after: config.rotate_after,
                max_streams: config.stream_subscriptions_per_connection,
                sharing: config.connection_sharing,
                identity,
            }),
            keepalive: config.keepalive_interval,
            backoff_initial: config.backoff_initial,
            backoff_max: config.backoff_max,
            capacity: config.queue_capacity,
            open_waits: config.open_waits,
        })
    }
}

/// A snapshot of a stream's health.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub connected: bool,
    /// The server acknowledged the current key's subscription (on the
    /// query form: the connection carrying it is up).
    pub subscribed: bool,
    pub reconnects: u64,
    pub events_delivered: u64,
    pub events_dropped: u64,
    pub events_queued: u64,
    pub last_event_ms: i64,
    pub key_age_ms: i64,
    /// Status of the latest keepalive (0 = OK); -1 before the first.
    pub last_keepalive_status: i32,
    pub last_keepalive_ms: i64,
    pub key_renewals: u64,
    pub gaps: u64,
    /// When the server last pinged the stream's connection; 0 if never.
    pub last_server_ping_ms: i64,
    /// The connection the stream is on (0 while it has none).
    pub connection_id: u64,
    /// Streams on that connection, this one included.
    pub connection_streams: u64,
    /// The stream's account snapshot waits for its turn in the request
    /// budget's queue.
    pub snapshot_waiting: bool,
    /// Roughly when it runs (ms since the epoch); 0 when none waits.
    pub snapshot_eta_ms: i64,
}

impl Health {
    /// The snapshot as a JSON object, a member per field (destructured
    /// without `..`: a new field does not compile until it is here too).
    pub fn to_json(&self) -> serde_json::Value {
        let Health {
            connected,
            subscribed,
            reconnects,
            events_delivered,
            events_dropped,
            events_queued,
            last_event_ms,
            key_age_ms,
            last_keepalive_status,
            last_keepalive_ms,
            key_renewals,
            gaps,
            last_server_ping_ms,
            connection_id,
            connection_streams,
            snapshot_waiting,
            snapshot_eta_ms,
        } = self.clone();
        serde_json::json!({
            "connected": connected,
            "subscribed": subscribed,
            "reconnects": reconnects,
            "events_delivered": events_delivered,
            "events_dropped": events_dropped,
            "events_queued": events_queued,
            "gaps": gaps,
            "key_renewals": key_renewals,
            "last_event_ms": last_event_ms,
            "key_age_ms": key_age_ms,
            "last_keepalive_status": last_keepalive_status,
            "last_keepalive_ms": last_keepalive_ms,
            "last_server_ping_ms": last_server_ping_ms,
            "connection_id": connection_id,
            "connection_streams": connection_streams,
            "snapshot_waiting": snapshot_waiting,
            "snapshot_eta_ms": snapshot_eta_ms,
        })
    }
}

/// An open user data stream.
pub struct UserStream {
    shared: Arc<Shared>,
    task: Mutex<Option<JoinHandle<()>>>,
    dispatcher: Mutex<Option<std::thread::JoinHandle<()>>>,
    runtime: RuntimeRef,
    gate: Gate,
    callback_mode: bool,
}

impl UserStream {
    /// Obtains the listenKey, subscribes it on a stream connection (see
    /// `conn`) and starts delivering. Blocks until subscribed or failed;
    /// with `Config::open_waits` off, only until the key is obtained and
    /// its subscription sent (`binance.stream_subscribed` follows).
    pub fn open(client: &Client, callback: Option<Callback>) -> Result<UserStream> {
        super::net::runtime::ensure_blocking_allowed("opening a stream")?;
        let settings = Arc::new(StreamSettings::from_config(&client.config)?);
        let rest = if client.config.account_resync {
            Some(client.signed_rest().map_err(|_| {
                Error::invalid("client: account resync (binance_config_set_account_resync) needs a key to sign requests with: set binance_config_set_secret_key or binance_config_set_private_key_pem")
            })?.clone())
        } else {
            None
        };
        let runtime = client.runtime.clone();
        let keys = client.keys();
        let shared = Arc::new(Shared::new(settings.capacity));
        let (sink, signals) = Sink::new(shared.clone());
        let (key, member, joined) = runtime.handle().block_on(async {
            if settings.open_waits {
                let (key, member) = runner::establish(&keys, &settings, &sink, |_| None).await?;
                Ok::<_, Error>((key, member, None))
            } else {
                let (key, member, joined) =
                    runner::establish_later(&keys, &settings, &sink).await?;
                Ok((key, member, Some(joined)))
            }
        })?;
        shared.key_started();
        let mut runner = runner::Runner::new(keys, settings, sink, signals, key, member, rest);
        if let Some(joined) = joined {
            runner = runner.joining(joined);
        }
        let task = runtime.handle().spawn(runner.run());
        let callback_mode = callback.is_some();
        let dispatcher = match callback {
            Some(cb) => Some(
                spawn_dispatcher(shared.clone(), runtime.handle().clone(), cb)
                    .inspect_err(|_| task.abort())?,
            ),
            None => None,
        };
        Ok(UserStream {
            shared,
            task: Mutex::new(Some(task)),
            dispatcher: Mutex::new(dispatcher),
            runtime,
            gate: Gate::default(),
            callback_mode,
        })
    }

    /// The next event, waiting up to `timeout`. `Ok(None)` when nothing
    /// arrived in time; STREAM_CLOSED once the stream is closed.
    pub fn next(&self, timeout: Duration) -> Result<Option<Event>> {
        if self.callback_mode {
            return Err(Error::invalid(
                "stream: this stream delivers to its callback; binance_user_stream_next is not available",
            ));
        }
        let _in = self
            .gate
            .enter()
            .map_err(|_| Error::new(Status::StreamClosed, "the stream is closed"))?;
        match self.shared.pop(self.runtime.handle(), timeout) {
            Popped::Event(ev) => Ok(Some(ev)),
            Popped::TimedOut => Ok(None),
            Popped::Closed => Err(Error::new(Status::StreamClosed, "the stream is closed")),
        }
    }

    /// The next event if one is queued, without waiting: `next` with a
    /// zero timeout.
    pub fn try_next(&self) -> Result<Option<Event>> {
        self.next(Duration::ZERO)
    }

    /// A descriptor a host event loop waits on: readable exactly while
    /// `try_next` returns without `Ok(None)` (an event is queued, or the
    /// stream is closed). Owned by the stream, open until it is dropped.
    pub fn fd(&self) -> Result<RawFd> {
        if self.callback_mode {
            return Err(Error::invalid(
                "stream: this stream delivers to its callback; it has no descriptor to poll",
            ));
        }
        let _in = self
            .gate
            .enter()
            .map_err(|_| Error::new(Status::StreamClosed, "the stream is closed"))?;
        self.shared
            .queue
            .signal_fd()
            .map_err(|e| Error::internal(format!("making the stream's descriptor failed: {e}")))
    }

    pub fn health(&self) -> Health {
        self.shared.health()
    }

    /// Ends the stream without freeing anything: blocked readers wake with
    /// STREAM_CLOSED, later reads are refused, the callback thread ends
    /// after the callback in progress, and the stream's task is told to
    /// stop (its subscription ends). Never blocks; safe to race with
    /// `next` from any thread.
    pub fn shutdown(&self) {
        self.gate.shut(|| self.shared.queue.close());
        if let Some(task) = self.task.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            task.abort();
        }
    }

    /// Stops everything: `shutdown`, then waits for readers to leave, for
    /// the task to end (its subscription is dropped, and a connection no
    /// stream uses any more closes) and for the callback thread. The
    /// listenKey is left alone: other streams and processes share it.
    pub fn close(&self) {
        self.shutdown();
        self.gate.close(|| {});
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task {
            if !super::net::runtime::on_runtime_thread() {
                let _ = self.runtime.handle().block_on(task);
            }
        }
        let dispatcher = self
            .dispatcher
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(d) = dispatcher {
            // Closing from inside the callback: the thread ends by itself
            // as soon as the callback returns.
            if d.thread().id() != std::thread::current().id() {
                let _ = d.join();
            }
        }
    }
}

impl Drop for UserStream {
    fn drop(&mut self) {
        self.close();
    }
}

fn spawn_dispatcher(
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    mut cb: Callback,
) -> Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("binance-uds-cb".into())
        .spawn(move || loop {
            match shared.pop(&rt, Duration::from_secs(3600)) {
                Popped::Event(ev) => cb(ev),
                Popped::TimedOut => {}
                Popped::Closed => return,
            }
        })
        .map_err(|e| Error::internal(format!("starting the callback thread failed: {e}")))
}

/// The first characters of a listenKey, enough to recognise it in a log.
fn mask(key: &str) -> String {
    // By characters: a stream name from a server may be any text.
    format!("{}…", key.chars().take(4).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_shows_a_prefix_only() {
        assert_eq!(mask("abcdefgh"), "abcd…");
        assert_eq!(mask("ab"), "ab…");
        assert_eq!(mask("ééééé"), "éééé…");
    }
}
