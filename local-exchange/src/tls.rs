//! The TLS side: a CA and a server certificate (EC P-256) minted at start,
//! the CA written out for clients to trust.

use std::error::Error;
use std::path::Path;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509};

type Res<T> = Result<T, Box<dyn Error>>;

fn new_key() -> Res<PKey<Private>> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

fn name(cn: &str) -> Res<X509Name> {
    let mut b = X509Name::builder()?;
    b.append_entry_by_nid(Nid::ORGANIZATIONNAME, "local-exchange")?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn)?;
    Ok(b.build())
}

fn serial() -> Res<Asn1Integer> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

fn mint_ca() -> Res<(X509, PKey<Private>)> {
    let key = new_key()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let (sn, from) = (serial()?, Asn1Time::from_unix(unix_now() - 3600)?);
    b.set_serial_number(&sn)?;
    let subject = name("local-exchange test CA")?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(&subject)?;
    b.set_pubkey(&key)?;
    // Back-dated an hour so small clock differences do not matter.
    let until = Asn1Time::days_from_now(3650)?;
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .key_cert_sign()
            .crl_sign()
            .build()?,
    )?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build(), key))
}

/// The server certificate for `localhost`, `127.0.0.1` and `::1`, signed by
/// the CA, or by its own key when `ca` is `None` (a self-signed leaf).
fn mint_server(ca: Option<(&X509, &PKey<Private>)>) -> Res<(X509, PKey<Private>)> {
    let key = new_key()?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let (sn, from) = (serial()?, Asn1Time::from_unix(unix_now() - 3600)?);
    b.set_serial_number(&sn)?;
    let subject = name("localhost")?;
    b.set_subject_name(&subject)?;
    b.set_issuer_name(ca.map_or(&subject, |(ca, _)| ca.subject_name()))?;
    b.set_pubkey(&key)?;
    let until = Asn1Time::days_from_now(365)?;
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().build()?)?;
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_encipherment()
            .build()?,
    )?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let ctx = b.x509v3_context(ca.map(|(ca, _)| &**ca), None);
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&ctx)?;
    let ski = SubjectKeyIdentifier::new().build(&ctx)?;
    let aki = match ca {
        Some(_) => Some(AuthorityKeyIdentifier::new().keyid(false).build(&ctx)?),
        None => None,
    };
    for ext in [Some(san), Some(ski), aki].into_iter().flatten() {
        b.append_extension(ext)?;
    }
    b.sign(
        ca.map_or(&key, |(_, ca_key)| ca_key),
        MessageDigest::sha256(),
    )?;
    Ok((b.build(), key))
}

fn unix_now() -> i64 {
    crate::state::now_ms() as i64 / 1000
}

/// A self-signed server certificate (written to `ca_out`, the one thing to
/// trust) and its acceptor: for TLS stacks that refuse the CA-signed one,
/// such as Wine's SChannel, which checks revocation the CA cannot answer.
pub fn self_signed_acceptor(ca_out: &Path) -> Res<tokio_native_tls::TlsAcceptor> {
    let (cert, key) = mint_server(None)?;
    std::fs::write(ca_out, cert.to_pem()?).map_err(|e| format!("{}: {e}", ca_out.display()))?;
    let identity =
        native_tls::Identity::from_pkcs8(&cert.to_pem()?, &key.private_key_to_pem_pkcs8()?)?;
    Ok(native_tls::TlsAcceptor::new(identity)?.into())
}

/// Mints the certificates (or, with `ca_key` naming an existing key and
/// `ca_out` an existing certificate, reuses that CA so that a restarted
/// exchange is trusted by clients of the previous one) and builds the acceptor.
pub fn acceptor(ca_out: &Path, ca_key: Option<&Path>) -> Res<tokio_native_tls::TlsAcceptor> {
    let reuse = ca_key.filter(|k| k.exists() && ca_out.exists());
    let (ca, key) = match reuse {
        Some(k) => (
            X509::from_pem(&std::fs::read(ca_out)?)?,
            PKey::private_key_from_pem(&std::fs::read(k)?)?,
        ),
        None => {
            let (ca, key) = mint_ca()?;
            std::fs::write(ca_out, ca.to_pem()?)
                .map_err(|e| format!("{}: {e}", ca_out.display()))?;
            if let Some(k) = ca_key {
                std::fs::write(k, key.private_key_to_pem_pkcs8()?)
                    .map_err(|e| format!("{}: {e}", k.display()))?;
            }
            (ca, key)
        }
    };
    let (cert, cert_key) = mint_server(Some((&ca, &key)))?;
    let mut chain = cert.to_pem()?;
    chain.extend_from_slice(&ca.to_pem()?);
    let identity = native_tls::Identity::from_pkcs8(&chain, &cert_key.private_key_to_pem_pkcs8()?)?;
    Ok(native_tls::TlsAcceptor::new(identity)?.into())
}
