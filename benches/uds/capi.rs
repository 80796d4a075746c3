//! The library as C programs see it: thin wrappers over the exported
//! `binance_*` functions, called exactly as a C caller would (C strings in,
//! out pointers, error objects freed, returned strings freed).

use binance_uds::client::{binance_client, binance_client_free, binance_client_new};
use binance_uds::config::{
    binance_config, binance_config_add_root_certificate_pem, binance_config_free,
    binance_config_new, binance_config_set_api_key, binance_config_set_endpoint,
    binance_config_set_event_queue_capacity, binance_config_set_open_waits_for_subscription,
    binance_config_set_stream_endpoint,
};
use binance_uds::error::{binance_error, binance_error_free, binance_error_message};
use binance_uds::event::{
    binance_event, binance_event_free, binance_event_is_library, binance_event_json,
    binance_event_time_ms, binance_event_type,
};
use binance_uds::listen_key::{binance_listen_key_keepalive, binance_listen_key_start};
use binance_uds::status::{binance_status, BINANCE_OK, BINANCE_TIMEOUT};
use binance_uds::string::binance_string_free;
use binance_uds::user_stream::{
    binance_user_stream, binance_user_stream_close, binance_user_stream_fd,
    binance_user_stream_next, binance_user_stream_open, binance_user_stream_open_callback,
    binance_user_stream_try_next,
};
use std::ffi::{c_char, c_void, CStr, CString};
use std::ptr::null_mut;

/// Turns a status and its error object into a Result (freeing the error).
fn check(status: binance_status, err: *mut binance_error, what: &str) -> Result<(), String> {
    if status == BINANCE_OK {
        return Ok(());
    }
    // SAFETY: the message is a NUL-terminated string owned by `err`.
    let msg = unsafe { CStr::from_ptr(binance_error_message(err)) }
        .to_string_lossy()
        .into_owned();
    binance_error_free(err);
    Err(format!("{what}: status {status}: {msg}"))
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL in benchmark strings")
}

/// What a config is made of.
pub struct Settings<'a> {
    pub ws_api: &'a str,
    pub stream: &'a str,
    pub ca_pem: &'a str,
    pub api_key: &'a str,
    pub queue_capacity: Option<u32>,
}

/// `binance_config_new` and the setters a real program calls.
pub struct Config(*mut binance_config);

impl Config {
    pub fn new(s: &Settings) -> Result<Config, String> {
        let cfg = Config(binance_config_new());
        let mut err = null_mut();
        let key = cstr(s.api_key);
        check(
            binance_config_set_api_key(cfg.0, key.as_ptr(), &mut err),
            err,
            "api key",
        )?;
        let url = cstr(s.ws_api);
        check(
            binance_config_set_endpoint(cfg.0, url.as_ptr(), &mut err),
            err,
            "endpoint",
        )?;
        let pem = cstr(s.ca_pem);
        check(
            binance_config_add_root_certificate_pem(cfg.0, pem.as_ptr(), &mut err),
            err,
            "CA",
        )?;
        if !s.stream.is_empty() {
            let url = cstr(s.stream);
            check(
                binance_config_set_stream_endpoint(cfg.0, url.as_ptr(), &mut err),
                err,
                "stream endpoint",
            )?;
        }
        if let Some(c) = s.queue_capacity {
            check(
                binance_config_set_event_queue_capacity(cfg.0, c, &mut err),
                err,
                "queue capacity",
            )?;
        }
        Ok(cfg)
    }

    /// `binance_config_set_open_waits_for_subscription(cfg, 0)`: an open
    /// returns once its subscription is sent; the stream says
    /// `binance.stream_subscribed` when it is live.
    pub fn open_without_waiting(&self) -> Result<(), String> {
        let mut err = null_mut();
        check(
            binance_config_set_open_waits_for_subscription(self.0, 0, &mut err),
            err,
            "open waits",
        )
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        binance_config_free(self.0);
    }
}

/// A `binance_client`; usable from many threads at once, as documented.
pub struct Client(*mut binance_client);
// SAFETY: the C API documents a client as usable from any number of threads.
unsafe impl Send for Client {}
unsafe impl Sync for Client {}

impl Client {
    pub fn new(cfg: &Config) -> Result<Client, String> {
        let (mut c, mut err) = (null_mut(), null_mut());
        check(binance_client_new(cfg.0, &mut c, &mut err), err, "client")?;
        Ok(Client(c))
    }

    /// `binance_listen_key_start`; the key is copied out and freed.
    pub fn start(&self) -> Result<String, String> {
        let (mut key, mut err): (*mut c_char, _) = (null_mut(), null_mut());
        check(
            binance_listen_key_start(self.0, &mut key, &mut err),
            err,
            "start",
        )?;
        // SAFETY: on success `key` is a NUL-terminated string we own.
        let s = unsafe { CStr::from_ptr(key) }
            .to_string_lossy()
            .into_owned();
        binance_string_free(key);
        Ok(s)
    }

    /// `binance_listen_key_keepalive`, taking the returned key (and freeing
    /// it) as a program checking for a changed key would. Returns its length.
    pub fn keepalive(&self) -> Result<usize, String> {
        let (mut key, mut err): (*mut c_char, _) = (null_mut(), null_mut());
        check(
            binance_listen_key_keepalive(self.0, &mut key, &mut err),
            err,
            "keepalive",
        )?;
        // SAFETY: as in `start`.
        let n = unsafe { CStr::from_ptr(key) }.to_bytes().len();
        binance_string_free(key);
        Ok(n)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        binance_client_free(self.0);
    }
}

/// A `binance_user_stream` read with `binance_user_stream_next`.
pub struct Stream(*mut binance_user_stream);
// SAFETY: documented as readable from any thread.
unsafe impl Send for Stream {}

