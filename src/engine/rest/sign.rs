//! Binance's request signatures, for both key types Binance accepts on
//! USDⓈ-M Futures REST:
//!
//! - HMAC-SHA256 with the secret key over `totalParams` (the query string,
//!   then the body), sent as lowercase hex: "SIGNED (TRADE and USER_DATA)
//!   Endpoint Security" and "SIGNED Endpoint Examples for POST
//!   /fapi/v1/order - HMAC Keys" on
//!   <https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info>.
//! - Ed25519 with the private key over the same payload, sent
//!   Base64-encoded and then URL-encoded: "SIGNED Endpoint Example for POST
//!   /api/v3/order - Ed25519 Keys" on
//!   <https://developers.binance.com/docs/binance-spot-api-docs/rest-api/request-security>.
//!   The futures WebSocket API's `session.logon` uses the same scheme
//!   (<https://developers.binance.com/docs/derivatives/usds-margined-futures/websocket-api-general-info>),
//!   and Binance's own futures connectors sign REST requests with it.
//!
//! The payload always ends with `timestamp` and `recvWindow` ("Timing
//! security" on the general-info page), and `signature` is appended last.
//! The cryptography is RustCrypto's `hmac`/`sha2` and `ed25519-dalek`.

use crate::engine::error::{Error, Result};
use crate::engine::secret::Secret;
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::Signer as _;
use hmac::Mac;
use std::fmt;

/// The longest HMAC secret accepted (Binance's are 64 characters).
pub const MAX_SECRET_KEY_LEN: usize = 256;
/// The largest private key PEM accepted (an Ed25519 one is 119 bytes).
pub const MAX_PRIVATE_KEY_PEM_LEN: usize = 16 << 10;

const PKCS8_LABEL: &str = "PRIVATE KEY";

/// The key a config signs with, as set: kept as a [`Secret`] (never
/// printed, wiped when dropped) until a client needs a [`Signer`].
#[derive(Clone, PartialEq, Eq)]
pub enum SigningKey {
    /// An HMAC-SHA256 secret key.
    Hmac(Secret),
    /// An Ed25519 private key, PKCS#8 PEM.
    Ed25519Pem(Secret),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SigningKey::Hmac(_) => "SigningKey::Hmac(<redacted>)",
            SigningKey::Ed25519Pem(_) => "SigningKey::Ed25519Pem(<redacted>)",
        })
    }
}

impl SigningKey {
    /// Checks an HMAC secret key; `what` names the argument in errors, which
    /// never show the key.
    pub fn hmac(secret: &str, what: &str) -> Result<SigningKey> {
        if secret.is_empty() {
            return Err(Error::invalid(format!("{what}: must not be empty")));
        }
        if secret.len() > MAX_SECRET_KEY_LEN {
            return Err(Error::invalid(format!(
                "{what}: longer than {MAX_SECRET_KEY_LEN} bytes"
            )));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid(format!(
                "{what}: must be printable ASCII without spaces"
            )));
        }
        Ok(SigningKey::Hmac(Secret::new(secret)))
    }

    /// Checks an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE
    /// KEY-----`, what Binance's key generator and `openssl genpkey
    /// -algorithm ed25519` write). Errors name `what` and the problem, never
    /// the key material.
    pub fn ed25519_pem(pem: &str, what: &str) -> Result<SigningKey> {
        parse_ed25519(pem, what)?;
        Ok(SigningKey::Ed25519Pem(Secret::new(pem)))
    }

    /// The signer for requests (parses the PEM again: it was checked when set).
    pub fn signer(&self) -> Result<Signer> {
        Ok(match self {
            SigningKey::Hmac(s) => Signer::Hmac(s.clone()),
            SigningKey::Ed25519Pem(pem) => {
                Signer::Ed25519(Box::new(parse_ed25519(pem.expose(), "pem")?), pem.clone())
            }
        })
    }
}

