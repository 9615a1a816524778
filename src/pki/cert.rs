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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DnsName;
    use crate::pki::signer::{generate_ca, LeafRequest, Signer};
    use crate::pki::test_support::openssl;
    use rcgen::{KeyPair, PublicKeyData, PKCS_ECDSA_P256_SHA256};
    use time::Duration;

    struct Issued {
        root: Vec<u8>,
        int: Vec<u8>,
        leaf: Vec<u8>,
    }

    fn issue(names: &[&str]) -> Issued {
        let (root, int) = generate_ca("Example Desk").unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let names: Vec<DnsName> = names.iter().map(|n| DnsName::parse(n).unwrap()).collect();
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let leaf = Signer::new(&int)
            .unwrap()
            .sign_leaf(&LeafRequest {
                spki_der: &key.subject_public_key_info(),
                names: &names,
                not_before: now,
                not_after: now + Duration::days(90),
                ca_issuers_url: "http://ca.example.test/int.crt",
                crl_url: "http://desk.example.com/ca/builtin/intermediate.crl",
            })
            .unwrap();
        Issued {
            root: root.cert_der,
            int: int.cert_der,
            leaf,
        }
    }

    #[test]
    fn leaf_metadata_matches_what_openssl_reports() {
        let issued = issue(&["www.example.com", "example.com"]);
        let info = inspect_der(&issued.leaf).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("www.example.com"));
        assert_eq!(info.names, ["www.example.com", "example.com"]);
        assert_eq!(info.subject, "CN=www.example.com");
        assert_eq!(info.issuer, "O=Example Desk, CN=Example Desk Issuing CA");
        assert_eq!(info.key_type, "ECDSA P-256");
        assert!(!info.is_ca);
        assert_eq!(info.not_after - info.not_before, Duration::days(90));

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("leaf.pem");
        std::fs::write(&path, pem_encode_cert(&issued.leaf)).unwrap();
        let out = String::from_utf8(openssl(&[
            "x509",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-serial",
            "-fingerprint",
            "-sha256",
        ]))
        .unwrap();
        assert!(
            out.contains(&format!("serial={}", info.serial_hex.to_uppercase())),
            "{out} vs {info:?}"
        );
        assert!(
            out.contains(&format!("Fingerprint={}", info.sha256_fingerprint)),
            "{out} vs {info:?}"
        );
        assert_eq!(info.serial_hex, info.serial_hex.to_lowercase());
        assert_eq!(info.sha256_fingerprint.len(), 32 * 3 - 1);
    }

    #[test]
    fn ca_certificates_are_reported_as_ca() {
        let issued = issue(&["example.com"]);
        let root = inspect_der(&issued.root).unwrap();
        assert!(root.is_ca);
        assert_eq!(root.subject, root.issuer);
        assert_eq!(root.names, Vec::<String>::new());
        assert!(inspect_der(&issued.int).unwrap().is_ca);
    }

    #[test]
    fn metadata_serializes_times_as_rfc3339() {
        let info = inspect_der(&issue(&["example.com"]).leaf).unwrap();
        let json = serde_json::to_value(&info).unwrap();
        let not_after = json["not_after"].as_str().unwrap();
        assert!(
            not_after.ends_with('Z') && not_after.contains('T'),
            "{not_after}"
        );
        assert_eq!(json["key_type"], "ECDSA P-256");
        let back: CertificateInfo = serde_json::from_value(json).unwrap();
        assert_eq!(back, info);
    }

    #[test]
    fn keys_the_desk_would_refuse_are_still_described() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let key = key.to_str().unwrap();
        for (genpkey, want) in [
            (
                &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"][..],
                "RSA 1024",
            ),
            (
                &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"][..],
                "ECDSA P-521 (1.3.132.0.35)",
            ),
        ] {
            let mut args = vec!["genpkey", "-out", key];
            args.extend_from_slice(genpkey);
            openssl(&args);
            let der = openssl(&[
                "req",
                "-x509",
                "-key",
                key,
                "-subj",
                "/CN=old.example.com",
                "-days",
                "1",
                "-outform",
                "DER",
            ]);
            let info = inspect_der(&der).unwrap();
            assert_eq!(info.key_type, want);
            assert_eq!(info.common_name.as_deref(), Some("old.example.com"));
        }
    }

    #[test]
    fn pem_output_has_64_column_lines_and_openssl_reads_it() {
        let leaf = issue(&["example.com"]).leaf;
        let pem = pem_encode_cert(&leaf);
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(pem.ends_with("-----END CERTIFICATE-----\n"));
        assert!(!pem.contains('\r'));
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(body[..body.len() - 1].iter().all(|l| l.len() == 64));
        assert!(body.last().unwrap().len() <= 64);
        assert_eq!(parse_pem_certs(&pem).unwrap(), [leaf]);
    }

    #[test]
    fn a_pem_chain_yields_every_certificate_in_order_and_skips_other_blocks() {
        let issued = issue(&["example.com"]);
        let text = format!(
            "leaf:\n{}{}\n{}",
            pem_encode_cert(&issued.leaf),
            pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3])),
            pem_encode_cert(&issued.int)
        );
        assert_eq!(parse_pem_certs(&text).unwrap(), [issued.leaf, issued.int]);
    }

    #[test]
    fn unreadable_certificates_are_refused_with_clear_errors() {
        assert_eq!(
            parse_pem_certs("no pem here"),
            Err(CertError::NoCertificate)
        );
        let only_key = pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]));
        assert_eq!(parse_pem_certs(&only_key), Err(CertError::NoCertificate));
        let broken = "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n";
        assert_eq!(parse_pem_certs(broken).unwrap_err().code(), "cert_bad_pem");

        let leaf = issue(&["example.com"]).leaf;
        let second_bad = format!(
            "{}{}",
            pem_encode_cert(&leaf),
            pem_encode_cert(&[0x30, 0x03, 1, 2, 3])
        );
        let err = parse_pem_certs(&second_bad).unwrap_err();
        assert!(
            matches!(err, CertError::BadCertificateInPem { index: 2, .. }),
            "{err:?}"
        );
        assert!(err.to_string().starts_with("certificate number 2"), "{err}");

        assert_eq!(
            inspect_der(b"junk").unwrap_err().code(),
            "cert_not_a_certificate"
        );
        let mut trailing = leaf.clone();
        trailing.push(0);
        assert_eq!(
            inspect_der(&trailing),
            Err(CertError::TrailingData { extra: 1 })
        );
    }
}