/// An event borrowed from the library (in a callback, or inside [`Event`]).
pub struct EventRef(*const binance_event);

impl EventRef {
    pub fn kind(&self) -> &CStr {
        // SAFETY: borrowed from the event, valid while it is.
        unsafe { CStr::from_ptr(binance_event_type(self.0)) }
    }
    pub fn time_ms(&self) -> i64 {
        binance_event_time_ms(self.0)
    }
    pub fn json(&self) -> &[u8] {
        // SAFETY: as in `kind`.
        unsafe { CStr::from_ptr(binance_event_json(self.0)) }.to_bytes()
    }
    pub fn is_library(&self) -> bool {
        binance_event_is_library(self.0) != 0
    }
}

/// One event from `next`, as the consumer owns it: freed on drop.
pub struct Event(EventRef);

impl std::ops::Deref for Event {
    type Target = EventRef;
    fn deref(&self) -> &EventRef {
        &self.0
    }
}

impl Drop for Event {
    fn drop(&mut self) {
        binance_event_free(self.0 .0.cast_mut());
    }
}

impl Stream {
    pub fn open(client: &Client) -> Result<Stream, String> {
        let (mut s, mut err) = (null_mut(), null_mut());
        check(
            binance_user_stream_open(client.0, &mut s, &mut err),
            err,
            "stream open",
        )?;
        Ok(Stream(s))
    }

    /// The next event, `None` on a timeout.
    pub fn next(&self, timeout_ms: u32) -> Result<Option<Event>, String> {
        let (mut ev, mut err) = (null_mut(), null_mut());
        let st = binance_user_stream_next(self.0, timeout_ms, &mut ev, &mut err);
        if st == BINANCE_TIMEOUT {
            binance_error_free(err);
            return Ok(None);
        }
        check(st, err, "next")?;
        Ok(Some(Event(EventRef(ev))))
    }

    /// The stream's descriptor for a poll loop.
    pub fn fd(&self) -> Result<i64, String> {
        let (mut fd, mut err) = (-1, null_mut());
        check(binance_user_stream_fd(self.0, &mut fd, &mut err), err, "fd")?;
        Ok(fd)
    }

    /// The next queued event, `None` when none is (no error object asked).
    pub fn try_next(&self) -> Result<Option<Event>, String> {
        let mut ev = null_mut();
        match binance_user_stream_try_next(self.0, &mut ev, null_mut()) {
            BINANCE_TIMEOUT => Ok(None),
            BINANCE_OK => Ok(Some(Event(EventRef(ev)))),
            st => Err(format!("try_next: status {st}")),
        }
    }

    /// The next event through the descriptor: poll(2) until it is
    /// readable, then try_next (a host event loop's way).
    pub fn poll_next(&self, fd: i64, timeout_ms: i32) -> Result<Option<Event>, String> {
        loop {
            if let Some(ev) = self.try_next()? {
                return Ok(Some(ev));
            }
            let mut p = libc::pollfd {
                fd: fd as i32,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            if unsafe { libc::poll(&mut p, 1, timeout_ms) } == 0 {
                return Ok(None);
            }
        }
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        binance_user_stream_close(self.0);
    }
}

/// What a callback stream calls with each event, on the library's thread.
pub type OnEvent = Box<dyn Fn(&EventRef) + Send + Sync>;

/// A `binance_user_stream` opened with `binance_user_stream_open_callback`.
pub struct CallbackStream {
    stream: *mut binance_user_stream,
    /// Boxed twice so the C side holds a thin pointer; freed after close.
    _on_event: Box<OnEvent>,
}

extern "C" fn trampoline(ev: *const binance_event, user_data: *mut c_void) {
    // SAFETY: `user_data` is the `Box<OnEvent>` the stream was opened with,
    // alive until the stream is closed, and no callback runs after that.
    let on_event = unsafe { &*(user_data as *const OnEvent) };
    // A panic must not unwind into the library.
    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| on_event(&EventRef(ev))));
}

impl CallbackStream {
    pub fn open(client: &Client, on_event: OnEvent) -> Result<CallbackStream, String> {
        let on_event = Box::new(on_event);
        let user = &*on_event as *const OnEvent as *mut c_void;
        let (mut s, mut err) = (null_mut(), null_mut());
        check(
            binance_user_stream_open_callback(client.0, Some(trampoline), user, &mut s, &mut err),
            err,
            "callback stream open",
        )?;
        Ok(CallbackStream {
            stream: s,
            _on_event: on_event,
        })
    }
}

impl Drop for CallbackStream {
    fn drop(&mut self) {
        // Returns once no callback runs any more; then the box may go.
        binance_user_stream_close(self.stream);
    }
}

/// Row 1, the library side: everything a C program does for its first
/// listenKey, from the first call to the last free. Returns the time of
/// each step in µs: (config, client new, start, free).
pub fn cold_first_key(s: &Settings) -> Result<[f64; 4], String> {
    let t0 = std::time::Instant::now();
    let cfg = Config::new(s)?;
    let t1 = std::time::Instant::now();
    let client = Client::new(&cfg)?;
    drop(cfg);
    let t2 = std::time::Instant::now();
    let key = client.start()?;
    let t3 = std::time::Instant::now();
    drop(client);
    let t4 = std::time::Instant::now();
    if key.len() != 64 {
        return Err(format!("unexpected listenKey length {}", key.len()));
    }
    let us = |a: std::time::Instant, b: std::time::Instant| (b - a).as_secs_f64() * 1e6;
    Ok([us(t0, t1), us(t1, t2), us(t2, t3), us(t3, t4)])
}
