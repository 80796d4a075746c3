//! Stream connections shared between streams: streams whose clients were
//! configured alike (endpoint, proxy, trusted roots, form, cap) are put on
//! the same connections, up to a cap of subscriptions each, so a thousand
//! accounts need a few connections rather than a thousand. A lost shared
//! connection is a gap for every stream on it, each reported in its own
//! stream. With sharing off, or on the query form (one key per URL), every
//! stream gets a connection of its own.

use super::conn::{ConnHandle, ConnSettings};
use crate::engine::config::StreamForm;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

fn pool() -> &'static Mutex<HashMap<u64, Vec<Arc<ConnHandle>>>> {
    static POOL: OnceLock<Mutex<HashMap<u64, Vec<Arc<ConnHandle>>>>> = OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// A connection with a place reserved for one more stream (whose key is
/// `key`): an existing one with room, or a new one, dialing. Must run
/// inside the library's runtime.
pub fn acquire(settings: &Arc<ConnSettings>, key: &str) -> Arc<ConnHandle> {
    if settings.form == StreamForm::Query {
        return fresh(settings, Some(key.to_owned()));
    }
    if !settings.sharing {
        return fresh(settings, None);
    }
    let mut pool = pool().lock().unwrap_or_else(|p| p.into_inner());
    let conns = pool.entry(settings.identity).or_default();
    conns.retain(|c| !c.is_dead());
    if let Some(c) = conns.iter().find(|c| c.reserve(settings.max_streams)) {
        return c.clone();
    }
    let c = fresh(settings, None);
    conns.push(c.clone());
    c
}

fn fresh(settings: &Arc<ConnSettings>, query_key: Option<String>) -> Arc<ConnHandle> {
    let c = ConnHandle::spawn(settings.clone(), query_key);
    let reserved = c.reserve(usize::MAX);
    debug_assert!(reserved);
    c
}
