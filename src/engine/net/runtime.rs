//! The one tokio runtime all clients and streams share.
//!
//! It starts when the first client is created and stops when the last handle
//! is dropped, so no library thread outlives the last `binance_client_free`.
//! Two worker threads serve every connection of every client; DNS look-ups
//! may add up to two short-lived blocking threads.

use crate::engine::error::{Error, Result};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::runtime::{Builder, Handle, Runtime};

pub const WORKER_THREADS: usize = 2;
pub const MAX_BLOCKING_THREADS: usize = 2;

/// A counted reference to the shared runtime.
pub struct RuntimeRef {
    inner: Arc<Shared>,
}

struct Shared {
    runtime: Mutex<Option<Runtime>>,
    handle: Handle,
}

static SHARED: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

impl RuntimeRef {
    pub fn acquire() -> Result<RuntimeRef> {
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(inner) = slot.upgrade() {
            return Ok(RuntimeRef { inner });
        }
        let runtime = Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .max_blocking_threads(MAX_BLOCKING_THREADS)
            .thread_name("binance-uds")
            .thread_keep_alive(Duration::from_secs(5))
            .enable_io()
            .enable_time()
            .build()
            .map_err(|e| Error::internal(format!("starting the I/O runtime failed: {e}")))?;
        let handle = runtime.handle().clone();
        let inner = Arc::new(Shared {
            runtime: Mutex::new(Some(runtime)),
            handle,
        });
        *slot = Arc::downgrade(&inner);
        Ok(RuntimeRef { inner })
    }

    pub fn handle(&self) -> &Handle {
        &self.inner.handle
    }
}

impl Clone for RuntimeRef {
    fn clone(&self) -> Self {
        RuntimeRef {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let Some(runtime) = self.runtime.lock().ok().and_then(|mut r| r.take()) else {
            return;
        };
        if on_runtime_thread() {
            // Dropped from inside a runtime thread (e.g. a callback freed the
            // last client): blocking here is not allowed, so let the threads
            // wind down on their own.
            runtime.shutdown_background();
        } else {
            // Joins the worker threads; bounded in case a DNS look-up hangs.
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// Whether the calling thread runs async tasks (a Tokio runtime's thread,
/// the library's or the application's), where blocking is not allowed.
pub fn on_runtime_thread() -> bool {
    Handle::try_current().is_ok()
}

/// Refuses a blocking call on a thread that runs async tasks: blocking there
/// would stall (or deadlock) the tasks the call waits for. `what` names the
/// call in the message, e.g. "blocking calls" or "opening a stream".
pub fn ensure_blocking_allowed(what: &str) -> Result<()> {
    if on_runtime_thread() {
        return Err(Error::invalid(format!(
            "{what} cannot run on a thread that runs async tasks (a library callback, or a Tokio runtime's thread)"
        )));
    }
    Ok(())
}
