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

/// Bundles already parsed, most recently used last: a program opening many
/// accounts builds a config per account with the same roots, and parsing
/// a bundle costs OpenSSL tens of microseconds a certificate.
static PARSED: Mutex<Vec<(String, Arc<[String]>)>> = Mutex::new(Vec::new());
/// How many distinct bundles stay parsed (each up to `MAX_PEM_LEN`, kept
/// twice: as given and split).
const PARSED_SLOTS: usize = 4;

/// [`parse_pem_bundle`], without repeats (a certificate given twice is
/// kept once), remembered process-wide: the same bundle again is not
/// parsed again.
pub fn parse_pem_bundle_cached(pem: &str, what: &str) -> Result<Arc<[String]>> {
    let mut parsed = PARSED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(pos) = parsed.iter().position(|(k, _)| k == pem) {
        let slot = parsed.remove(pos);
        let certs = slot.1.clone();
        parsed.push(slot);
        return Ok(certs);
    }
    drop(parsed); // not held while OpenSSL parses
    let mut certs = parse_pem_bundle(pem, what)?;
    let mut seen = std::collections::HashSet::new();
    certs.retain(|c| seen.insert(c.clone()));
    let certs: Arc<[String]> = Arc::from(certs);
    let mut parsed = PARSED.lock().unwrap_or_else(|p| p.into_inner());
    if !parsed.iter().any(|(k, _)| k == pem) {
        if parsed.len() >= PARSED_SLOTS {
            parsed.remove(0);
        }
        parsed.push((pem.to_owned(), certs.clone()));
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

/// A TLS handshake error as text. On Windows (SChannel) native-tls reports
/// only the OS error's number, e.g. "OS Error -2146762482 (FormatMessageW()
/// returned error 317)" or "... (os error -2146762482)": the `CERT_E_*` or
/// `SEC_E_*` code it stands for is named in front, in hex and words. Other
/// text (OpenSSL's, Secure Transport's) is returned unchanged.
pub fn describe_error(e: &native_tls::Error) -> String {
    name_windows_code(&e.to_string())
}

fn name_windows_code(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let code = lower.find("os error ").and_then(|at| {
        let rest = &text[at + "os error ".len()..];
        let end = rest
            .char_indices()
            .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
            .map_or(rest.len(), |(i, _)| i);
        rest[..end].parse::<i64>().ok()
    });
    // An HRESULT is a u32; Rust prints it as the i32 Windows returned.
    let Some(code) = code.and_then(|c| i32::try_from(c).ok()).map(|c| c as u32) else {
        return text.to_owned();
    };
    match WINDOWS_TLS_CODES.iter().find(|(c, _, _)| *c == code) {
        Some((_, name, words)) => format!("{name} (0x{code:08X}): {words} [{text}]"),
        None => text.to_owned(),
    }
}

/// The SChannel and certificate-chain errors a TLS handshake can end with
/// (winerror.h), and what each means.
const WINDOWS_TLS_CODES: &[(u32, &str, &str)] = &[
    (
        0x8009_0302,
        "SEC_E_UNSUPPORTED_FUNCTION",
        "the function requested is not supported",
    ),
    (
        0x8009_0304,
        "SEC_E_INTERNAL_ERROR",
        "the Local Security Authority cannot be contacted",
    ),
    (
        0x8009_0308,
        "SEC_E_INVALID_TOKEN",
        "the token supplied to the function is invalid",
    ),
    (
        0x8009_030E,
        "SEC_E_NO_CREDENTIALS",
        "no credentials are available in the security package",
    ),
    (
        0x8009_030F,
        "SEC_E_MESSAGE_ALTERED",
        "the message or signature supplied for verification has been altered",
    ),
    (
        0x8009_0318,
        "SEC_E_INCOMPLETE_MESSAGE",
        "the supplied message is incomplete",
    ),
    (
        0x8009_0322,
        "SEC_E_WRONG_PRINCIPAL",
        "the target principal name is incorrect: the certificate does not name the host",
    ),
    (
        0x8009_0325,
        "SEC_E_UNTRUSTED_ROOT",
        "the certificate chain was issued by an authority that is not trusted",
    ),
    (
        0x8009_0326,
        "SEC_E_ILLEGAL_MESSAGE",
        "the message received was unexpected or badly formatted",
    ),
    (
        0x8009_0327,
        "SEC_E_CERT_UNKNOWN",
        "an unknown error occurred while processing the certificate",
    ),
    (
        0x8009_0328,
        "SEC_E_CERT_EXPIRED",
        "the received certificate has expired",
    ),
    (
        0x8009_0330,
        "SEC_E_DECRYPT_FAILURE",
        "the specified data could not be decrypted",
    ),
    (
        0x8009_0331,
        "SEC_E_ALGORITHM_MISMATCH",
        "client and server have no TLS version or cipher in common",
    ),
    (
        0x8009_0349,
        "SEC_E_CERT_WRONG_USAGE",
        "the certificate is not valid for the requested usage",
    ),
    (
        0x8009_0352,
        "SEC_E_ISSUING_CA_UNTRUSTED",
        "the issuing certificate authority is not trusted",
    ),
    (0x8009_2010, "CRYPT_E_REVOKED", "the certificate is revoked"),
    (
        0x8009_2012,
        "CRYPT_E_NO_REVOCATION_CHECK",
        "the revocation function was unable to check revocation for the certificate",
    ),
    (
        0x8009_2013,
        "CRYPT_E_REVOCATION_OFFLINE",
        "the revocation server was offline",
    ),
    (
        0x8009_6004,
        "TRUST_E_CERT_SIGNATURE",
        "the signature of the certificate cannot be verified",
    ),
    (
        0x800B_0101,
        "CERT_E_EXPIRED",
        "a certificate in the chain is not within its validity period",
    ),
    (
        0x800B_0102,
        "CERT_E_VALIDITYPERIODNESTING",
        "the validity periods of the certification chain do not nest correctly",
    ),
    (
        0x800B_0103,
        "CERT_E_ROLE",
        "a certificate that can only be an end entity is used as a CA or the other way round",
    ),
    (
        0x800B_0106,
        "CERT_E_PURPOSE",
        "a certificate is being used for a purpose it does not allow",
    ),
    (
        0x800B_0109,
        "CERT_E_UNTRUSTEDROOT",
        "the certificate chain ends in a root certificate that is not trusted",
    ),
    (
        0x800B_010A,
        "CERT_E_CHAINING",
        "no certificate chain could be built to a trusted root authority",
    ),
    (
        0x800B_010C,
        "CERT_E_REVOKED",
        "a certificate was explicitly revoked by its issuer",
    ),
    (
        0x800B_010E,
        "CERT_E_REVOCATION_FAILURE",
        "the revocation function was unable to check revocation for the certificate",
    ),
    (
        0x800B_010F,
        "CERT_E_CN_NO_MATCH",
        "the certificate's name does not match the host connected to",
    ),
    (
        0x800B_0110,
        "CERT_E_WRONG_USAGE",
        "the certificate is not valid for the requested usage",
    ),
    (
        0x800B_0112,
        "CERT_E_UNTRUSTEDCA",
        "a certificate in the chain was issued by an authority that is not trusted",
    ),
    (
        0x800B_0114,
        "CERT_E_INVALID_NAME",
        "the certificate has an invalid name",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_tls_errors_are_named_in_hex_and_words() {
        // What native-tls shows under Wine (FormatMessageW has no text).
        let wine = "OS Error -2146762482 (FormatMessageW() returned error 317)";
        assert_eq!(
            name_windows_code(wine),
            format!(
                "CERT_E_REVOCATION_FAILURE (0x800B010E): the revocation function was unable \
                 to check revocation for the certificate [{wine}]"
            )
        );
        // Real Windows's form: the system's words, then the number.
        let windows = "The certificate chain was issued by an authority that is not trusted. \
                       (os error -2146893019)";
        assert!(name_windows_code(windows).starts_with("SEC_E_UNTRUSTED_ROOT (0x80090325): "));
        // Not a Windows code, or no code: unchanged.
        for text in [
            "Connection reset by peer (os error 104)",
            "error:0A000086:SSL routines::certificate verify failed",
            "os error -",
            "os error 99999999999999999999",
            "OS Error -1 ",
        ] {
            assert_eq!(name_windows_code(text), text);
        }
        let names: std::collections::HashSet<_> =
            WINDOWS_TLS_CODES.iter().map(|(c, _, _)| c).collect();
        assert_eq!(names.len(), WINDOWS_TLS_CODES.len(), "a code listed twice");
    }

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

    #[cfg(target_os = "linux")]
    #[test]
    fn a_bundle_is_parsed_once() {
        let (cert, _) = binance_uds_test_support::cert::self_signed();
        let bundle = format!("{cert}{cert}");
        let first = parse_pem_bundle_cached(&bundle, "pem").unwrap();
        assert_eq!(first.len(), 1, "a certificate given twice is kept once");
        let again = parse_pem_bundle_cached(&bundle, "pem").unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same bundle is not parsed again"
        );
        // A bundle that does not parse is refused every time, never kept.
        let bad = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        for _ in 0..2 {
            let e = parse_pem_bundle_cached(bad, "pem").unwrap_err();
            assert!(e.message.contains("does not parse"), "{}", e.message);
        }
        let parsed = PARSED.lock().unwrap_or_else(|p| p.into_inner());
        assert!(parsed.iter().all(|(k, _)| k != bad));
        assert!(parsed.len() <= PARSED_SLOTS);
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