fn parse_ed25519(pem: &str, what: &str) -> Result<ed25519_dalek::SigningKey> {
    if pem.len() > MAX_PRIVATE_KEY_PEM_LEN {
        return Err(Error::invalid(format!(
            "{what}: PEM larger than {MAX_PRIVATE_KEY_PEM_LEN} bytes"
        )));
    }
    let Some(label) = pem_label(pem) else {
        return Err(Error::invalid(format!(
            "{what}: no PEM block (-----BEGIN PRIVATE KEY-----) found"
        )));
    };
    if label != PKCS8_LABEL {
        // Only the label: it names a format, never key material.
        let label: String = label
            .chars()
            .filter(|c| c.is_ascii_uppercase() || *c == ' ')
            .take(40)
            .collect();
        return Err(Error::invalid(format!(
            "{what}: a \"{label}\" PEM block is not an unencrypted PKCS#8 Ed25519 private key (-----BEGIN PRIVATE KEY-----)"
        )));
    }
    ed25519_dalek::SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| {
        use ed25519_dalek::pkcs8::Error as P;
        let why = match e {
            P::PublicKey(_) | P::KeyMalformed => {
                "not an Ed25519 private key (PKCS#8 algorithm 1.3.101.112 expected)"
            }
            _ => "not a well-formed PKCS#8 private key",
        };
        Error::invalid(format!("{what}: {why}"))
    })
}

/// The label of the first PEM block, e.g. "PRIVATE KEY".
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let len = pem[start..].find("-----")?;
    Some(&pem[start..start + len])
}

/// Signs request payloads.
pub enum Signer {
    Hmac(Secret),
    /// `ed25519_dalek::SigningKey` zeroes itself when dropped; the PEM is
    /// kept only to redact it.
    Ed25519(Box<ed25519_dalek::SigningKey>, Secret),
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signer::Hmac(_) => "Signer::Hmac(<redacted>)",
            Signer::Ed25519(..) => "Signer::Ed25519(<redacted>)",
        })
    }
}

impl Signer {
    /// The `signature` parameter for `payload`, ready to append to a query
    /// string: hex for HMAC, URL-encoded Base64 for Ed25519.
    pub fn sign(&self, payload: &str) -> String {
        match self {
            Signer::Hmac(secret) => {
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.expose().as_bytes())
                        .expect("HMAC takes a key of any length");
                mac.update(payload.as_bytes());
                data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes())
            }
            Signer::Ed25519(key, _) => {
                let signature = key.sign(payload.as_bytes());
                url_encode(&data_encoding::BASE64.encode(&signature.to_bytes()))
            }
        }
    }

    /// Removes the key from a text a server sent. Neither key is ever sent
    /// (only signatures made with it), but whatever a server says, the key
    /// must not show: the HMAC secret whole, the PEM by its Base64 lines.
    pub fn redact(&self, text: &str) -> String {
        match self {
            Signer::Hmac(secret) => secret.redact(text),
            Signer::Ed25519(_, pem) => pem
                .expose()
                .lines()
                .map(str::trim)
                .filter(|l| l.len() >= 16 && !l.starts_with("-----"))
                .fold(text.to_owned(), |t, line| Secret::new(line).redact(&t)),
        }
    }
}

