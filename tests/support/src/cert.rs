//! Certificates and keys made on the fly: a self-signed TLS certificate for
//! the scripted servers, an Ed25519 signing key as Binance's key generator
//! writes it.

/// A self-signed certificate for localhost and 127.0.0.1, and its key.
#[cfg(target_os = "linux")]
pub fn self_signed() -> (String, openssl::pkey::PKey<openssl::pkey::Private>) {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::PKey;
    use openssl::x509::extension::SubjectAlternativeName;
    use openssl::x509::{X509NameBuilder, X509};
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "localhost").unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::days_from_now(2).unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(&key, MessageDigest::sha256()).unwrap();
    let pem = String::from_utf8(b.build().to_pem().unwrap()).unwrap();
    (pem, key)
}

/// A new Ed25519 private key as `openssl genpkey -algorithm ed25519` (and
/// so Binance's key generator) writes it: PKCS#8 v1 PEM. Also its
/// verifying key.
/// Made with the pkcs8 crate (a key pair without its public half is
/// written as v1), so that it needs no OpenSSL off Linux.
pub fn ed25519_key() -> (String, ed25519_dalek::VerifyingKey) {
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
    use std::hash::{BuildHasher, Hasher};
    // A fresh seed from std alone (these helpers are shared with the CLI's
    // tests, which have no random number crate): each RandomState is
    // keyed anew.
    let mut secret_key = [0u8; 32];
    for chunk in secret_key.chunks_mut(8) {
        let n = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        chunk.copy_from_slice(&n.to_le_bytes());
    }
    let v1 = KeypairBytes {
        secret_key,
        public_key: None,
    };
    let pem = v1.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let verifying = ed25519_dalek::SigningKey::from_pkcs8_pem(&pem)
        .unwrap()
        .verifying_key();
    (pem, verifying)
}
