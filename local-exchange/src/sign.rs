//! Binance's request signatures, verified: HMAC-SHA256 (hex) and Ed25519
//! (base64) over the request's parameters, with `timestamp` and
//! `recvWindow` (https://developers.binance.com/docs/derivatives/usds-margined-futures/general-info
//! "SIGNED Endpoint security"; the WebSocket API signs its params sorted by
//! name). openssl does the cryptography.

use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::sign::{Signer, Verifier};

use crate::state::server_ms;

pub enum Cred {
    Hmac(Vec<u8>),
    Ed25519(PKey<Public>),
}

impl Cred {
    /// The public half of an Ed25519 private key (PEM), or a public key (PEM).
    pub fn ed25519(pem: &[u8]) -> Result<Cred, String> {
        let key = match PKey::private_key_from_pem(pem) {
            Ok(k) => PKey::public_key_from_der(&k.public_key_to_der().map_err(|e| e.to_string())?),
            Err(_) => PKey::public_key_from_pem(pem),
        }
        .map_err(|e| format!("not an Ed25519 PEM key: {e}"))?;
        if key.id() != openssl::pkey::Id::ED25519 {
            return Err("the PEM key is not an Ed25519 key".into());
        }
        Ok(Cred::Ed25519(key))
    }

    fn verify(&self, payload: &[u8], signature: &str) -> bool {
        match self {
            Cred::Hmac(secret) => {
                let Ok(key) = PKey::hmac(secret) else {
                    return false;
                };
                let Ok(mut s) = Signer::new(MessageDigest::sha256(), &key) else {
                    return false;
                };
                let Ok(mac) = s.sign_oneshot_to_vec(payload) else {
                    return false;
                };
                let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
                let given = signature.to_ascii_lowercase();
                given.len() == hex.len() && openssl::memcmp::eq(given.as_bytes(), hex.as_bytes())
            }
            Cred::Ed25519(key) => {
                let Ok(sig) = openssl::base64::decode_block(signature) else {
                    return false;
                };
                Verifier::new_without_digest(key)
                    .and_then(|mut v| v.verify_oneshot(&sig, payload))
                    .unwrap_or(false)
            }
        }
    }
}

/// A signed request's failure, as Binance answers it.
pub struct Refusal {
    pub status: u16,
    pub code: i64,
    pub msg: String,
}

fn refuse(status: u16, code: i64, msg: &str) -> Refusal {
    Refusal {
        status,
        code,
        msg: msg.to_string(),
    }
}

pub fn unknown_key() -> Refusal {
    refuse(
        401,
        -2015,
        "Invalid API-key, IP, or permissions for action.",
    )
}

fn mandatory(name: &str) -> Refusal {
    refuse(
        400,
        -1102,
        &format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."),
    )
}

/// Checks a signed request: `params` are its parameters (decoded), `payload`
/// the exact bytes that were signed, `signature` as sent (decoded).
/// Order: signature present, signature valid (-1022), then the timestamp
/// against recvWindow (default 5000, at most 60000; -1021).
pub fn check(
    cred: &Cred,
    params: &[(String, String)],
    payload: &[u8],
    signature: Option<&str>,
) -> Result<(), Refusal> {
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let ts: u64 = get("timestamp")
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| mandatory("timestamp"))?;
    let window: u64 = match get("recvWindow") {
        None => 5000,
        Some(w) => w.parse().map_err(|_| mandatory("recvWindow"))?,
    };
    if window > 60_000 {
        return Err(refuse(400, -1131, "recvWindow must be less than 60000"));
    }
    let signature = signature
        .filter(|s| !s.is_empty())
        .ok_or_else(|| mandatory("signature"))?;
    if !cred.verify(payload, signature) {
        return Err(refuse(
            400,
            -1022,
            "Signature for this request is not valid.",
        ));
    }
    let now = server_ms();
    if ts > now + 1000 {
        return Err(refuse(
            400,
            -1021,
            "Timestamp for this request was 1000ms ahead of the server's time.",
        ));
    }
    if now.saturating_sub(ts) > window {
        return Err(refuse(
            400,
            -1021,
            "Timestamp for this request is outside of the recvWindow.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_as_binance_documents() {
        // The worked example of Binance's "SIGNED Endpoint Examples".
        let secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j";
        let payload = "symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559";
        let sig = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71";
        let c = Cred::Hmac(secret.as_bytes().to_vec());
        assert!(c.verify(payload.as_bytes(), sig));
        assert!(c.verify(payload.as_bytes(), &sig.to_uppercase()));
        assert!(!c.verify(payload.as_bytes(), &sig.replace('c', "d")));
    }

    #[test]
    fn ed25519_round_trip() {
        let k = PKey::generate_ed25519().unwrap();
        let pem = k.private_key_to_pem_pkcs8().unwrap();
        let c = Cred::ed25519(&pem).unwrap();
        let mut s = Signer::new_without_digest(&k).unwrap();
        let sig =
            openssl::base64::encode_block(&s.sign_oneshot_to_vec(b"a=1&timestamp=2").unwrap());
        assert!(c.verify(b"a=1&timestamp=2", &sig));
        assert!(!c.verify(b"a=1&timestamp=3", &sig));
    }
}
