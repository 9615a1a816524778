//! Public metadata of a certificate, and PEM in and out.
//!
//! The desk keeps only this metadata about an issued certificate (serial,
//! names, validity, fingerprint), never its body (DESIGN.md rule 1).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::csr::{classify_key, rsa_modulus_bits, CsrError};

const PEM_LABEL: &str = "CERTIFICATE";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateInfo {
    /// Lowercase hex without colons or leading zero bytes, as `openssl x509
    /// -serial` prints it (but lowercase).
    pub serial_hex: String,
    pub common_name: Option<String>,
    /// The dNSName entries of subjectAltName.
    pub names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// SHA-256 of the DER, uppercase hex in colon-separated pairs.
    pub sha256_fingerprint: String,
    pub issuer: String,
    pub subject: String,
    /// As [`super::csr::KeyType`] displays it (`ECDSA P-256`, `RSA 2048`),
    /// or a description of a key the desk would not issue for.
    pub key_type: String,
    pub is_ca: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("this is not an X.509 certificate ({reason})")]
    NotACertificate { reason: String },
    #[error("{extra} bytes of extra data follow the certificate; send the certificate alone")]
    TrailingData { extra: usize },
    #[error(
        "the text is not readable PEM ({reason}); paste whole -----BEGIN CERTIFICATE----- blocks"
    )]
    BadPem { reason: String },
    #[error("no -----BEGIN CERTIFICATE----- block found in the text")]
    NoCertificate,
    #[error("certificate number {index} in the text is not a valid X.509 certificate ({reason})")]
    BadCertificateInPem { index: usize, reason: String },
}

impl CertError {
    /// A stable, machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            CertError::NotACertificate { .. } => "cert_not_a_certificate",
            CertError::TrailingData { .. } => "cert_trailing_data",
            CertError::BadPem { .. } => "cert_bad_pem",
            CertError::NoCertificate => "cert_no_certificate",
            CertError::BadCertificateInPem { .. } => "cert_bad_certificate_in_pem",
        }
    }
}

fn parse_one(der: &[u8]) -> Result<X509Certificate<'_>, CertError> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CertError::NotACertificate {
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertError::TrailingData { extra: rest.len() });
    }
    Ok(cert)
}

/// Reads the public metadata of a DER certificate. Nothing is verified here:
/// the certificate may be expired, self-signed or use a key the desk would
/// refuse.
pub fn inspect_der(der: &[u8]) -> Result<CertificateInfo, CertError> {
    let cert = parse_one(der)?;
    let serial = cert.raw_serial();
    let start = serial
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(serial.len().saturating_sub(1));
    let serial_hex = hex::encode(&serial[start..]);

    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned);
    let names = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) => Some((*s).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);

    Ok(CertificateInfo {
        serial_hex,
        common_name,
        names,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        sha256_fingerprint: fingerprint(der),
        issuer: cert.issuer().to_string(),
        subject: cert.subject().to_string(),
        key_type: describe_key(cert.public_key()),
        is_ca,
    })
}

/// SHA-256 of `der` as `AA:BB:…`, the form browsers and openssl show.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::with_capacity(digest.len() * 3);
    for (i, byte) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{byte:02X}"));
    }
    out
}

fn describe_key(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> String {
    match classify_key(spki) {
        Ok(key_type) => key_type.to_string(),
        Err(CsrError::RsaTooSmall { bits })
        | Err(CsrError::RsaTooLarge { bits })
        | Err(CsrError::RsaBitsNotMultipleOf8 { bits }) => format!("RSA {bits}"),
        // The exponent is a desk rule, not part of the key's kind; report the size.
        Err(CsrError::RsaBadExponent { .. }) => match rsa_modulus_bits(spki) {
            Some(bits) => format!("RSA {bits}"),
            None => "RSA".into(),
        },
        Err(CsrError::UnsupportedCurve { curve }) => format!("ECDSA {curve}"),
        Err(CsrError::UnsupportedKeyAlgorithm { oid }) => oid,
        Err(_) => format!("unknown ({})", spki.algorithm.algorithm.to_id_string()),
    }
}

/// One certificate as PEM, LF line endings, 64-column base64.
pub fn pem_encode_cert(der: &[u8]) -> String {
    let block = pem::Pem::new(PEM_LABEL, der);
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The DER of every CERTIFICATE block in `pem`, in order. Other blocks (a
/// private key pasted along, for instance) are skipped: this function only
/// answers "which certificates are in here". Each certificate must parse.
pub fn parse_pem_certs(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let blocks = pem::parse_many(pem).map_err(|e| CertError::BadPem {
        reason: e.to_string(),
    })?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == PEM_LABEL)
        .map(pem::Pem::into_contents)
        .collect();
    if ders.is_empty() {
        return Err(CertError::NoCertificate);
    }
    for (i, der) in ders.iter().enumerate() {
        parse_one(der).map_err(|e| CertError::BadCertificateInPem {
            index: i + 1,
            reason: e.to_string(),
        })?;
    }
    Ok(ders)
}
