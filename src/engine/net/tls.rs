//! TLS connectors, built once per set of extra roots and shared.
//!
//! With OpenSSL 3, building a connector parses the system's trusted roots,
//! which costs tens of milliseconds of CPU; doing that per connection or per
//! client would make every reconnect slow. Connectors are therefore cached
//! process-wide, keyed by the extra roots the config added.

use crate::engine::error::{Error, Result};
use std::sync::{Arc, Mutex};

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";
/// How many distinct root sets keep a cached connector.
const CACHE_SLOTS: usize = 16;
/// A bundle larger than this is refused (the whole Mozilla bundle is ~220 KiB).
pub const MAX_PEM_LEN: usize = 1 << 20;

/// Splits a PEM bundle into its certificates and checks each one parses.
/// Returns the certificates as separate PEM blocks.
pub fn parse_pem_bundle(pem: &str, what: &str) -> Result<Vec<String>> {
    if pem.len() > MAX_PEM_LEN {
        return Err(Error::invalid(format!(
            "{what}: PEM larger than {MAX_PEM_LEN} bytes"
        )));
    }
    let mut certs = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after.find(END).ok_or_else(|| {
            Error::invalid(format!("{what}: PEM certificate block is not terminated"))
        })? + END.len();
        let block = &after[..end];
        native_tls::Certificate::from_pem(block.as_bytes()).map_err(|e| {
            Error::invalid(format!(
                "{what}: certificate {} does not parse: {e}",
                certs.len() + 1
            ))
        })?;
        certs.push(format!("{block}\n"));
        rest = &after[end..];
    }
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "{what}: no PEM certificate (-----BEGIN CERTIFICATE-----) found"
        )));
    }
    Ok(certs)
}

type Slot = (Arc<[String]>, tokio_native_tls::TlsConnector);

static CACHE: Mutex<Vec<Slot>> = Mutex::new(Vec::new());

/// The shared connector that trusts the system roots plus `extra_roots`
/// (PEM blocks as returned by [`parse_pem_bundle`]).
pub fn connector(extra_roots: &Arc<[String]>) -> Result<tokio_native_tls::TlsConnector> {
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pos) = cache.iter().position(|(k, _)| **k == **extra_roots) {
        let slot = cache.remove(pos);
        let connector = slot.1.clone();
        cache.push(slot); // most recently used last
        return Ok(connector);
    }
    let mut builder = native_tls::TlsConnector::builder();
    builder.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
    for pem in extra_roots.iter() {
        let cert = native_tls::Certificate::from_pem(pem.as_bytes())
            .map_err(|e| Error::invalid(format!("root certificate does not parse: {e}")))?;
        builder.add_root_certificate(cert);
    }
    let connector = builder.build().map_err(|e| {
        Error::new(
            crate::engine::error::Status::TlsFailed,
            format!("building the TLS context failed: {e}"),
        )
    })?;
    let connector = tokio_native_tls::TlsConnector::from(connector);
    if cache.len() >= CACHE_SLOTS {
        cache.remove(0);
    }
    cache.push((extra_roots.clone(), connector.clone()));
    Ok(connector)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_is_not_a_certificate() {
        assert!(parse_pem_bundle("", "pem")
            .unwrap_err()
            .message
            .starts_with("pem:"));
        assert!(parse_pem_bundle("hello", "pem").is_err());
        let e = parse_pem_bundle(
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "pem",
        )
        .unwrap_err();
        assert!(e.message.contains("does not parse"), "{}", e.message);
        assert!(parse_pem_bundle("-----BEGIN CERTIFICATE-----\nAAAA", "pem").is_err());
    }

    #[test]
    fn connector_is_cached_per_root_set() {
        // A miss builds a connector (parsing the system's trust store) and
        // adds a slot; a hit reuses the slot. So repeated look-ups of one
        // root set must leave exactly one slot for it, however many calls.
        let none: Arc<[String]> = Arc::from(Vec::new());
        for _ in 0..10 {
            connector(&none).unwrap();
        }
        let cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
        let slots = cache.iter().filter(|(k, _)| **k == *none).count();
        assert_eq!(slots, 1, "one connector per root set, built once");
        assert!(cache.len() <= CACHE_SLOTS);
    }
}