/// Percent-encodes the characters Base64 uses that are not URL-safe.
fn url_encode(base64: &str) -> String {
    let mut out = String::with_capacity(base64.len() + 8);
    for c in base64.chars() {
        match c {
            '+' => out.push_str("%2B"),
            '/' => out.push_str("%2F"),
            '=' => out.push_str("%3D"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Binance's worked example ("SIGNED Endpoint Examples for POST
    /// /fapi/v1/order - HMAC Keys", USDⓈ-M Futures general info).
    #[test]
    fn hmac_matches_binance_documented_example() {
        let key = SigningKey::hmac(
            "2b5eb11e18796d12d88f13dc27dbbd02c2cc51ff7059765ed9821957d82bb4d9",
            "secret",
        )
        .unwrap();
        let payload = "symbol=BTCUSDT&side=BUY&type=LIMIT&quantity=1&price=9000&timeInForce=GTC&recvWindow=5000&timestamp=1591702613943";
        assert_eq!(
            key.signer().unwrap().sign(payload),
            "3c661234138461fcc7a7d8746c6558c9842d4e10870d2ecbedf7777cad694af9"
        );
    }

    /// RFC 8032 section 7.1, TEST 2 (one-byte message 0x72), with the
    /// secret key wrapped in PKCS#8 as `openssl genpkey` writes it.
    #[test]
    fn ed25519_matches_rfc8032_test_vector() {
        let seed = data_encoding::HEXLOWER
            .decode(b"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb")
            .unwrap();
        // PKCS#8 v1: SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 },
        // OCTET STRING { OCTET STRING seed } }.
        let mut der = vec![
            0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22,
            0x04, 0x20,
        ];
        der.extend_from_slice(&seed);
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            data_encoding::BASE64.encode(&der)
        );
        let signer = SigningKey::ed25519_pem(&pem, "pem")
            .unwrap()
            .signer()
            .unwrap();
        let expected = data_encoding::HEXLOWER
            .decode(b"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00")
            .unwrap();
        let want = url_encode(&data_encoding::BASE64.encode(&expected));
        // The payload is the message, as text: 0x72 is "r".
        assert_eq!(signer.sign("r"), want);
        assert!(want.contains("%2B") || want.contains("%2F") || want.contains("%3D"));
    }

    const EC_P256_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgMOpUgqVBao5UO/fn
C01+v5jLZDsliTMZElUo1ZhHDvChRANCAARGskftjTGPqytVBtiyYsIi90F1sgNy
TwfSxD223y9mFKxS4mZfGIee+JEvh4bEGOJ0K1G4tSOvQPUhlGG/bqys
-----END PRIVATE KEY-----
";

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        for bad in ["", "has space", "tab\tkey"] {
            let e = SigningKey::hmac(bad, "secret").unwrap_err();
            assert!(e.message.starts_with("secret:"), "{}", e.message);
        }
        assert!(SigningKey::hmac(&"s".repeat(257), "secret").is_err());
        let material = "MC4CAQAwBQYDK2VwBCIEIBadBadBadBadBadBadBadBadBadBadBadBadBadBad";
        for pem in [
            String::new(),
            "hello".to_owned(),
            format!("-----BEGIN RSA PRIVATE KEY-----\n{material}\n-----END RSA PRIVATE KEY-----\n"),
            format!("-----BEGIN PRIVATE KEY-----\n{material}\n-----END PRIVATE KEY-----\n"),
            format!("-----BEGIN PRIVATE KEY-----\n{material}"),
            // An EC P-256 key in PKCS#8 (openssl genpkey): well formed,
            // wrong algorithm.
            EC_P256_PKCS8.to_owned().to_owned(),
        ] {
            let e = SigningKey::ed25519_pem(&pem, "pem").unwrap_err();
            assert!(e.message.starts_with("pem:"), "{}", e.message);
            assert!(
                !e.message.contains("MC4C") && !e.message.contains("MIGH"),
                "{}",
                e.message
            );
        }
        let e = SigningKey::ed25519_pem(EC_P256_PKCS8, "pem").unwrap_err();
        assert!(e.message.contains("not an Ed25519"), "{}", e.message);
        let e = SigningKey::ed25519_pem(&"A".repeat(20_000), "pem").unwrap_err();
        assert!(e.message.contains("16384"), "{}", e.message);
    }

    #[test]
    fn openssl_pems_are_accepted_with_any_line_ending() {
        // `openssl genpkey -algorithm ed25519`, as Binance's key generator
        // writes it; and the same with CRLF line endings.
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEzNCJso/5banbbDRuwRTg9bijGfNaumJNqM9u1PuKb7\n-----END PRIVATE KEY-----\n";
        let a = SigningKey::ed25519_pem(pem, "pem")
            .unwrap()
            .signer()
            .unwrap();
        let b = SigningKey::ed25519_pem(&pem.replace('\n', "\r\n"), "pem")
            .unwrap()
            .signer()
            .unwrap();
        assert_eq!(a.sign("x=1"), b.sign("x=1"));
    }

    #[test]
    fn redact_removes_the_pem_lines() {
        let pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIEzNCJso/5banbbDRuwRTg9bijGfNaumJNqM9u1PuKb7\n-----END PRIVATE KEY-----\n";
        let signer = SigningKey::ed25519_pem(pem, "pem")
            .unwrap()
            .signer()
            .unwrap();
        let shown = signer
            .redact("echo MC4CAQAwBQYDK2VwBCIEIEzNCJso/5banbbDRuwRTg9bijGfNaumJNqM9u1PuKb7 end");
        assert_eq!(shown, "echo <redacted> end");
    }

    #[test]
    fn debug_never_shows_a_key() {
        let k = SigningKey::hmac("SECRETSECRET", "secret").unwrap();
        assert!(!format!("{k:?}{:?}", k.signer().unwrap()).contains("SECRET"));
    }
}
