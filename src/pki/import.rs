//! Validation of a certificate a user imports into the desk's certificate
//! store: the certificate, its private key and its intermediates (PEM or
//! DER), or a PKCS#12 file with its password. Bytes in, a validated bundle or
//! an error naming the field and the fix out; no I/O.
//!
//! Decisions are made with x509-parser and ring: the key matches the
//! certificate (public keys compared), each link of the chain is checked by
//! its signature, dates are read from the certificate. rustls-webpki is too
//! strict to decide an import (it refuses v1 certificates, SHA-1 and unknown
//! critical extensions, see DESIGN.md), so its verdict "would browsers accept
//! it" is only a warning stored with the certificate.
//!
//! Encrypted keys and PKCS#12 files cost a password-based key derivation each;
//! their iteration counts are capped, but a call can still take a good part of
//! a second: run it on a blocking thread, not on the async runtime.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING,
    ECDSA_P384_SHA384_ASN1_SIGNING,
};
use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};
use serde::Serialize;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::error::X509Error;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::revocation_list::CertificateRevocationList;
use x509_parser::signature_algorithm::SignatureAlgorithm;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::cert::{inspect_der, pem_encode_cert, CertificateInfo};
use super::csr::{classify_key, rsa_modulus_bits, CsrError, KeyType};
use super::der;

/// The largest input accepted in any one field, PKCS#12 files included.
pub const MAX_INPUT: usize = 64 * 1024;

/// Password-based key derivations cost this many iterations at most. A file
/// asking for more is refused rather than left to hold a request thread for
/// minutes (openssl 3 writes 2,048; Java and this desk 10,000 to 100,000).
const MAX_KDF_ITERATIONS: u32 = 1_000_000;
/// scrypt memory (128 · N · r bytes) and parallelism accepted at most.
const MAX_SCRYPT_MEMORY: u64 = 256 << 20;
const MAX_SCRYPT_PARALLELISM: u16 = 16;
/// PBKDF2 iterations of the PKCS#12 files this desk writes, for the
/// encryption and for the MAC.
const EXPORT_ITERATIONS: u32 = 100_000;

/// The input fields, as the API and the console name them.
pub mod field {
    pub const CERTIFICATE: &str = "certificate";
    pub const FULLCHAIN: &str = "fullchain";
    pub const PRIVATE_KEY: &str = "private_key";
    pub const KEY_PASSWORD: &str = "key_password";
    pub const CHAIN: &str = "chain";
    pub const PKCS12: &str = "pkcs12";
    pub const PKCS12_PASSWORD: &str = "pkcs12_password";
}

/// The field as a person reads it in a message.
fn label(field: &str) -> &'static str {
    match field {
        field::CERTIFICATE => "certificate",
        field::FULLCHAIN => "full chain",
        field::PRIVATE_KEY => "private key",
        field::KEY_PASSWORD => "key password",
        field::CHAIN => "chain",
        field::PKCS12 => "PKCS#12 file",
        field::PKCS12_PASSWORD => "PKCS#12 password",
        _ => "input",
    }
}

/// What a user hands over. Empty or blank fields count as absent.
#[derive(Clone, Copy, Default)]
pub struct ImportInput<'a> {
    /// Exactly one certificate (PEM or DER).
    pub certificate: Option<&'a [u8]>,
    /// Instead of `certificate`: the certificate followed by its intermediates.
    pub fullchain: Option<&'a [u8]>,
    /// PEM: PKCS#8, encrypted PKCS#8, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC
    /// PRIVATE KEY`; or DER PKCS#8 (PKCS#1 and SEC1 DER are read too).
    pub private_key: Option<&'a [u8]>,
    pub key_password: Option<&'a str>,
    /// Intermediates, PEM (one or more) or DER, in any order.
    pub chain: Option<&'a [u8]>,
    /// Instead of all of the above: a PKCS#12 (.p12, .pfx) file.
    pub pkcs12: Option<&'a [u8]>,
    pub pkcs12_password: Option<&'a str>,
    /// Store an expired certificate (with `expired: true` and a warning)
    /// rather than refuse it.
    pub allow_expired: bool,
}

impl fmt::Debug for ImportInput<'_> {
    // Sizes only: never print a key or a password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |b: Option<&[u8]>| b.map(<[u8]>::len);
        f.debug_struct("ImportInput")
            .field("certificate", &len(self.certificate))
            .field("fullchain", &len(self.fullchain))
            .field("private_key", &len(self.private_key))
            .field("key_password", &self.key_password.map(|_| "[elided]"))
            .field("chain", &len(self.chain))
            .field("pkcs12", &len(self.pkcs12))
            .field("pkcs12_password", &self.pkcs12_password.map(|_| "[elided]"))
            .field("allow_expired", &self.allow_expired)
            .finish()
    }
}

/// A certificate, its chain and its key that belong together.
#[derive(Clone, PartialEq, Eq)]
pub struct ValidatedBundle {
    pub certificate_der: Vec<u8>,
    /// In issuing order: the issuer of the certificate first, then its
    /// issuer, and so on; reordered if given out of order.
    pub chain_der: Vec<Vec<u8>>,
    /// Unencrypted PKCS#8, re-encoded in the form ring and openssl write.
    pub key_pkcs8_der: Vec<u8>,
    pub info: CertificateInfo,
    pub warnings: Vec<ImportWarning>,
    pub expired: bool,
}

impl fmt::Debug for ValidatedBundle {
    // Never print the private key, even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ValidatedBundle")
            .field("info", &self.info)
            .field("chain_len", &self.chain_der.len())
            .field("key_pkcs8_der", &"[elided]")
            .field("warnings", &self.warnings)
            .field("expired", &self.expired)
            .finish()
    }
}

/// Something the user should know about an imported certificate, stored and
/// shown with it; never a reason to refuse it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportWarning {
    /// Stable, e.g. `missing_intermediates`.
    pub code: &'static str,
    pub message: String,
}

/// The codes of [`ImportWarning`].
pub mod warning {
    pub const EXPIRED: &str = "expired";
    pub const NOT_YET_VALID: &str = "not_yet_valid";
    pub const MISSING_INTERMEDIATES: &str = "missing_intermediates";
    pub const SHA1_SIGNATURE: &str = "sha1_signature";
    pub const V1_CERTIFICATE: &str = "v1_certificate";
    pub const UNKNOWN_CRITICAL_EXTENSION: &str = "unknown_critical_extension";
    pub const BROWSERS_WOULD_REJECT: &str = "browsers_would_reject";
    pub const CHAIN_REORDERED: &str = "chain_reordered";
    pub const CHAIN_DUPLICATES_REMOVED: &str = "chain_duplicates_removed";
    pub const CHAIN_CERTIFICATE_EXPIRED: &str = "chain_certificate_expired";
    pub const SIGNATURE_NOT_CHECKED: &str = "signature_not_checked";
}

/// Why an import was refused. Each message tells the user what to change;
/// [`ImportError::field`] names the input it concerns and
/// [`ImportError::code`] gives a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImportError {
    #[error(
        "the {} is {size} bytes; at most 64 KiB ({MAX_INPUT} bytes) are accepted",
        label(field)
    )]
    TooLarge { field: &'static str, size: usize },
    #[error("the {} field holds {found}, not {expected}{hint}", label(field))]
    WrongKind {
        field: &'static str,
        expected: &'static str,
        found: String,
        /// Starts with "; " when there is one.
        hint: String,
    },
    #[error(
        "the {} is not readable PEM ({reason}); paste whole blocks, from the -----BEGIN line \
         to the -----END line",
        label(field)
    )]
    BadPem { field: &'static str, reason: String },
    #[error("{which} is not a valid X.509 certificate ({reason})")]
    BadCertificate {
        field: &'static str,
        /// "the certificate", "chain certificate 2", …
        which: String,
        reason: String,
    },
    #[error(
        "the certificate field holds {count} certificates; put only your server's certificate \
         here, and put the intermediates in the chain field"
    )]
    MultipleCertificates { count: usize },
    #[error(
        "the {} holds {count} private keys; give only the certificate's own key",
        label(field)
    )]
    MultiplePrivateKeys { field: &'static str, count: usize },
    #[error("{}", conflict_message(field, other))]
    ConflictingFields {
        field: &'static str,
        other: &'static str,
    },
    #[error(
        "no certificate given: paste or upload the certificate (PEM or DER), or upload a \
         PKCS#12 file"
    )]
    MissingCertificate,
    #[error(
        "no private key given: the desk stores a certificate together with its private key; \
         paste or upload the key made with the certificate's CSR, or upload a PKCS#12 file"
    )]
    MissingPrivateKey,
    #[error("the private key is encrypted; give its password")]
    KeyPasswordRequired,
    #[error("the password does not decrypt the private key; check the key password")]
    KeyWrongPassword,
    #[error(
        "the private key is encrypted with {algorithm}, which the desk cannot decrypt; \
         convert it with: openssl pkcs8 -topk8 -v2 aes-256-cbc -in key.pem -out key-pkcs8.pem"
    )]
    KeyEncryptionUnsupported { algorithm: String },
    #[error(
        "the private key uses OpenSSL's old PEM encryption (Proc-Type: 4,ENCRYPTED), which the \
         desk does not read; convert it to encrypted PKCS#8 with: \
         openssl pkcs8 -topk8 -v2 aes-256-cbc -in old.key -out new.key"
    )]
    LegacyEncryptedKey,
    #[error("the private key cannot be used: {reason}")]
    BadPrivateKey { field: &'static str, reason: String },
    #[error(
        "the private key does not belong to this certificate (the key is {key}; the \
         certificate's public key is {certificate}); give the key that was generated with the \
         certificate's CSR"
    )]
    KeyMismatch {
        field: &'static str,
        key: String,
        certificate: String,
    },
    #[error("the certificate's RSA key is {bits} bits; at least 2048 bits are required")]
    KeyTooSmall { field: &'static str, bits: u32 },
    #[error(
        "the certificate's key is {key}, which the desk does not accept; use RSA (2048 bits or \
         more), ECDSA P-256 or P-384, or Ed25519"
    )]
    UnsupportedKey { field: &'static str, key: String },
    #[error("{certificate} did not issue {issued}: {reason}")]
    ChainBroken {
        field: &'static str,
        /// 1-based position, as given, of the certificate that did not issue.
        position: usize,
        /// "chain certificate 2", "certificate 3 of the full chain", …
        certificate: String,
        /// "chain certificate 1", "the certificate", …
        issued: String,
        reason: String,
    },
    #[error(
        "the certificate expired on {}; renew it, or import it with \"allow expired\" to keep \
         it anyway",
        date(not_after)
    )]
    Expired {
        field: &'static str,
        not_after: OffsetDateTime,
    },
    #[error("the PKCS#12 file is protected by a password; give it")]
    Pkcs12PasswordRequired,
    #[error("the password does not open the PKCS#12 file; check the PKCS#12 password")]
    Pkcs12WrongPassword,
    #[error("the PKCS#12 file is damaged or is not a PKCS#12 file ({reason}); export it again")]
    Pkcs12Damaged { reason: String },
    #[error(
        "the PKCS#12 file uses {reason}, which the desk does not read; export it again with \
         AES-256 (the default of openssl 3: openssl pkcs12 -export)"
    )]
    Pkcs12Unsupported { reason: String },
    #[error("the PKCS#12 file holds no private key; export it again with the private key")]
    Pkcs12NoPrivateKey,
    #[error("the PKCS#12 file holds no certificate; export it again with the certificate")]
    Pkcs12NoCertificate,
    #[error("the PKCS#12 file could not be written: {reason}")]
    Export { reason: String },
}

fn conflict_message(field: &str, other: &str) -> String {
    if field == field::PKCS12 {
        format!(
            "a PKCS#12 file already holds the certificate, its chain and its key: leave the {} \
             field empty, or import the PEM files without the PKCS#12 file",
            label(other)
        )
    } else {
        format!(
            "fill in the {} field or the {} field, not both",
            label(field),
            label(other)
        )
    }
}

impl ImportError {
    /// The input field the error concerns: `certificate`, `fullchain`,
    /// `private_key`, `key_password`, `chain`, `pkcs12` or `pkcs12_password`.
    pub fn field(&self) -> &'static str {
        use ImportError::*;
        match self {
            TooLarge { field, .. }
            | WrongKind { field, .. }
            | BadPem { field, .. }
            | BadCertificate { field, .. }
            | MultiplePrivateKeys { field, .. }
            | ConflictingFields { field, .. }
            | BadPrivateKey { field, .. }
            | KeyMismatch { field, .. }
            | KeyTooSmall { field, .. }
            | UnsupportedKey { field, .. }
            | ChainBroken { field, .. }
            | Expired { field, .. } => field,
            MultipleCertificates { .. } | MissingCertificate => field::CERTIFICATE,
            MissingPrivateKey | KeyEncryptionUnsupported { .. } | LegacyEncryptedKey => {
                field::PRIVATE_KEY
            }
            KeyPasswordRequired | KeyWrongPassword => field::KEY_PASSWORD,
            Pkcs12PasswordRequired | Pkcs12WrongPassword => field::PKCS12_PASSWORD,
            Pkcs12Damaged { .. }
            | Pkcs12Unsupported { .. }
            | Pkcs12NoPrivateKey
            | Pkcs12NoCertificate
            | Export { .. } => field::PKCS12,
        }
    }

    /// A stable, machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        use ImportError::*;
        match self {
            TooLarge { .. } => "import_too_large",
            WrongKind { .. } => "import_wrong_kind",
            BadPem { .. } => "import_bad_pem",
            BadCertificate { .. } => "import_bad_certificate",
            MultipleCertificates { .. } => "import_multiple_certificates",
            MultiplePrivateKeys { .. } => "import_multiple_private_keys",
            ConflictingFields { .. } => "import_conflicting_fields",
            MissingCertificate => "import_missing_certificate",
            MissingPrivateKey => "import_missing_private_key",
            KeyPasswordRequired => "import_key_password_required",
            KeyWrongPassword => "import_key_wrong_password",
            KeyEncryptionUnsupported { .. } => "import_key_encryption_unsupported",
            LegacyEncryptedKey => "import_key_legacy_encryption",
            BadPrivateKey { .. } => "import_bad_private_key",
            KeyMismatch { .. } => "import_key_mismatch",
            KeyTooSmall { .. } => "import_key_too_small",
            UnsupportedKey { .. } => "import_unsupported_key",
            ChainBroken { .. } => "import_chain_broken",
            Expired { .. } => "import_certificate_expired",
            Pkcs12PasswordRequired => "import_pkcs12_password_required",
            Pkcs12WrongPassword => "import_pkcs12_wrong_password",
            Pkcs12Damaged { .. } => "import_pkcs12_damaged",
            Pkcs12Unsupported { .. } => "import_pkcs12_unsupported",
            Pkcs12NoPrivateKey => "import_pkcs12_no_private_key",
            Pkcs12NoCertificate => "import_pkcs12_no_certificate",
            Export { .. } => "pkcs12_export_failed",
        }
    }
}

/// `2025-01-31 23:59:59 UTC`.
fn date(t: &OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] UTC"
    ))
    .unwrap_or_else(|_| t.to_string())
}

// ---------------------------------------------------------------------------
// The entry point

/// Checks that a certificate, its key and its chain belong together and can
/// be stored; see the module documentation.
pub fn validate_import(
    input: &ImportInput<'_>,
    now: OffsetDateTime,
) -> Result<ValidatedBundle, ImportError> {
    validate_with_roots(input, now, webpki_roots::TLS_SERVER_ROOTS)
}

/// [`validate_import`] with the roots browsers are taken to trust given.
fn validate_with_roots(
    input: &ImportInput<'_>,
    now: OffsetDateTime,
    roots: &[TrustAnchor<'_>],
) -> Result<ValidatedBundle, ImportError> {
    for (name, value) in [
        (field::CERTIFICATE, input.certificate),
        (field::FULLCHAIN, input.fullchain),
        (field::PRIVATE_KEY, input.private_key),
        (field::CHAIN, input.chain),
        (field::PKCS12, input.pkcs12),
    ] {
        if let Some(bytes) = value.filter(|b| b.len() > MAX_INPUT) {
            return Err(ImportError::TooLarge {
                field: name,
                size: bytes.len(),
            });
        }
    }
    let material = match present(input.pkcs12) {
        Some(p12) => {
            for (name, value) in [
                (field::CERTIFICATE, input.certificate),
                (field::FULLCHAIN, input.fullchain),
                (field::PRIVATE_KEY, input.private_key),
                (field::CHAIN, input.chain),
            ] {
                if present(value).is_some() {
                    return Err(ImportError::ConflictingFields {
                        field: field::PKCS12,
                        other: name,
                    });
                }
            }
            from_pkcs12(p12, input.pkcs12_password)?
        }
        None => from_fields(input)?,
    };
    validate_material(material, input.allow_expired, now, roots)
}

/// `Some` when the field holds more than white space.
fn present(value: Option<&[u8]>) -> Option<&[u8]> {
    value.filter(|b| !b.iter().all(u8::is_ascii_whitespace))
}

/// What the fields or the PKCS#12 file hold, before any check that needs
/// them together.
struct Material {
    leaf: Vec<u8>,
    /// Where the certificate came from, for errors about it.
    leaf_field: &'static str,
    chain: Vec<Vec<u8>>,
    chain_field: &'static str,
    key: Key,
    key_field: &'static str,
}

enum Key {
    /// As read from the private key field; turned into PKCS#8 once the
    /// certificate says which curve a bare SEC1 key is on.
    Raw(RawKey),
    /// Already matched to its certificate (PKCS#12).
    Ready(ReadyKey),
}

fn from_fields(input: &ImportInput<'_>) -> Result<Material, ImportError> {
    let certificate = present(input.certificate);
    let fullchain = present(input.fullchain);
    let chain = present(input.chain);
    let (leaf, leaf_field, chain_der, chain_field) = match (certificate, fullchain) {
        (Some(_), Some(_)) => {
            return Err(ImportError::ConflictingFields {
                field: field::CERTIFICATE,
                other: field::FULLCHAIN,
            })
        }
        (None, None) => return Err(ImportError::MissingCertificate),
        (Some(bytes), None) => {
            let mut certs = read_certificates(field::CERTIFICATE, bytes)?;
            if certs.len() > 1 {
                return Err(ImportError::MultipleCertificates { count: certs.len() });
            }
            let leaf = certs.remove(0);
            let chain_der = match chain {
                Some(bytes) => read_certificates(field::CHAIN, bytes)?,
                None => Vec::new(),
            };
            (leaf, field::CERTIFICATE, chain_der, field::CHAIN)
        }
        (None, Some(bytes)) => {
            if chain.is_some() {
                return Err(ImportError::ConflictingFields {
                    field: field::FULLCHAIN,
                    other: field::CHAIN,
                });
            }
            let mut certs = read_certificates(field::FULLCHAIN, bytes)?;
            let leaf = certs.remove(0);
            (leaf, field::FULLCHAIN, certs, field::FULLCHAIN)
        }
    };
    let key = match present(input.private_key) {
        Some(bytes) => read_private_key(bytes, input.key_password)?,
        None => return Err(ImportError::MissingPrivateKey),
    };
    Ok(Material {
        leaf,
        leaf_field,
        chain: chain_der,
        chain_field,
        key: Key::Raw(key),
        key_field: field::PRIVATE_KEY,
    })
}

fn validate_material(
    material: Material,
    allow_expired: bool,
    now: OffsetDateTime,
    roots: &[TrustAnchor<'_>],
) -> Result<ValidatedBundle, ImportError> {
    let Material {
        leaf: leaf_der,
        leaf_field,
        chain: given_chain,
        chain_field,
        key,
        key_field,
    } = material;
    let leaf = parse_certificate(&leaf_der).map_err(|reason| ImportError::BadCertificate {
        field: leaf_field,
        which: "the certificate".into(),
        reason,
    })?;
    let cert_key = certificate_key(leaf.public_key(), leaf_field)?;

    let key = match key {
        Key::Ready(ready) => ready,
        Key::Raw(raw) => prepare_key(&raw, cert_key.curve(), key_field)?,
    };
    if key.public != cert_key {
        return Err(ImportError::KeyMismatch {
            field: key_field,
            key: key.public.describe(),
            certificate: cert_key.describe(),
        });
    }
    key.check_integrity(key_field)?;

    let mut warnings = Vec::new();
    let not_after = leaf.validity().not_after.to_datetime();
    let not_before = leaf.validity().not_before.to_datetime();
    let expired = now > not_after;
    if expired {
        if !allow_expired {
            return Err(ImportError::Expired {
                field: leaf_field,
                not_after,
            });
        }
        warnings.push(ImportWarning {
            code: warning::EXPIRED,
            message: format!(
                "the certificate expired on {}; it is stored, but no client will accept it",
                date(&not_after)
            ),
        });
    } else if now < not_before {
        warnings.push(ImportWarning {
            code: warning::NOT_YET_VALID,
            message: format!(
                "the certificate is not valid before {}; clients will refuse it until then",
                date(&not_before)
            ),
        });
    }

    // Chain: drop repeats (and the certificate itself), then put in issuing order.
    let mut chain_in: Vec<(usize, Vec<u8>)> = Vec::new();
    let mut dropped = 0;
    for (i, der) in given_chain.into_iter().enumerate() {
        if der == leaf_der || chain_in.iter().any(|(_, d)| *d == der) {
            dropped += 1;
        } else {
            chain_in.push((i + 1, der));
        }
    }
    if dropped > 0 {
        warnings.push(ImportWarning {
            code: warning::CHAIN_DUPLICATES_REMOVED,
            message: format!(
                "{dropped} certificate{} given twice, or the certificate itself, {} left out of \
                 the chain",
                if dropped == 1 { "" } else { "s" },
                if dropped == 1 { "was" } else { "were" }
            ),
        });
    }
    let chain_parsed: Vec<(usize, X509Certificate<'_>)> = chain_in
        .iter()
        .map(|(pos, der)| {
            parse_certificate(der).map(|c| (*pos, c)).map_err(|reason| {
                ImportError::BadCertificate {
                    field: chain_field,
                    which: position_label(chain_field, *pos),
                    reason,
                }
            })
        })
        .collect::<Result<_, _>>()?;
    let ordered = order_chain(&leaf, &chain_parsed, chain_field, &mut warnings)?;
    // A PKCS#12 file's bags have no order to speak of.
    if chain_field != field::PKCS12 && ordered.iter().enumerate().any(|(i, &k)| k != i) {
        warnings.push(ImportWarning {
            code: warning::CHAIN_REORDERED,
            message: "the chain was given out of order and has been put in issuing order".into(),
        });
    }
    let chain: Vec<&X509Certificate<'_>> = ordered.iter().map(|&k| &chain_parsed[k].1).collect();

    certificate_warnings(&leaf, &chain, now, &mut warnings);
    let top = chain.last().copied().unwrap_or(&leaf);
    if !is_self_signed(top) && !issued_by_known_root(top, roots) {
        warnings.push(ImportWarning {
            code: warning::MISSING_INTERMEDIATES,
            message: format!(
                "the chain ends at a certificate issued by \"{}\", which is neither given nor a \
                 root certificate browsers know; add the missing intermediate certificates to \
                 the chain",
                top.issuer()
            ),
        });
    }
    let chain_der: Vec<Vec<u8>> = ordered.iter().map(|&k| chain_in[k].1.clone()).collect();
    if let Err(reason) = webpki_verdict(&leaf_der, &chain_der, now, roots) {
        warnings.push(ImportWarning {
            code: warning::BROWSERS_WOULD_REJECT,
            message: format!("browsers would not accept this certificate: {reason}"),
        });
    }

    let info = inspect_der(&leaf_der).map_err(|e| ImportError::BadCertificate {
        field: leaf_field,
        which: "the certificate".into(),
        reason: e.to_string(),
    })?;
    Ok(ValidatedBundle {
        certificate_der: leaf_der,
        chain_der,
        key_pkcs8_der: key.pkcs8,
        info,
        warnings,
        expired,
    })
}

// ---------------------------------------------------------------------------
// Reading certificates

const CERT_LABELS: [&str; 2] = ["CERTIFICATE", "X509 CERTIFICATE"];

/// One X.509 certificate, nothing after it.
fn parse_certificate(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    let (rest, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} bytes of extra data follow it", rest.len()));
    }
    Ok(cert)
}

/// "the certificate", "chain certificate 2", "certificate 3 of the full
/// chain" for the certificate at 1-based `position` among the intermediates
/// of `field`.
fn position_label(field: &str, position: usize) -> String {
    match field {
        field::FULLCHAIN => format!("certificate {} of the full chain", position + 1),
        field::PKCS12 => format!("chain certificate {position} in the PKCS#12 file"),
        _ => format!("chain certificate {position}"),
    }
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(10).any(|w| w == b"-----BEGIN")
}

/// Every certificate in a field, in the order given: PEM blocks, or DER
/// (one certificate, or several one after the other).
fn read_certificates(field: &'static str, bytes: &[u8]) -> Result<Vec<Vec<u8>>, ImportError> {
    let which = |i: usize| -> String {
        match field {
            field::CHAIN => format!("chain certificate {}", i + 1),
            field::FULLCHAIN => format!("certificate {} of the full chain", i + 1),
            _ if i == 0 => "the certificate".into(),
            _ => format!("certificate {} in the certificate field", i + 1),
        }
    };
    let mut ders = Vec::new();
    if !looks_like_pem(bytes) {
        if bytes.first() != Some(&0x30) {
            return Err(wrong_kind(field, "a certificate", Found::of_text(bytes)));
        }
        let mut rest = bytes;
        while !rest.is_empty() {
            match X509Certificate::from_der(rest) {
                Ok((after, _)) => {
                    ders.push(rest[..rest.len() - after.len()].to_vec());
                    rest = after;
                }
                Err(e) if ders.is_empty() => {
                    return match Found::of_der(bytes) {
                        Found::UnknownDer => Err(ImportError::BadCertificate {
                            field,
                            which: which(0),
                            reason: e.to_string(),
                        }),
                        found => Err(wrong_kind(field, "a certificate", found)),
                    };
                }
                Err(e) => {
                    return Err(ImportError::BadCertificate {
                        field,
                        which: which(ders.len()),
                        reason: e.to_string(),
                    })
                }
            }
        }
        return Ok(ders);
    }
    for block in pem_blocks(field, bytes, "a certificate")? {
        if CERT_LABELS.contains(&block.tag()) {
            ders.push(block.into_contents());
        } else if block.tag() != "EC PARAMETERS" {
            return Err(wrong_kind(field, "a certificate", Found::of_pem(&block)));
        }
    }
    if ders.is_empty() {
        return Err(wrong_kind(field, "a certificate", Found::Nothing));
    }
    for (i, der) in ders.iter().enumerate() {
        parse_certificate(der).map_err(|reason| ImportError::BadCertificate {
            field,
            which: which(i),
            reason,
        })?;
    }
    Ok(ders)
}

fn pem_blocks(
    field: &'static str,
    bytes: &[u8],
    expected: &'static str,
) -> Result<Vec<pem::Pem>, ImportError> {
    let blocks = pem::parse_many(bytes).map_err(|e| ImportError::BadPem {
        field,
        reason: e.to_string(),
    })?;
    // The pem crate skips a block whose -----END line is missing: a paste
    // cut short would otherwise be reported as "no certificate here".
    let begun = String::from_utf8_lossy(bytes)
        .matches("-----BEGIN ")
        .count();
    if begun > blocks.len() {
        return Err(ImportError::BadPem {
            field,
            reason: format!(
                "block {} has a -----BEGIN line but no -----END line; the text may have \
                 been cut short",
                blocks.len() + 1
            ),
        });
    }
    if blocks.is_empty() {
        return Err(wrong_kind(field, expected, Found::of_text(bytes)));
    }
    Ok(blocks)
}

/// What was found where something else was expected, for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Certificate,
    Csr,
    PrivateKey(&'static str),
    OpenSshKey,
    DsaKey,
    PublicKey,
    Pkcs7,
    Pkcs12,
    Crl,
    TrustedCertificate,
    OtherPem(String),
    UnknownDer,
    Base64WithoutArmor,
    Text,
    Nothing,
}

impl Found {
    fn of_pem(block: &pem::Pem) -> Found {
        match block.tag() {
            "CERTIFICATE" | "X509 CERTIFICATE" => Found::Certificate,
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Found::Csr,
            "PRIVATE KEY" => Found::PrivateKey("PKCS#8"),
            "ENCRYPTED PRIVATE KEY" => Found::PrivateKey("encrypted PKCS#8"),
            "RSA PRIVATE KEY" => Found::PrivateKey("RSA"),
            "EC PRIVATE KEY" => Found::PrivateKey("EC"),
            "OPENSSH PRIVATE KEY" => Found::OpenSshKey,
            "DSA PRIVATE KEY" => Found::DsaKey,
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Found::PublicKey,
            "PKCS7" | "CMS" => Found::Pkcs7,
            "X509 CRL" => Found::Crl,
            "TRUSTED CERTIFICATE" => Found::TrustedCertificate,
            other => Found::OtherPem(other.to_string()),
        }
    }

    /// Names DER data by trying what it could be.
    fn of_der(der: &[u8]) -> Found {
        if matches!(X509Certificate::from_der(der), Ok((rest, _)) if rest.is_empty()) {
            return Found::Certificate;
        }
        if matches!(X509CertificationRequest::from_der(der), Ok((rest, _)) if rest.is_empty()) {
            return Found::Csr;
        }
        if pkcs8::PrivateKeyInfoRef::try_from(der).is_ok() {
            return Found::PrivateKey("PKCS#8");
        }
        if encrypted_pkcs8_scheme(der).is_some() {
            return Found::PrivateKey("encrypted PKCS#8");
        }
        if pkcs1::RsaPrivateKeyRef::try_from(der).is_ok() {
            return Found::PrivateKey("RSA");
        }
        if sec1::EcPrivateKey::try_from(der).is_ok() {
            return Found::PrivateKey("EC");
        }
        if matches!(SubjectPublicKeyInfo::from_der(der), Ok((rest, _)) if rest.is_empty()) {
            return Found::PublicKey;
        }
        if matches!(CertificateRevocationList::from_der(der), Ok((rest, _)) if rest.is_empty()) {
            return Found::Crl;
        }
        // PFX: SEQUENCE { INTEGER 3, ContentInfo { id-data, … } }.
        // PKCS#7: SEQUENCE { id-signedData, … }.
        let head = &der[..der.len().min(40)];
        let contains = |needle: &[u8]| head.windows(needle.len()).any(|w| w == needle);
        const ID_DATA: [u8; 11] = [6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 7, 1];
        const ID_SIGNED_DATA: [u8; 11] = [6, 9, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 1, 7, 2];
        if contains(&[2, 1, 3]) && contains(&ID_DATA) {
            return Found::Pkcs12;
        }
        if contains(&ID_SIGNED_DATA) {
            return Found::Pkcs7;
        }
        Found::UnknownDer
    }

    fn of_text(bytes: &[u8]) -> Found {
        let text: Vec<u8> = bytes
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if text.is_empty() {
            return Found::Nothing;
        }
        use base64::Engine;
        match base64::engine::general_purpose::STANDARD.decode(&text) {
            Ok(der) if der.first() == Some(&0x30) => Found::Base64WithoutArmor,
            _ => Found::Text,
        }
    }

    fn describe(&self) -> String {
        match self {
            Found::Certificate => "a certificate".into(),
            Found::Csr => "a certificate signing request (CSR)".into(),
            Found::PrivateKey(kind) => format!("a private key ({kind})"),
            Found::OpenSshKey => "an OpenSSH private key".into(),
            Found::DsaKey => "a DSA private key".into(),
            Found::PublicKey => "a public key".into(),
            Found::Pkcs7 => "a PKCS#7 bundle (.p7b)".into(),
            Found::Pkcs12 => "a PKCS#12 file".into(),
            Found::Crl => "a certificate revocation list".into(),
            Found::TrustedCertificate => "an OpenSSL TRUSTED CERTIFICATE".into(),
            Found::OtherPem(label) => format!("a PEM block of type {label}"),
            Found::UnknownDer => "binary data that is neither a certificate nor a key".into(),
            Found::Base64WithoutArmor => "base64 without its -----BEGIN and -----END lines".into(),
            Found::Text => "text without any -----BEGIN block".into(),
            Found::Nothing => "nothing usable".into(),
        }
    }

    /// How to fix it, for the field that expected something else.
    fn hint(&self, field: &str) -> &'static str {
        let cert_field = matches!(field, field::CERTIFICATE | field::FULLCHAIN | field::CHAIN);
        match self {
            Found::PrivateKey(_) if cert_field => "; put the private key in the private key field",
            Found::Certificate if field == field::PRIVATE_KEY => {
                "; put certificates in the certificate and chain fields"
            }
            Found::Csr if cert_field => {
                "; the CSR is what you sent to the CA: paste the certificate the CA issued for it"
            }
            Found::Csr => "; the private key is the file generated together with the CSR",
            Found::PublicKey if field == field::PRIVATE_KEY => {
                "; the private key is needed, not the public key"
            }
            Found::OpenSshKey => {
                "; convert it with: ssh-keygen -p -m PKCS8 -f key (it rewrites the file)"
            }
            Found::DsaKey => "; DSA keys cannot be used for TLS: use RSA or ECDSA",
            Found::Pkcs7 => "; convert it with: openssl pkcs7 -print_certs -in chain.p7b",
            Found::Pkcs12 => "; upload it as a PKCS#12 file, with its password",
            Found::TrustedCertificate => {
                "; convert it with: openssl x509 -in cert.pem -out plain.pem"
            }
            Found::Base64WithoutArmor => {
                "; keep the -----BEGIN and -----END lines when you copy it"
            }
            _ => "",
        }
    }
}

fn wrong_kind(field: &'static str, expected: &'static str, found: Found) -> ImportError {
    ImportError::WrongKind {
        field,
        expected,
        hint: found.hint(field).to_string(),
        found: found.describe(),
    }
}

// ---------------------------------------------------------------------------
// Reading private keys

/// A private key as the user gave it, decrypted.
#[derive(Clone)]
enum RawKey {
    Pkcs8(Vec<u8>),
    /// PKCS#1 RSAPrivateKey.
    Pkcs1(Vec<u8>),
    /// SEC1 ECPrivateKey, with or without its curve and public key.
    Sec1(Vec<u8>),
}

const KEY_LABELS: [&str; 4] = [
    "PRIVATE KEY",
    "ENCRYPTED PRIVATE KEY",
    "RSA PRIVATE KEY",
    "EC PRIVATE KEY",
];

fn read_private_key(bytes: &[u8], password: Option<&str>) -> Result<RawKey, ImportError> {
    let f = field::PRIVATE_KEY;
    let expected = "a private key";
    let password = password.filter(|p| !p.is_empty());
    if !looks_like_pem(bytes) {
        if bytes.first() != Some(&0x30) {
            return Err(wrong_kind(f, expected, Found::of_text(bytes)));
        }
        return match Found::of_der(bytes) {
            Found::PrivateKey("PKCS#8") => Ok(RawKey::Pkcs8(bytes.to_vec())),
            Found::PrivateKey("encrypted PKCS#8") => decrypt_pkcs8(bytes, password),
            Found::PrivateKey("RSA") => Ok(RawKey::Pkcs1(bytes.to_vec())),
            Found::PrivateKey(_) => Ok(RawKey::Sec1(bytes.to_vec())),
            found => Err(wrong_kind(f, expected, found)),
        };
    }
    let blocks = pem_blocks(f, bytes, expected)?;
    let mut keys = blocks.iter().filter(|b| KEY_LABELS.contains(&b.tag()));
    let Some(block) = keys.next() else {
        let other = blocks.iter().find(|b| b.tag() != "EC PARAMETERS");
        let found = other.map_or(Found::Nothing, Found::of_pem);
        return Err(wrong_kind(f, expected, found));
    };
    let count = 1 + keys.count();
    if count > 1 {
        return Err(ImportError::MultiplePrivateKeys { field: f, count });
    }
    if let Some(other) = blocks
        .iter()
        .find(|b| !KEY_LABELS.contains(&b.tag()) && b.tag() != "EC PARAMETERS")
    {
        return Err(wrong_kind(f, expected, Found::of_pem(other)));
    }
    if block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"))
    {
        return Err(ImportError::LegacyEncryptedKey);
    }
    let der = block.contents().to_vec();
    let malformed = |what: &str| ImportError::BadPrivateKey {
        field: f,
        reason: format!("the {what} block does not hold a readable key"),
    };
    match block.tag() {
        "PRIVATE KEY" => {
            pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
                .map_err(|_| malformed("PRIVATE KEY"))?;
            Ok(RawKey::Pkcs8(der))
        }
        "ENCRYPTED PRIVATE KEY" => decrypt_pkcs8(&der, password),
        "RSA PRIVATE KEY" => {
            pkcs1::RsaPrivateKeyRef::try_from(der.as_slice())
                .map_err(|_| malformed("RSA PRIVATE KEY"))?;
            Ok(RawKey::Pkcs1(der))
        }
        _ => {
            sec1::EcPrivateKey::try_from(der.as_slice())
                .map_err(|_| malformed("EC PRIVATE KEY"))?;
            Ok(RawKey::Sec1(der))
        }
    }
}

fn decrypt_pkcs8(der: &[u8], password: Option<&str>) -> Result<RawKey, ImportError> {
    use pkcs8::pkcs5::{pbes2::Kdf, EncryptionScheme, Error as Pkcs5Error};
    let Some(scheme_oid) = encrypted_pkcs8_scheme(der) else {
        return Err(ImportError::BadPrivateKey {
            field: field::PRIVATE_KEY,
            reason: "the encrypted key cannot be read".into(),
        });
    };
    let Some(password) = password else {
        return Err(ImportError::KeyPasswordRequired);
    };
    let encrypted = match pkcs8::EncryptedPrivateKeyInfoRef::try_from(der) {
        Ok(e) if matches!(e.encryption_algorithm, EncryptionScheme::Pbes2(_)) => e,
        // PKCS#12's PBE (openssl 1.0's default, PBE-SHA1-3DES) and PKCS#5's
        // PBES1 are left to the PKCS#12 reader, which knows them.
        _ => return decrypt_pkcs8_pbe(der, password, &scheme_oid),
    };
    if let EncryptionScheme::Pbes2(params) = &encrypted.encryption_algorithm {
        match &params.kdf {
            Kdf::Pbkdf2(p) if p.iteration_count > MAX_KDF_ITERATIONS => {
                return Err(ImportError::KeyEncryptionUnsupported {
                    algorithm: format!("{} PBKDF2 iterations", p.iteration_count),
                })
            }
            Kdf::Scrypt(s)
                if !scrypt_acceptable(s.cost_parameter, s.block_size, s.parallelization) =>
            {
                return Err(ImportError::KeyEncryptionUnsupported {
                    algorithm: "scrypt with more memory or parallelism than the desk allows".into(),
                })
            }
            _ => {}
        }
    }
    match encrypted.decrypt(password) {
        Ok(doc) => {
            // A wrong password decrypts to garbage once in 256 tries with
            // valid padding; the garbage is not a PKCS#8 structure.
            if pkcs8::PrivateKeyInfoRef::try_from(doc.as_bytes()).is_err() {
                return Err(ImportError::KeyWrongPassword);
            }
            Ok(RawKey::Pkcs8(doc.as_bytes().to_vec()))
        }
        Err(pkcs8::Error::EncryptedPrivateKey(Pkcs5Error::UnsupportedAlgorithm { oid })) => {
            Err(ImportError::KeyEncryptionUnsupported {
                algorithm: oid_name(&oid.to_string()),
            })
        }
        Err(_) => Err(ImportError::KeyWrongPassword),
    }
}

/// The encryption scheme's OID (dotted) if `der` has the shape of an
/// EncryptedPrivateKeyInfo: SEQUENCE { SEQUENCE { OID, … }, OCTET STRING }.
fn encrypted_pkcs8_scheme(der: &[u8]) -> Option<String> {
    let (0x30, outer, []) = read_tlv(der)? else {
        return None;
    };
    let (0x30, algorithm, rest) = read_tlv(outer)? else {
        return None;
    };
    let (0x04, _, []) = read_tlv(rest)? else {
        return None;
    };
    let (0x06, oid, _) = read_tlv(algorithm)? else {
        return None;
    };
    Some(x509_parser::oid_registry::Oid::new(std::borrow::Cow::Borrowed(oid)).to_id_string())
}

/// Decrypts a key encrypted with a PKCS#12 PBE scheme by handing it to the
/// PKCS#12 reader, as the one key of a minimal PFX without a MAC.
fn decrypt_pkcs8_pbe(der: &[u8], password: &str, scheme: &str) -> Result<RawKey, ImportError> {
    use p12_keystore::error::Error as P12Error;
    const ID_DATA: [u64; 7] = [1, 2, 840, 113549, 1, 7, 1];
    const SHROUDED_KEY_BAG: [u64; 9] = [1, 2, 840, 113549, 1, 12, 10, 1, 2];
    let bag = der::sequence(&[&der::oid(&SHROUDED_KEY_BAG), &der::tlv(0xa0, der)]);
    let safe_contents = der::sequence(&[&bag]);
    let data = |content: &[u8]| {
        der::sequence(&[
            &der::oid(&ID_DATA),
            &der::tlv(0xa0, &der::tlv(TAG_OCTET_STRING, content)),
        ])
    };
    let auth_safe = der::sequence(&[&data(&safe_contents)]);
    let pfx = der::sequence(&[&der::tlv(TAG_INTEGER, &[3]), &data(&auth_safe)]);
    let unsupported = || ImportError::KeyEncryptionUnsupported {
        algorithm: oid_name(scheme),
    };
    match p12_keystore::Pkcs12Archive::from_pkcs12(&pfx, password) {
        Ok(archive) => match archive.keys.into_iter().next() {
            Some(bag) => Ok(RawKey::Pkcs8(bag.key.as_der().to_vec())),
            None => Err(unsupported()),
        },
        Err(P12Error::UnsupportedEncryptionScheme) => Err(unsupported()),
        Err(P12Error::InvalidParameters) => Err(ImportError::KeyEncryptionUnsupported {
            algorithm: "more key-derivation iterations than the desk allows".into(),
        }),
        Err(_) => Err(ImportError::KeyWrongPassword),
    }
}

/// `pbeWithSHAAnd3-KeyTripleDES-CBC (1.2.840.113549.1.12.1.3)`, or the
/// dotted OID alone when it has no name.
fn oid_name(dotted: &str) -> String {
    let name = dotted
        .parse::<x509_parser::oid_registry::Oid<'static>>()
        .ok()
        .and_then(|oid| {
            x509_parser::objects::oid2sn(&oid, x509_parser::objects::oid_registry())
                .ok()
                .map(str::to_string)
        });
    match name {
        Some(name) => format!("{name} ({dotted})"),
        None => format!("the algorithm {dotted}"),
    }
}

fn scrypt_acceptable(n: u64, r: u16, p: u16) -> bool {
    p <= MAX_SCRYPT_PARALLELISM
        && 128u64
            .checked_mul(n)
            .and_then(|m| m.checked_mul(u64::from(r)))
            .is_some_and(|m| m <= MAX_SCRYPT_MEMORY)
}

// ---------------------------------------------------------------------------
// Keys: what a public key is, and the key in the form the desk stores

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    const fn oid_arcs(self) -> &'static [u64] {
        match self {
            Curve::P256 => &[1, 2, 840, 10045, 3, 1, 7],
            Curve::P384 => &[1, 3, 132, 0, 34],
        }
    }

    fn from_oid(oid: &str) -> Option<Curve> {
        match oid {
            "1.2.840.10045.3.1.7" => Some(Curve::P256),
            "1.3.132.0.34" => Some(Curve::P384),
            _ => None,
        }
    }

    const fn scalar_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
const OID_EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";

/// A public key, in a form where equal means "the same key".
#[derive(Debug, Clone, PartialEq, Eq)]
enum PublicIdentity {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// The uncompressed point.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
    Ed25519(Vec<u8>),
}

impl PublicIdentity {
    fn curve(&self) -> Option<Curve> {
        match self {
            PublicIdentity::Ec { curve, .. } => Some(*curve),
            _ => None,
        }
    }

    fn describe(&self) -> String {
        let kind = match self {
            PublicIdentity::Rsa { n, .. } => KeyType::Rsa {
                bits: bit_length(n),
            },
            PublicIdentity::Ec {
                curve: Curve::P256, ..
            } => KeyType::EcP256,
            PublicIdentity::Ec {
                curve: Curve::P384, ..
            } => KeyType::EcP384,
            PublicIdentity::Ed25519(_) => KeyType::Ed25519,
        };
        let digest = Sha256::digest(match self {
            PublicIdentity::Rsa { n, .. } => n.as_slice(),
            PublicIdentity::Ec { point, .. } => point.as_slice(),
            PublicIdentity::Ed25519(k) => k.as_slice(),
        });
        // A short fingerprint, so two keys of the same kind read differently.
        format!("{kind} {}…", hex::encode(&digest[..4]))
    }
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    bytes[start..].to_vec()
}

fn bit_length(magnitude: &[u8]) -> u32 {
    let m = strip_zeros(magnitude);
    match m.first() {
        None => 0,
        Some(&top) => (m.len() as u32 - 1) * 8 + (8 - top.leading_zeros()),
    }
}

/// The certificate's public key, if the desk accepts its kind and size.
fn certificate_key(
    spki: &SubjectPublicKeyInfo<'_>,
    field: &'static str,
) -> Result<PublicIdentity, ImportError> {
    let unsupported = |key: String| ImportError::UnsupportedKey { field, key };
    match classify_key(spki) {
        Ok(_)
        | Err(CsrError::RsaBitsNotMultipleOf8 { .. })
        | Err(CsrError::RsaBadExponent { .. }) => {}
        Err(CsrError::RsaTooSmall { bits }) => {
            return Err(ImportError::KeyTooSmall { field, bits })
        }
        Err(CsrError::RsaTooLarge { bits }) => {
            return Err(unsupported(format!("RSA {bits} (more than 8192 bits)")))
        }
        Err(CsrError::UnsupportedCurve { curve }) => {
            return Err(unsupported(format!("ECDSA on the curve {curve}")))
        }
        Err(CsrError::UnsupportedKeyAlgorithm { oid }) => return Err(unsupported(oid)),
        Err(CsrError::NotACsr { reason }) => return Err(unsupported(reason)),
        Err(other) => return Err(unsupported(other.to_string())),
    }
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_RSA_ENCRYPTION => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => Ok(PublicIdentity::Rsa {
                n: strip_zeros(rsa.modulus),
                e: strip_zeros(rsa.exponent),
            }),
            _ => Err(unsupported("a malformed RSA key".into())),
        },
        OID_EC_PUBLIC_KEY => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .and_then(|oid| Curve::from_oid(&oid.to_id_string()))
                .ok_or_else(|| unsupported("an elliptic-curve key on an unknown curve".into()))?;
            Ok(PublicIdentity::Ec {
                curve,
                point: spki.subject_public_key.data.to_vec(),
            })
        }
        OID_ED25519 => Ok(PublicIdentity::Ed25519(
            spki.subject_public_key.data.to_vec(),
        )),
        other => Err(unsupported(other.to_string())),
    }
}

/// A private key in the form the desk stores (PKCS#8 as ring and openssl
/// write it), and its public key.
struct ReadyKey {
    pkcs8: Vec<u8>,
    public: PublicIdentity,
    /// PKCS#1, for the RSA consistency check.
    rsa_der: Option<Vec<u8>>,
}

impl ReadyKey {
    /// ring checks that an RSA key's parts fit together (p·q = n, …), for the
    /// sizes it handles; a key that only has the right n and e would sign
    /// nothing. EC and Ed25519 keys were checked while reading them.
    fn check_integrity(&self, field: &'static str) -> Result<(), ImportError> {
        let (Some(der), PublicIdentity::Rsa { n, e }) = (&self.rsa_der, &self.public) else {
            return Ok(());
        };
        if !matches!(bit_length(n), 2048 | 3072 | 4096) || e.as_slice() != [1, 0, 1] {
            return Ok(());
        }
        match RsaKeyPair::from_der(der) {
            Err(rejected) if rejected.to_string() == "InconsistentComponents" => {
                Err(ImportError::BadPrivateKey {
                    field,
                    reason: "the key is damaged: its parts do not fit together".into(),
                })
            }
            _ => Ok(()),
        }
    }
}

/// Reads a decrypted key into the form the desk stores. `cert_curve` is the
/// curve of the certificate's key, for SEC1 keys that do not name theirs.
fn prepare_key(
    raw: &RawKey,
    cert_curve: Option<Curve>,
    field: &'static str,
) -> Result<ReadyKey, ImportError> {
    let malformed = |reason: String| ImportError::BadPrivateKey { field, reason };
    match raw {
        RawKey::Pkcs1(der) => rsa_key(der, field),
        RawKey::Sec1(der) => ec_key(der, None, cert_curve, field),
        RawKey::Pkcs8(der) => {
            let info = pkcs8::PrivateKeyInfoRef::try_from(der.as_slice())
                .map_err(|e| malformed(format!("the PKCS#8 structure cannot be read ({e})")))?;
            let inner = info.private_key.as_bytes();
            match info.algorithm.oid.to_string().as_str() {
                OID_RSA_ENCRYPTION => rsa_key(inner, field),
                OID_EC_PUBLIC_KEY => {
                    let curve = info
                        .algorithm
                        .parameters_oid()
                        .ok()
                        .map(|oid| oid.to_string());
                    let curve = match curve.as_deref().map(Curve::from_oid) {
                        Some(Some(c)) => c,
                        Some(None) => {
                            return Err(ImportError::UnsupportedKey {
                                field,
                                key: format!("ECDSA on the curve {}", curve.unwrap_or_default()),
                            })
                        }
                        None => return Err(malformed("the EC key does not name its curve".into())),
                    };
                    ec_key(inner, Some(curve), cert_curve, field)
                }
                OID_ED25519 => ed25519_key(inner, field),
                other => Err(ImportError::UnsupportedKey {
                    field,
                    key: key_algorithm_name(other),
                }),
            }
        }
    }
}

fn key_algorithm_name(oid: &str) -> String {
    match oid {
        "1.2.840.10040.4.1" => "DSA".into(),
        "1.3.101.110" => "X25519".into(),
        "1.3.101.113" => "Ed448".into(),
        "1.2.840.113549.1.1.10" => "RSA-PSS (a key restricted to PSS signatures)".into(),
        other => format!("a key of algorithm {other}"),
    }
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_CONTEXT_1: u8 = 0xa1;

/// PrivateKeyInfo { version 0, algorithm, privateKey }.
fn pkcs8_v1(algorithm: &[u8], private_key: &[u8]) -> Vec<u8> {
    der::sequence(&[
        &der::tlv(TAG_INTEGER, &[0]),
        algorithm,
        &der::tlv(TAG_OCTET_STRING, private_key),
    ])
}

fn rsa_key(pkcs1_der: &[u8], field: &'static str) -> Result<ReadyKey, ImportError> {
    let key =
        pkcs1::RsaPrivateKeyRef::try_from(pkcs1_der).map_err(|e| ImportError::BadPrivateKey {
            field,
            reason: format!("the RSA key cannot be read ({e})"),
        })?;
    let public = PublicIdentity::Rsa {
        n: strip_zeros(key.modulus.as_bytes()),
        e: strip_zeros(key.public_exponent.as_bytes()),
    };
    let algorithm = der::sequence(&[&der::oid(&[1, 2, 840, 113549, 1, 1, 1]), &[TAG_NULL, 0]]);
    Ok(ReadyKey {
        pkcs8: pkcs8_v1(&algorithm, pkcs1_der),
        public,
        rsa_der: Some(pkcs1_der.to_vec()),
    })
}

/// An ECPrivateKey, on `pkcs8_curve` (from PKCS#8), its own parameters, or
/// the certificate's curve, in that order. Its public key is computed when
/// missing (`openssl ec -no_public`), and ring checks it otherwise.
fn ec_key(
    sec1_der: &[u8],
    pkcs8_curve: Option<Curve>,
    cert_curve: Option<Curve>,
    field: &'static str,
) -> Result<ReadyKey, ImportError> {
    let malformed = |reason: &str| ImportError::BadPrivateKey {
        field,
        reason: reason.to_string(),
    };
    let key = sec1::EcPrivateKey::try_from(sec1_der)
        .map_err(|e| malformed(&format!("the EC key cannot be read ({e})")))?;
    let own_curve = match key.parameters.as_ref().and_then(|p| p.named_curve()) {
        Some(oid) => match Curve::from_oid(&oid.to_string()) {
            Some(c) => Some(c),
            None => {
                return Err(ImportError::UnsupportedKey {
                    field,
                    key: format!("ECDSA on the curve {oid}"),
                })
            }
        },
        None => None,
    };
    let curve = match (pkcs8_curve, own_curve) {
        (Some(a), Some(b)) if a != b => {
            return Err(malformed("the EC key names two different curves"))
        }
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => match cert_curve {
            Some(c) => c,
            None => {
                return Err(malformed(
                    "the EC key does not name its curve, and the certificate's key is not an \
                     EC key",
                ))
            }
        },
    };
    let len = curve.scalar_len();
    let d = key.private_key;
    let d_start = d.iter().position(|&b| b != 0).unwrap_or(d.len());
    if d.len() - d_start > len {
        return Err(malformed("the EC private value is too long for its curve"));
    }
    let mut scalar = vec![0u8; len];
    scalar[len - (d.len() - d_start)..].copy_from_slice(&d[d_start..]);
    let point = match key.public_key {
        Some(point) => point.to_vec(),
        None => derive_point(curve, &scalar)
            .ok_or_else(|| malformed("the EC private value is not valid for its curve"))?,
    };
    let ec_private_key = der::sequence(&[
        &der::tlv(TAG_INTEGER, &[1]),
        &der::tlv(TAG_OCTET_STRING, &scalar),
        &der::tlv(
            TAG_CONTEXT_1,
            &der::tlv(TAG_BIT_STRING, &[&[0u8][..], &point].concat()),
        ),
    ]);
    let algorithm = der::sequence(&[
        &der::oid(&[1, 2, 840, 10045, 2, 1]),
        &der::oid(curve.oid_arcs()),
    ]);
    let pkcs8 = pkcs8_v1(&algorithm, &ec_private_key);
    let signing = match curve {
        Curve::P256 => &ECDSA_P256_SHA256_ASN1_SIGNING,
        Curve::P384 => &ECDSA_P384_SHA384_ASN1_SIGNING,
    };
    // ring derives the public key from the private value and compares.
    let pair = EcdsaKeyPair::from_pkcs8(signing, &pkcs8, &SystemRandom::new()).map_err(|e| {
        if e.to_string() == "InconsistentComponents" {
            malformed("the key is damaged: its public key does not match its private value")
        } else {
            malformed(&format!("the EC key is not valid ({e})"))
        }
    })?;
    Ok(ReadyKey {
        public: PublicIdentity::Ec {
            curve,
            point: pair.public_key().as_ref().to_vec(),
        },
        pkcs8,
        rsa_der: None,
    })
}

/// The uncompressed public point of a private scalar.
fn derive_point(curve: Curve, scalar: &[u8]) -> Option<Vec<u8>> {
    use p256::elliptic_curve::sec1::ToSec1Point;
    match curve {
        Curve::P256 => {
            let secret = p256::SecretKey::from_slice(scalar).ok()?;
            Some(
                secret
                    .public_key()
                    .as_affine()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        }
        Curve::P384 => {
            let secret = p384::SecretKey::from_slice(scalar).ok()?;
            Some(
                secret
                    .public_key()
                    .as_affine()
                    .to_sec1_point(false)
                    .as_bytes()
                    .to_vec(),
            )
        }
    }
}

fn ed25519_key(inner: &[u8], field: &'static str) -> Result<ReadyKey, ImportError> {
    // CurvePrivateKey ::= OCTET STRING (the 32-byte seed).
    let seed = match inner {
        [TAG_OCTET_STRING, 32, seed @ ..] if seed.len() == 32 => seed,
        _ => {
            return Err(ImportError::BadPrivateKey {
                field,
                reason: "the Ed25519 key is not a 32-byte seed".into(),
            })
        }
    };
    let algorithm = der::sequence(&[&der::oid(&[1, 3, 101, 112])]);
    let pkcs8 = pkcs8_v1(&algorithm, inner);
    let pair =
        Ed25519KeyPair::from_seed_unchecked(seed).map_err(|e| ImportError::BadPrivateKey {
            field,
            reason: format!("the Ed25519 key is not valid ({e})"),
        })?;
    Ok(ReadyKey {
        public: PublicIdentity::Ed25519(pair.public_key().as_ref().to_vec()),
        pkcs8,
        rsa_der: None,
    })
}

// ---------------------------------------------------------------------------
// PKCS#12

fn from_pkcs12(data: &[u8], password: Option<&str>) -> Result<Material, ImportError> {
    use p12_keystore::error::Error as P12Error;
    let given = password.is_some_and(|p| !p.is_empty());
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(data, password.unwrap_or("")).map_err(
        |e| match e {
            P12Error::MacError(_)
            | P12Error::Pkcs5Error(_)
            | P12Error::UnpadError
            | P12Error::InvalidPrivateKey => {
                if given {
                    ImportError::Pkcs12WrongPassword
                } else {
                    ImportError::Pkcs12PasswordRequired
                }
            }
            P12Error::UnsupportedEncryptionScheme => ImportError::Pkcs12Unsupported {
                reason: "an encryption scheme".into(),
            },
            P12Error::UnsupportedMacAlgorithm => ImportError::Pkcs12Unsupported {
                reason: "an integrity check (MAC) algorithm".into(),
            },
            P12Error::InvalidParameters => ImportError::Pkcs12Unsupported {
                reason: "more key-derivation iterations than the desk allows".into(),
            },
            other => ImportError::Pkcs12Damaged {
                reason: other.to_string(),
            },
        },
    )?;
    let f = field::PKCS12;
    let mut keys: Vec<&p12_keystore::PrivateKeyBag> = Vec::new();
    for key in &archive.keys {
        if !keys.iter().any(|k| k.key.as_der() == key.key.as_der()) {
            keys.push(key);
        }
    }
    let key_bag = match keys.as_slice() {
        [] => return Err(ImportError::Pkcs12NoPrivateKey),
        [one] => *one,
        more => {
            return Err(ImportError::MultiplePrivateKeys {
                field: f,
                count: more.len(),
            })
        }
    };
    if archive.certs.is_empty() {
        return Err(ImportError::Pkcs12NoCertificate);
    }
    let key = prepare_key(&RawKey::Pkcs8(key_bag.key.as_der().to_vec()), None, f)?;

    // The certificate is the one whose public key is the key's; the bag's
    // localKeyId decides between renewals of the same key.
    let matches_key = |der: &[u8]| {
        X509Certificate::from_der(der)
            .ok()
            .and_then(|(_, c)| certificate_key(c.public_key(), f).ok())
            .is_some_and(|public| public == key.public)
    };
    let same_id =
        |bag: &p12_keystore::CertificateBag| match (&bag.local_key_id, &key_bag.local_key_id) {
            (Some(a), Some(b)) => a.as_slice() == b.as_ref(),
            _ => false,
        };
    let candidates: Vec<usize> = (0..archive.certs.len())
        .filter(|&i| matches_key(archive.certs[i].cert.as_der()))
        .collect();
    let Some(&leaf_index) = candidates
        .iter()
        .find(|&&i| same_id(&archive.certs[i]))
        .or(candidates.first())
    else {
        let certificate = X509Certificate::from_der(archive.certs[0].cert.as_der())
            .ok()
            .and_then(|(_, c)| certificate_key(c.public_key(), f).ok())
            .map_or_else(|| "unreadable".to_string(), |p| p.describe());
        return Err(ImportError::KeyMismatch {
            field: f,
            key: key.public.describe(),
            certificate: format!("{certificate}, and no certificate in the file has the key"),
        });
    };
    let leaf = archive.certs[leaf_index].cert.as_der().to_vec();
    let chain = archive
        .certs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != leaf_index)
        .map(|(_, bag)| bag.cert.as_der().to_vec())
        .collect();
    Ok(Material {
        leaf,
        leaf_field: f,
        chain,
        chain_field: f,
        key: Key::Ready(key),
        key_field: f,
    })
}

/// A PKCS#12 file holding the certificate, its chain and its key, protected
/// by `password` with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC) and an
/// HMAC-SHA256 MAC: what openssl 3 writes by default and browsers open.
pub fn export_pkcs12(
    certificate_der: &[u8],
    chain_der: &[Vec<u8>],
    key_pkcs8_der: &[u8],
    password: &str,
    friendly_name: &str,
) -> Result<Vec<u8>, ImportError> {
    use p12_keystore::{
        Certificate, EncryptionAlgorithm, KeyStore, KeyStoreEntry, MacAlgorithm, PrivateKey,
        PrivateKeyChain,
    };
    let failed = |what: &str, e: p12_keystore::error::Error| ImportError::Export {
        reason: format!("{what} ({e})"),
    };
    let key = PrivateKey::from_der(key_pkcs8_der).map_err(|e| failed("the private key", e))?;
    let mut certs =
        vec![Certificate::from_der(certificate_der).map_err(|e| failed("the certificate", e))?];
    for (i, der) in chain_der.iter().enumerate() {
        certs.push(
            Certificate::from_der(der)
                .map_err(|e| failed(&format!("chain certificate {}", i + 1), e))?,
        );
    }
    // The friendly name is a BMPString: no characters beyond the BMP, and
    // none that would show as garbage in a certificate manager.
    let name: String = friendly_name
        .chars()
        .filter(|c| u32::from(*c) <= 0xffff && !c.is_control())
        .collect();
    let name = match name.trim() {
        "" => "certificate",
        trimmed => trimmed,
    };
    let local_key_id = Sha256::digest(certificate_der)[..20].to_vec();
    let mut store = KeyStore::new();
    store.add_entry(
        name,
        KeyStoreEntry::PrivateKeyChain(PrivateKeyChain::new(local_key_id, key, certs)),
    );
    store
        .writer(password)
        .encryption_algorithm(EncryptionAlgorithm::PbeWithHmacSha256AndAes256)
        .encryption_iterations(EXPORT_ITERATIONS)
        .mac_algorithm(MacAlgorithm::HmacSha256)
        .mac_iterations(EXPORT_ITERATIONS)
        .write()
        .map_err(|e| failed("writing", e))
}

/// The key as `-----BEGIN PRIVATE KEY-----` PEM, LF line endings.
pub fn key_pem(key_pkcs8_der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new("PRIVATE KEY", key_pkcs8_der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The chain as consecutive CERTIFICATE blocks, in the order given.
pub fn chain_pem(chain_der: &[Vec<u8>]) -> String {
    chain_der.iter().map(|der| pem_encode_cert(der)).collect()
}

// ---------------------------------------------------------------------------
// The chain

/// How one certificate relates to a candidate issuer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Names match and the signature verifies.
    Signed,
    /// Names match; the signature uses an algorithm that cannot be checked
    /// here (ecdsa-with-SHA1, P-521, a small RSA key).
    NamesOnly,
    /// Names match, signature does not verify.
    BadSignature,
    /// The issuer's name is not the candidate's subject.
    OtherName,
}

fn link(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> Link {
    if child.issuer().as_raw() != issuer.subject().as_raw() {
        return Link::OtherName;
    }
    match child.verify_signature(Some(issuer.public_key())) {
        Ok(()) => Link::Signed,
        Err(X509Error::SignatureUnsupportedAlgorithm) => Link::NamesOnly,
        // ring verifies RSA signatures from 1024 bits up only with SHA-1.
        Err(_) if rsa_modulus_bits(issuer.public_key()).is_some_and(|b| b < 2048) => {
            Link::NamesOnly
        }
        Err(_) => Link::BadSignature,
    }
}

fn is_self_signed(cert: &X509Certificate<'_>) -> bool {
    matches!(link(cert, cert), Link::Signed | Link::NamesOnly)
}

/// Puts the chain in issuing order, starting from the certificate: the
/// indexes into `chain` in that order. Every certificate given must find its
/// place; the first that does not is named with its position as given.
fn order_chain(
    leaf: &X509Certificate<'_>,
    chain: &[(usize, X509Certificate<'_>)],
    field: &'static str,
    warnings: &mut Vec<ImportWarning>,
) -> Result<Vec<usize>, ImportError> {
    let mut order: Vec<usize> = Vec::with_capacity(chain.len());
    // (issuer index, the signature of the certificate it issued) for links
    // made by name only.
    let mut unchecked: Vec<(usize, String, String)> = Vec::new();
    let mut current = leaf;
    let mut current_label = "the certificate".to_string();
    // A self-signed certificate ends the path: nothing above a root.
    while order.len() < chain.len() && !is_self_signed(current) {
        let next = (0..chain.len())
            .filter(|k| !order.contains(k))
            .map(|k| (k, link(current, &chain[k].1)))
            .filter(|(_, l)| matches!(l, Link::Signed | Link::NamesOnly))
            .min_by_key(|(_, l)| *l != Link::Signed);
        let Some((k, l)) = next else { break };
        if l == Link::NamesOnly {
            unchecked.push((k, current_label.clone(), signature_name(current)));
        }
        order.push(k);
        current = &chain[k].1;
        current_label = position_label(field, chain[k].0);
    }
    if order.len() < chain.len() {
        // The first certificate, in the order given, left out of the path.
        let stray = (0..chain.len())
            .filter(|k| !order.contains(k))
            .min_by_key(|&k| chain[k].0)
            .unwrap_or(0);
        let position = chain[stray].0;
        let (issued_label, issued) = match chain.iter().find(|(p, _)| *p + 1 == position) {
            Some((p, c)) => (position_label(field, *p), c),
            None => ("the certificate".to_string(), leaf),
        };
        let stray_cert = &chain[stray].1;
        let reason = match link(issued, stray_cert) {
            Link::BadSignature => format!(
                "its name \"{}\" matches the issuer of {issued_label}, but its key did not sign \
                 it (a different certificate with the same name is needed)",
                stray_cert.subject()
            ),
            _ => format!(
                "it is \"{}\", while {issued_label} was issued by \"{}\"",
                stray_cert.subject(),
                issued.issuer()
            ),
        };
        return Err(ImportError::ChainBroken {
            field,
            position,
            certificate: position_label(field, position),
            issued: issued_label,
            reason,
        });
    }
    for (k, child, algorithm) in unchecked {
        warnings.push(ImportWarning {
            code: warning::SIGNATURE_NOT_CHECKED,
            message: format!(
                "{} was taken as the issuer of {child} by its name alone: the signature \
                 ({algorithm}) cannot be checked here",
                position_label(field, chain[k].0),
            ),
        });
    }
    Ok(order)
}

fn signature_name(cert: &X509Certificate<'_>) -> String {
    let oid = &cert.signature_algorithm.algorithm;
    match x509_parser::objects::oid2sn(oid, x509_parser::objects::oid_registry()) {
        Ok(name) => name.to_string(),
        Err(_) => oid.to_id_string(),
    }
}

// ---------------------------------------------------------------------------
// Warnings

fn uses_sha1(cert: &X509Certificate<'_>) -> bool {
    match cert.signature_algorithm.algorithm.to_id_string().as_str() {
        // sha1WithRSAEncryption, sha1WithRSA (OIW), ecdsa-with-SHA1, dsa-with-sha1
        "1.2.840.113549.1.1.5" | "1.3.14.3.2.29" | "1.2.840.10045.4.1" | "1.2.840.10040.4.3" => {
            true
        }
        // RSASSA-PSS whose hash defaults to SHA-1.
        "1.2.840.113549.1.1.10" => match SignatureAlgorithm::try_from(&cert.signature_algorithm) {
            Ok(SignatureAlgorithm::RSASSA_PSS(params)) => {
                params.hash_algorithm_oid().to_id_string() == "1.3.14.3.2.26"
            }
            _ => false,
        },
        _ => false,
    }
}

/// Warnings about the certificates themselves. A self-signed root at the end
/// of the chain is left out: browsers use their own copy of it, so its
/// signature, version and extensions do not matter.
fn certificate_warnings(
    leaf: &X509Certificate<'_>,
    chain: &[&X509Certificate<'_>],
    now: OffsetDateTime,
    warnings: &mut Vec<ImportWarning>,
) {
    let root_at_end = chain.last().is_some_and(|c| is_self_signed(c));
    let checked = chain.len() - usize::from(root_at_end);
    let certs = std::iter::once(("the certificate".to_string(), leaf)).chain(
        chain[..checked]
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("chain certificate {}", i + 1), *c)),
    );
    let mut sha1 = Vec::new();
    for (i, (name, cert)) in certs.enumerate() {
        if uses_sha1(cert) {
            sha1.push(name.clone());
        }
        if cert.version().0 == 0 {
            warnings.push(ImportWarning {
                code: warning::V1_CERTIFICATE,
                message: format!(
                    "{name} is an X.509 version 1 certificate, which has no extensions; \
                     browsers refuse it"
                ),
            });
        }
        for ext in cert.extensions().iter().filter(|e| e.critical) {
            if matches!(
                ext.parsed_extension(),
                ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
            ) {
                warnings.push(ImportWarning {
                    code: warning::UNKNOWN_CRITICAL_EXTENSION,
                    message: format!(
                        "{name} has a critical extension {} that browsers do not know; they \
                         refuse such a certificate",
                        ext.oid.to_id_string()
                    ),
                });
            }
        }
        if i > 0 && now > cert.validity().not_after.to_datetime() {
            warnings.push(ImportWarning {
                code: warning::CHAIN_CERTIFICATE_EXPIRED,
                message: format!(
                    "{name} (\"{}\") expired on {}; get the current intermediate from the CA",
                    cert.subject(),
                    date(&cert.validity().not_after.to_datetime())
                ),
            });
        }
    }
    if !sha1.is_empty() {
        warnings.push(ImportWarning {
            code: warning::SHA1_SIGNATURE,
            message: format!(
                "signed with SHA-1, which browsers no longer accept: {}",
                sha1.join(", ")
            ),
        });
    }
}

/// One DER TLV: its tag, its content and what follows it.
fn read_tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first_len, rest) = rest.split_first()?;
    let (len, rest) = if first_len < 0x80 {
        (usize::from(first_len), rest)
    } else {
        let n = usize::from(first_len & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = rest
            .get(..n)?
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    Some((tag, rest.get(..len)?, rest.get(len..)?))
}

/// The certificate names a root of `roots` as its issuer, and that root's key
/// signed it.
fn issued_by_known_root(cert: &X509Certificate<'_>, roots: &[TrustAnchor<'_>]) -> bool {
    let Some((_, issuer, _)) = read_tlv(cert.issuer().as_raw()) else {
        return false;
    };
    roots
        .iter()
        .filter(|root| root.subject.as_ref() == issuer)
        .any(|root| {
            let spki = der::tlv(0x30, root.subject_public_key_info.as_ref());
            let Ok((_, spki)) = SubjectPublicKeyInfo::from_der(&spki) else {
                return false;
            };
            cert.verify_signature(Some(&spki)).is_ok()
        })
}

/// What browsers (as rustls-webpki with the Mozilla roots) say about the
/// certificate as a TLS server certificate: `Err` with the reason when they
/// would refuse it. Ed25519 is left out: browsers do not take it.
fn webpki_verdict(
    leaf: &[u8],
    chain: &[Vec<u8>],
    now: OffsetDateTime,
    roots: &[TrustAnchor<'_>],
) -> Result<(), String> {
    use webpki::ring as alg;
    static ALGORITHMS: &[&dyn rustls_pki_types::SignatureVerificationAlgorithm] = &[
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::RSA_PKCS1_2048_8192_SHA256,
        alg::RSA_PKCS1_2048_8192_SHA384,
        alg::RSA_PKCS1_2048_8192_SHA512,
        alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
    ];
    let leaf = CertificateDer::from(leaf);
    let intermediates: Vec<CertificateDer<'_>> = chain
        .iter()
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds));
    let result = webpki::EndEntityCert::try_from(&leaf).and_then(|ee| {
        ee.verify_for_usage(
            ALGORITHMS,
            roots,
            &intermediates,
            time,
            webpki::KeyUsage::server_auth(),
            None,
            None,
        )
        .map(|_| ())
    });
    result.map_err(|e| {
        let name = format!("{e:?}");
        let name = name
            .split(|c: char| !c.is_alphanumeric())
            .next()
            .unwrap_or_default()
            .to_string();
        format!("{} (webpki: {name})", webpki_reason(&e))
    })
}

fn webpki_reason(e: &webpki::Error) -> &'static str {
    use webpki::Error as E;
    match e {
        E::UnknownIssuer => "its chain does not lead to a root certificate browsers trust",
        E::CertExpired { .. } => "a certificate of the chain has expired",
        E::CertNotValidYet { .. } => "a certificate of the chain is not valid yet",
        E::UnsupportedSignatureAlgorithmContext(_)
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            "a certificate is signed with an algorithm browsers no longer accept (such as SHA-1)"
        }
        E::InvalidSignatureForPublicKey => "a signature of the chain does not verify",
        E::UnsupportedCertVersion => "a certificate is not X.509 version 3",
        E::UnsupportedCriticalExtension => {
            "a certificate has a critical extension browsers do not know"
        }
        E::CaUsedAsEndEntity => "it is a CA certificate, not a server certificate",
        E::EndEntityUsedAsCa => "a chain certificate is not a CA certificate",
        E::RequiredEkuNotFoundContext(_) => {
            "it is not valid for TLS servers (no serverAuth extended key usage)"
        }
        E::NameConstraintViolation => "one of its names is outside a CA's name constraints",
        E::PathLenConstraintViolated => "the chain is longer than a CA allows",
        E::BadDer | E::BadDerTime | E::TrailingData(_) => {
            "a certificate is not encoded in strict DER"
        }
        _ => "it does not pass browser validation",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_support::openssl;
    use rcgen::{
        BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
        SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    };
    use std::path::Path;
    use time::Duration;

    // -- Certificates made on the fly ------------------------------------

    struct Ca {
        params: CertificateParams,
        key: KeyPair,
        der: Vec<u8>,
    }

    fn now() -> OffsetDateTime {
        OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
    }

    fn ca_params(cn: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Import Test");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now() - Duration::days(1);
        params.not_after = now() + Duration::days(3650);
        params
    }

    fn root_ca(cn: &str) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let params = ca_params(cn);
        let der = params.self_signed(&key).unwrap().der().to_vec();
        Ca { params, key, der }
    }

    fn sub_ca(cn: &str, issuer: &Ca) -> Ca {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384).unwrap();
        let params = ca_params(cn);
        let der = params
            .signed_by(&key, &Issuer::from_params(&issuer.params, &issuer.key))
            .unwrap()
            .der()
            .to_vec();
        Ca { params, key, der }
    }

    fn leaf_params(name: &str) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = vec![SanType::DnsName(name.try_into().unwrap())];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.not_before = now() - Duration::hours(1);
        params.not_after = now() + Duration::days(90);
        params
    }

    fn sign(params: &CertificateParams, key: &KeyPair, issuer: &Ca) -> Vec<u8> {
        params
            .signed_by(key, &Issuer::from_params(&issuer.params, &issuer.key))
            .unwrap()
            .der()
            .to_vec()
    }

    /// root → intermediates[0] → … → intermediates[n-1] → leaf.
    struct Bundle {
        root: Ca,
        intermediates: Vec<Ca>,
        leaf: Vec<u8>,
        key: KeyPair,
    }

    impl Bundle {
        fn new(n: usize) -> Bundle {
            Bundle::with(n, &PKCS_ECDSA_P256_SHA256, |_| {})
        }

        fn with(
            n: usize,
            alg: &'static SignatureAlgorithm,
            tweak: impl FnOnce(&mut CertificateParams),
        ) -> Bundle {
            let root = root_ca("Import Test Root");
            let mut intermediates: Vec<Ca> = Vec::new();
            for i in 0..n {
                let issuer = intermediates.last().unwrap_or(&root);
                let int = sub_ca(&format!("Import Test Intermediate {}", i + 1), issuer);
                intermediates.push(int);
            }
            let key = KeyPair::generate_for(alg).unwrap();
            let mut params = leaf_params("www.example.com");
            tweak(&mut params);
            let leaf = sign(&params, &key, intermediates.last().unwrap_or(&root));
            Bundle {
                root,
                intermediates,
                leaf,
                key,
            }
        }

        /// The intermediates in issuing order (issuer of the leaf first).
        fn chain(&self) -> Vec<Vec<u8>> {
            self.intermediates
                .iter()
                .rev()
                .map(|c| c.der.clone())
                .collect()
        }

        fn chain_with_root(&self) -> Vec<Vec<u8>> {
            let mut chain = self.chain();
            chain.push(self.root.der.clone());
            chain
        }

        fn cert_pem(&self) -> String {
            pem_encode_cert(&self.leaf)
        }

        fn key_pem(&self) -> String {
            key_pem(&self.key.serialize_der())
        }
    }

    fn pems(ders: &[Vec<u8>]) -> String {
        chain_pem(ders)
    }

    fn input<'a>(cert: &'a str, key: &'a str, chain: &'a str) -> ImportInput<'a> {
        ImportInput {
            certificate: Some(cert.as_bytes()),
            private_key: Some(key.as_bytes()),
            chain: Some(chain.as_bytes()).filter(|c| !c.is_empty()),
            ..ImportInput::default()
        }
    }

    fn import(input: &ImportInput<'_>) -> Result<ValidatedBundle, ImportError> {
        validate_import(input, now())
    }

    fn codes(bundle: &ValidatedBundle) -> Vec<&'static str> {
        bundle.warnings.iter().map(|w| w.code).collect()
    }

    fn warning<'a>(bundle: &'a ValidatedBundle, code: &str) -> &'a ImportWarning {
        bundle
            .warnings
            .iter()
            .find(|w| w.code == code)
            .unwrap_or_else(|| panic!("no {code} warning in {:?}", bundle.warnings))
    }

    fn write(dir: &Path, name: &str, contents: impl AsRef<[u8]>) -> String {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path.to_str().unwrap().to_string()
    }

    fn assert_error(err: &ImportError, code: &str, field: &str) {
        assert_eq!(err.code(), code, "{err:?}: {err}");
        assert_eq!(err.field(), field, "{err:?}: {err}");
    }

    /// An openssl key (`genpkey` arguments) and a self-signed certificate
    /// for it, both PEM.
    fn openssl_self_signed(dir: &Path, genpkey: &[&str], name: &str) -> (String, String) {
        let key = dir.join(format!("{name}.key"));
        let key = key.to_str().unwrap();
        let mut args = vec!["genpkey", "-out", key];
        args.extend_from_slice(genpkey);
        openssl(&args);
        let cert = openssl(&[
            "req",
            "-x509",
            "-key",
            key,
            "-subj",
            &format!("/CN={name}.example.com"),
            "-days",
            "30",
        ]);
        (
            String::from_utf8(cert).unwrap(),
            std::fs::read_to_string(key).unwrap(),
        )
    }

    fn rsa(bits: u32) -> Vec<&'static str> {
        let bits: &'static str = Box::leak(format!("rsa_keygen_bits:{bits}").into_boxed_str());
        vec!["-algorithm", "RSA", "-pkeyopt", bits]
    }

    // -- What a successful import gives -----------------------------------

    #[test]
    fn certificate_key_and_chain_import_in_issuing_order_with_the_key_as_pkcs8() {
        let b = Bundle::new(2);
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&b.chain_with_root()));
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        assert_eq!(bundle.certificate_der, b.leaf);
        assert_eq!(bundle.chain_der, b.chain_with_root());
        // The same PKCS#8 form ring and openssl write.
        assert_eq!(bundle.key_pkcs8_der, b.key.serialize_der());
        assert_eq!(bundle.info.common_name.as_deref(), Some("www.example.com"));
        assert_eq!(bundle.info.key_type, "ECDSA P-256");
        assert!(!bundle.expired);
        // A private root: complete, but not one browsers trust.
        assert_eq!(codes(&bundle), [warning::BROWSERS_WOULD_REJECT]);
        let verdict = &bundle.warnings[0].message;
        assert!(verdict.contains("UnknownIssuer"), "{verdict}");
        assert!(verdict.starts_with("browsers would not accept this certificate: "));
        assert!(!format!("{bundle:?}").contains(&hex::encode(&bundle.key_pkcs8_der[..8])));
    }

    #[test]
    fn zero_one_and_two_intermediates_all_link() {
        for n in 0..=2 {
            let b = Bundle::new(n);
            let (cert, key) = (b.cert_pem(), b.key_pem());
            // With the root: complete.
            let chain = pems(&b.chain_with_root());
            let bundle = import(&input(&cert, &key, &chain)).unwrap();
            assert_eq!(bundle.chain_der, b.chain_with_root(), "{n} intermediates");
            assert!(!codes(&bundle).contains(&warning::MISSING_INTERMEDIATES));
            // Without it: the chain stops below a root nobody knows.
            let chain = pems(&b.chain());
            let bundle = import(&input(&cert, &key, &chain)).unwrap();
            assert_eq!(bundle.chain_der, b.chain(), "{n} intermediates");
            let missing = warning(&bundle, warning::MISSING_INTERMEDIATES);
            assert!(
                missing.message.contains("CN=Import Test Root"),
                "{}",
                missing.message
            );
        }
    }

    #[test]
    fn a_chain_given_out_of_order_is_put_in_issuing_order() {
        let b = Bundle::new(2);
        let in_order = b.chain_with_root();
        let shuffled = vec![
            in_order[2].clone(),
            in_order[0].clone(),
            in_order[1].clone(),
        ];
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&shuffled));
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        assert_eq!(bundle.chain_der, in_order);
        assert!(codes(&bundle).contains(&warning::CHAIN_REORDERED));
    }

    #[test]
    fn a_full_chain_is_split_into_the_certificate_and_its_intermediates() {
        let b = Bundle::new(2);
        let fullchain = format!("{}{}", b.cert_pem(), pems(&b.chain()));
        let key = b.key_pem();
        let bundle = import(&ImportInput {
            fullchain: Some(fullchain.as_bytes()),
            private_key: Some(key.as_bytes()),
            ..ImportInput::default()
        })
        .unwrap();
        assert_eq!(bundle.certificate_der, b.leaf);
        assert_eq!(bundle.chain_der, b.chain());

        // The full chain out of order names its certificates as given.
        let b1 = Bundle::new(1);
        let other = root_ca("Someone Else");
        let fullchain = format!(
            "{}{}",
            b1.cert_pem(),
            pems(&[b1.chain()[0].clone(), other.der.clone()])
        );
        let key = b1.key_pem();
        let err = import(&ImportInput {
            fullchain: Some(fullchain.as_bytes()),
            private_key: Some(key.as_bytes()),
            ..ImportInput::default()
        })
        .unwrap_err();
        assert_error(&err, "import_chain_broken", "fullchain");
        assert!(
            err.to_string()
                .starts_with("certificate 3 of the full chain did not issue certificate 2"),
            "{err}"
        );
    }

    #[test]
    fn der_certificate_key_and_chain_are_read_like_pem() {
        let b = Bundle::new(1);
        let key = b.key.serialize_der();
        let chain = b.chain().concat();
        let bundle = import(&ImportInput {
            certificate: Some(&b.leaf),
            private_key: Some(&key),
            chain: Some(&chain),
            ..ImportInput::default()
        })
        .unwrap();
        assert_eq!(bundle.chain_der, b.chain());
        assert_eq!(bundle.key_pkcs8_der, key);
    }

    #[test]
    fn blank_fields_count_as_absent_and_repeats_in_the_chain_are_dropped() {
        let b = Bundle::new(1);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let chain = format!("{}{}{}", pems(&b.chain()), pems(&b.chain()), cert);
        let bundle = import(&ImportInput {
            certificate: Some(cert.as_bytes()),
            fullchain: Some(b"  \n"),
            private_key: Some(key.as_bytes()),
            chain: Some(chain.as_bytes()),
            pkcs12: Some(b""),
            ..ImportInput::default()
        })
        .unwrap();
        assert_eq!(bundle.chain_der, b.chain());
        let dropped = warning(&bundle, warning::CHAIN_DUPLICATES_REMOVED);
        assert!(
            dropped.message.starts_with("2 certificates"),
            "{}",
            dropped.message
        );
    }

    // -- Refusals: the inputs -----------------------------------------------

    #[test]
    fn an_input_over_64_kib_is_refused_naming_its_field() {
        let b = Bundle::new(0);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let big = vec![b'A'; MAX_INPUT + 1];
        let err = import(&ImportInput {
            chain: Some(&big),
            ..input(&cert, &key, "")
        })
        .unwrap_err();
        assert_error(&err, "import_too_large", "chain");
        assert!(err.to_string().contains("65537 bytes"), "{err}");
        let err = import(&ImportInput {
            pkcs12: Some(&big),
            ..ImportInput::default()
        })
        .unwrap_err();
        assert_error(&err, "import_too_large", "pkcs12");
        // Exactly 64 KiB is read (and then found to be no certificate).
        let err = import(&input(std::str::from_utf8(&big[1..]).unwrap(), &key, "")).unwrap_err();
        assert_error(&err, "import_wrong_kind", "certificate");
    }

    #[test]
    fn no_certificate_or_no_key_is_refused() {
        let b = Bundle::new(0);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let err = import(&ImportInput {
            private_key: Some(key.as_bytes()),
            ..ImportInput::default()
        })
        .unwrap_err();
        assert_eq!(err, ImportError::MissingCertificate);
        assert_error(&err, "import_missing_certificate", "certificate");
        let err = import(&ImportInput {
            certificate: Some(cert.as_bytes()),
            private_key: Some(b" \r\n"),
            ..ImportInput::default()
        })
        .unwrap_err();
        assert_eq!(err, ImportError::MissingPrivateKey);
        assert_error(&err, "import_missing_private_key", "private_key");
        let err = import(&ImportInput::default()).unwrap_err();
        assert_eq!(err, ImportError::MissingCertificate);
    }

    #[test]
    fn a_key_a_csr_or_garbage_where_the_certificate_belongs_is_named() {
        let b = Bundle::new(0);
        let key = b.key_pem();
        let csr = pem::encode(&pem::Pem::new(
            "CERTIFICATE REQUEST",
            crate::pki::test_support::rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("a.example"), vec![]),
        ));
        let cases: [(&[u8], &str); 6] = [
            (key.as_bytes(), "holds a private key (PKCS#8), not a certificate; put the private key in the private key field"),
            (csr.as_bytes(), "holds a certificate signing request (CSR), not a certificate; the CSR is what you sent"),
            (b"hello, this is my certificate", "holds text without any -----BEGIN block, not a certificate"),
            (&b.key.serialize_der(), "holds a private key (PKCS#8), not a certificate"),
            (b"MIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnRlc3Qx", "holds base64 without its -----BEGIN and -----END lines"),
            (&[0x30, 0x03, 0x02, 0x01, 0x05], "is not a valid X.509 certificate"),
        ];
        for (bytes, message) in cases {
            let err = import(&ImportInput {
                certificate: Some(bytes),
                private_key: Some(key.as_bytes()),
                ..ImportInput::default()
            })
            .unwrap_err();
            assert_eq!(err.field(), "certificate", "{err}");
            assert!(err.to_string().contains(message), "{err}");
        }
        // The certificate where the key belongs.
        let cert = b.cert_pem();
        let err = import(&input(&cert, &cert, "")).unwrap_err();
        assert_error(&err, "import_wrong_kind", "private_key");
        assert!(
            err.to_string()
                .starts_with("the private key field holds a certificate, not a private key"),
            "{err}"
        );
        // A key pasted along with the certificate.
        let both = format!("{cert}{key}");
        let err = import(&input(&both, &key, "")).unwrap_err();
        assert_error(&err, "import_wrong_kind", "certificate");
        // A key in the chain field.
        let err = import(&input(&cert, &key, &key)).unwrap_err();
        assert_error(&err, "import_wrong_kind", "chain");
        // Broken base64 inside the armor.
        let broken = "-----BEGIN CERTIFICATE-----\n%%%\n-----END CERTIFICATE-----\n";
        let err = import(&input(broken, &key, "")).unwrap_err();
        assert_error(&err, "import_bad_pem", "certificate");
        // A paste cut short: no -----END line.
        let cut = &cert[..cert.len() / 2];
        let err = import(&input(cut, &key, "")).unwrap_err();
        assert_error(&err, "import_bad_pem", "certificate");
        assert!(err.to_string().contains("no -----END line"), "{err}");
        // The same in the chain, after a whole block.
        let chain = format!("{cert}{cut}");
        let err = import(&input(&cert, &key, &chain)).unwrap_err();
        assert_error(&err, "import_bad_pem", "chain");
        assert!(err.to_string().contains("block 2"), "{err}");
    }

    #[test]
    fn several_certificates_in_the_certificate_field_point_to_the_chain_field() {
        let b = Bundle::new(1);
        let cert = format!("{}{}", b.cert_pem(), pems(&b.chain()));
        let key = b.key_pem();
        let err = import(&input(&cert, &key, "")).unwrap_err();
        assert_eq!(err, ImportError::MultipleCertificates { count: 2 });
        assert_error(&err, "import_multiple_certificates", "certificate");
        assert!(
            err.to_string()
                .contains("put the intermediates in the chain field"),
            "{err}"
        );
    }

    #[test]
    fn fields_that_exclude_each_other_are_refused() {
        let b = Bundle::new(0);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let err = import(&ImportInput {
            fullchain: Some(cert.as_bytes()),
            ..input(&cert, &key, "")
        })
        .unwrap_err();
        assert_error(&err, "import_conflicting_fields", "certificate");
        let err = import(&ImportInput {
            pkcs12: Some(b"\x30\x03\x02\x01\x03"),
            ..input(&cert, &key, "")
        })
        .unwrap_err();
        assert_error(&err, "import_conflicting_fields", "pkcs12");
        assert!(
            err.to_string().starts_with("a PKCS#12 file already holds"),
            "{err}"
        );
    }

    // -- Refusals: the key ---------------------------------------------------

    #[test]
    fn a_key_that_is_not_the_certificates_is_refused() {
        let b = Bundle::new(0);
        let cert = b.cert_pem();
        for alg in [
            &PKCS_ECDSA_P256_SHA256,
            &PKCS_ECDSA_P384_SHA384,
            &PKCS_ED25519,
        ] {
            let other = key_pem(&KeyPair::generate_for(alg).unwrap().serialize_der());
            let err = import(&input(&cert, &other, "")).unwrap_err();
            assert_error(&err, "import_key_mismatch", "private_key");
            assert!(
                err.to_string()
                    .contains("the certificate's public key is ECDSA P-256"),
                "{err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let (_, rsa_key) = openssl_self_signed(dir.path(), &rsa(2048), "other");
        let err = import(&input(&cert, &rsa_key, "")).unwrap_err();
        assert!(err.to_string().contains("the key is RSA 2048"), "{err}");
    }

    #[test]
    fn rsa_keys_of_2048_3072_and_4096_bits_import_from_pkcs8_and_pkcs1() {
        let dir = tempfile::tempdir().unwrap();
        for bits in [2048, 3072, 4096] {
            let name = format!("rsa{bits}");
            let (cert, key) = openssl_self_signed(dir.path(), &rsa(bits), &name);
            let key_path = write(dir.path(), &format!("{name}.pem"), &key);
            let pkcs1 =
                String::from_utf8(openssl(&["rsa", "-in", &key_path, "-traditional"])).unwrap();
            assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
            let pkcs8 = pem::parse(&key).unwrap().into_contents();
            for given in [&key, &pkcs1] {
                let bundle = import(&input(&cert, given, "")).unwrap();
                assert_eq!(bundle.info.key_type, format!("RSA {bits}"));
                // Exactly what openssl writes as PKCS#8.
                assert_eq!(bundle.key_pkcs8_der, pkcs8);
                // Self-signed: a root, so nothing is missing.
                assert!(!codes(&bundle).contains(&warning::MISSING_INTERMEDIATES));
            }
        }
    }

    #[test]
    fn an_rsa_key_under_2048_bits_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = openssl_self_signed(dir.path(), &rsa(1024), "small");
        let err = import(&input(&cert, &key, "")).unwrap_err();
        assert_eq!(
            err,
            ImportError::KeyTooSmall {
                field: "certificate",
                bits: 1024
            }
        );
        assert_eq!(err.code(), "import_key_too_small");
    }

    #[test]
    fn a_curve_other_than_p256_or_p384_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = openssl_self_signed(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "p521",
        );
        let err = import(&input(&cert, &key, "")).unwrap_err();
        assert_error(&err, "import_unsupported_key", "certificate");
        assert!(err.to_string().contains("P-521"), "{err}");
    }

    #[test]
    fn sec1_keys_import_with_or_without_their_public_key() {
        let dir = tempfile::tempdir().unwrap();
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ECDSA_P384_SHA384] {
            let b = Bundle::with(0, alg, |_| {});
            let cert = b.cert_pem();
            let pkcs8_path = write(dir.path(), "k.pem", b.key_pem());
            for extra in [&[][..], &["-no_public"][..]] {
                let mut args = vec!["ec", "-in", &pkcs8_path];
                args.extend_from_slice(extra);
                let sec1 = String::from_utf8(openssl(&args)).unwrap();
                assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{sec1}");
                let bundle = import(&input(&cert, &sec1, "")).unwrap();
                assert_eq!(bundle.key_pkcs8_der, b.key.serialize_der(), "{extra:?}");
            }
            // `openssl ecparam -genkey` puts an EC PARAMETERS block first.
            let sec1 = String::from_utf8(openssl(&["ec", "-in", &pkcs8_path])).unwrap();
            let params = pem::encode(&pem::Pem::new("EC PARAMETERS", der::oid(&[1, 2, 3])));
            let with_params = format!("{params}{sec1}");
            assert!(import(&input(&cert, &with_params, "")).is_ok());
        }
        // A SEC1 key without curve or public key takes the certificate's curve.
        let b = Bundle::new(0);
        let info = pkcs8::PrivateKeyInfoRef::try_from(b.key.serialize_der().as_slice())
            .unwrap()
            .private_key
            .as_bytes()
            .to_vec();
        let bare = sec1::EcPrivateKey::try_from(info.as_slice()).unwrap();
        let bare = der::sequence(&[
            &der::tlv(TAG_INTEGER, &[1]),
            &der::tlv(TAG_OCTET_STRING, bare.private_key),
        ]);
        let bare = pem::encode(&pem::Pem::new("EC PRIVATE KEY", bare));
        let bundle = import(&input(&b.cert_pem(), &bare, "")).unwrap();
        assert_eq!(bundle.key_pkcs8_der, b.key.serialize_der());
    }

    #[test]
    fn an_ed25519_key_imports_but_browsers_would_refuse_it() {
        let b = Bundle::with(1, &PKCS_ED25519, |_| {});
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&b.chain()));
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        assert_eq!(bundle.info.key_type, "Ed25519");
        assert_eq!(bundle.key_pkcs8_der.len(), 48);
        assert!(codes(&bundle).contains(&warning::BROWSERS_WOULD_REJECT));
    }

    #[test]
    fn an_encrypted_key_needs_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(0);
        let cert = b.cert_pem();
        let plain = write(dir.path(), "k.pem", b.key_pem());
        let encrypted = String::from_utf8(openssl(&[
            "pkcs8",
            "-topk8",
            "-v2",
            "aes-256-cbc",
            "-in",
            &plain,
            "-passout",
            "pass:s3cret",
        ]))
        .unwrap();
        assert!(encrypted.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        let with_password = |password: Option<&'static str>| ImportInput {
            key_password: password,
            ..input(&cert, &encrypted, "")
        };
        let err = import(&with_password(None)).unwrap_err();
        assert_eq!(err, ImportError::KeyPasswordRequired);
        assert_error(&err, "import_key_password_required", "key_password");
        let err = import(&with_password(Some(""))).unwrap_err();
        assert_eq!(err, ImportError::KeyPasswordRequired);
        for wrong in ["S3cret", "s3cret ", "x"] {
            let err = import(&with_password(Some(wrong))).unwrap_err();
            assert_eq!(err, ImportError::KeyWrongPassword, "{wrong}");
            assert_error(&err, "import_key_wrong_password", "key_password");
        }
        let bundle = import(&with_password(Some("s3cret"))).unwrap();
        assert_eq!(bundle.key_pkcs8_der, b.key.serialize_der());

        // DER, and what older openssl versions wrote: PBES2 with 3DES and a
        // SHA-1 PRF, and PKCS#12's PBE-SHA1-3DES (openssl 1.0's default).
        for args in [
            &["-v2", "des3", "-v2prf", "hmacWithSHA1"][..],
            &["-v1", "PBE-SHA1-3DES"][..],
        ] {
            let mut all = vec!["pkcs8", "-topk8", "-in", &plain, "-passout", "pass:s3cret"];
            all.extend_from_slice(args);
            all.extend_from_slice(&["-outform", "DER"]);
            let der = openssl(&all);
            let with = |password| ImportInput {
                private_key: Some(&der),
                key_password: Some(password),
                ..input(&cert, "", "")
            };
            let bundle = import(&with("s3cret")).unwrap();
            assert_eq!(bundle.key_pkcs8_der, b.key.serialize_der(), "{args:?}");
            let err = import(&with("wrong")).unwrap_err();
            assert_eq!(err, ImportError::KeyWrongPassword, "{args:?}");
        }
    }

    #[test]
    fn an_old_style_encrypted_pem_key_is_refused_with_the_command_to_convert_it() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(0);
        let plain = write(dir.path(), "k.pem", b.key_pem());
        let legacy = String::from_utf8(openssl(&[
            "ec",
            "-in",
            &plain,
            "-aes256",
            "-passout",
            "pass:s3cret",
        ]))
        .unwrap();
        assert!(legacy.contains("Proc-Type: 4,ENCRYPTED"));
        let err = import(&ImportInput {
            key_password: Some("s3cret"),
            ..input(&b.cert_pem(), &legacy, "")
        })
        .unwrap_err();
        assert_eq!(err, ImportError::LegacyEncryptedKey);
        assert_error(&err, "import_key_legacy_encryption", "private_key");
        assert!(err.to_string().contains("openssl pkcs8 -topk8"), "{err}");
    }

    #[test]
    fn a_key_encrypted_with_des_or_too_expensively_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(0);
        let cert = b.cert_pem();
        let plain = write(dir.path(), "k.pem", b.key_pem());
        for args in [
            &["-v1", "PBE-SHA1-2DES"][..],
            &["-v2", "aes-256-cbc", "-iter", "2000000"][..],
        ] {
            let mut all = vec!["pkcs8", "-topk8", "-in", &plain, "-passout", "pass:s3cret"];
            all.extend_from_slice(args);
            let encrypted = String::from_utf8(openssl(&all)).unwrap();
            let err = import(&ImportInput {
                key_password: Some("s3cret"),
                ..input(&cert, &encrypted, "")
            })
            .unwrap_err();
            assert_error(&err, "import_key_encryption_unsupported", "private_key");
            assert!(
                err.to_string()
                    .contains("openssl pkcs8 -topk8 -v2 aes-256-cbc"),
                "{err}"
            );
        }
    }

    #[test]
    fn two_keys_in_the_key_field_are_refused() {
        let b = Bundle::new(0);
        let two = format!("{}{}", b.key_pem(), b.key_pem());
        let err = import(&input(&b.cert_pem(), &two, "")).unwrap_err();
        assert_eq!(
            err,
            ImportError::MultiplePrivateKeys {
                field: "private_key",
                count: 2
            }
        );
    }

    #[test]
    fn an_rsa_key_whose_parts_do_not_fit_together_is_refused() {
        use pkcs1::der::Encode;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = openssl_self_signed(dir.path(), &rsa(2048), "a");
        let (_, other) = openssl_self_signed(dir.path(), &rsa(2048), "b");
        let a = pem::parse(&key).unwrap().into_contents();
        let b = pem::parse(&other).unwrap().into_contents();
        let a_info = pkcs8::PrivateKeyInfoRef::try_from(a.as_slice()).unwrap();
        let b_info = pkcs8::PrivateKeyInfoRef::try_from(b.as_slice()).unwrap();
        let a_rsa = pkcs1::RsaPrivateKeyRef::try_from(a_info.private_key.as_bytes()).unwrap();
        let mut franken = pkcs1::RsaPrivateKeyRef::try_from(b_info.private_key.as_bytes()).unwrap();
        franken.modulus = a_rsa.modulus;
        franken.public_exponent = a_rsa.public_exponent;
        let franken = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", franken.to_der().unwrap()));
        let err = import(&input(&cert, &franken, "")).unwrap_err();
        assert_error(&err, "import_bad_private_key", "private_key");
        assert!(err.to_string().contains("do not fit together"), "{err}");
    }

    // -- Refusals: chain and dates -------------------------------------------

    #[test]
    fn a_chain_that_does_not_link_names_the_certificate_by_position() {
        let b = Bundle::new(1);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let stranger = root_ca("Someone Else");

        // Chain certificate 2 did not issue chain certificate 1.
        let chain = pems(&[b.chain()[0].clone(), stranger.der.clone()]);
        let err = import(&input(&cert, &key, &chain)).unwrap_err();
        assert_error(&err, "import_chain_broken", "chain");
        assert!(
            matches!(err, ImportError::ChainBroken { position: 2, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("chain certificate 2 did not issue chain certificate 1: it is"),
            "{err}"
        );

        // Chain certificate 1 did not issue the certificate.
        let chain = pems(std::slice::from_ref(&stranger.der));
        let err = import(&input(&cert, &key, &chain)).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("chain certificate 1 did not issue the certificate"),
            "{err}"
        );

        // Same name, other key: the name matches, the signature does not.
        let impostor = sub_ca("Import Test Intermediate 1", &b.root);
        let chain = pems(std::slice::from_ref(&impostor.der));
        let err = import(&input(&cert, &key, &chain)).unwrap_err();
        assert!(
            matches!(err, ImportError::ChainBroken { position: 1, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("its key did not sign it"), "{err}");
    }

    #[test]
    fn an_expired_certificate_is_refused_unless_allowed() {
        let b = Bundle::new(1);
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&b.chain()));
        let later = now() + Duration::days(91);
        let err = validate_import(&input(&cert, &key, &chain), later).unwrap_err();
        assert_error(&err, "import_certificate_expired", "certificate");
        assert!(
            err.to_string().starts_with("the certificate expired on "),
            "{err}"
        );
        assert!(
            err.to_string()
                .ends_with(" UTC; renew it, or import it with \"allow expired\" to keep it anyway"),
            "{err}"
        );

        let allowed = ImportInput {
            allow_expired: true,
            ..input(&cert, &key, &chain)
        };
        let bundle = validate_import(&allowed, later).unwrap();
        assert!(bundle.expired);
        assert!(codes(&bundle).contains(&warning::EXPIRED));
        let verdict = warning(&bundle, warning::BROWSERS_WOULD_REJECT);
        assert!(
            verdict.message.contains("CertExpired"),
            "{}",
            verdict.message
        );
    }

    // -- Warnings ------------------------------------------------------------

    #[test]
    fn a_certificate_not_valid_yet_is_stored_with_a_warning() {
        let b = Bundle::new(0);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let earlier = now() - Duration::hours(2);
        let bundle = validate_import(&input(&cert, &key, ""), earlier).unwrap();
        let w = warning(&bundle, warning::NOT_YET_VALID);
        assert!(
            w.message
                .starts_with("the certificate is not valid before "),
            "{}",
            w.message
        );
        assert!(!bundle.expired);
    }

    /// A CA (RSA, self-signed by openssl) and a leaf it signs with the given
    /// `openssl x509 -req` arguments; leaf and chain PEM, key PEM.
    fn openssl_issued(dir: &Path, x509_args: &[&str]) -> (String, String, String) {
        let (ca_cert, ca_key) = openssl_self_signed(dir, &rsa(2048), "ca");
        let ca_cert_path = write(dir, "ca.pem", &ca_cert);
        let ca_key_path = write(dir, "ca-key.pem", &ca_key);
        let (_, leaf_key) = openssl_self_signed(dir, &rsa(2048), "leaf");
        let leaf_key_path = write(dir, "leaf-key.pem", &leaf_key);
        let csr_path = dir.join("leaf.csr");
        let csr_path = csr_path.to_str().unwrap();
        openssl(&[
            "req",
            "-new",
            "-key",
            &leaf_key_path,
            "-subj",
            "/CN=old.example.com",
            "-out",
            csr_path,
        ]);
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            csr_path,
            "-CA",
            &ca_cert_path,
            "-CAkey",
            &ca_key_path,
            "-days",
            "30",
        ];
        args.extend_from_slice(x509_args);
        let leaf = String::from_utf8(openssl(&args)).unwrap();
        (leaf, ca_cert, leaf_key)
    }

    #[test]
    fn sha1_signatures_are_stored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let ext = write(
            dir.path(),
            "ext.cnf",
            "subjectAltName=DNS:old.example.com\n",
        );
        let (leaf, chain, key) = openssl_issued(dir.path(), &["-sha1", "-extfile", &ext]);
        let bundle = import(&input(&leaf, &key, &chain)).unwrap();
        let w = warning(&bundle, warning::SHA1_SIGNATURE);
        // The self-signed root's own SHA-256 signature does not count anyway.
        assert_eq!(
            w.message,
            "signed with SHA-1, which browsers no longer accept: the certificate"
        );
        assert!(!codes(&bundle).contains(&warning::V1_CERTIFICATE));
        let verdict = warning(&bundle, warning::BROWSERS_WOULD_REJECT);
        assert!(
            verdict.message.contains("UnknownIssuer")
                || verdict.message.contains("SignatureAlgorithm"),
            "{}",
            verdict.message
        );
    }

    #[test]
    fn a_version_1_certificate_is_stored_with_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, chain, key) = openssl_issued(dir.path(), &["-sha256"]);
        let bundle = import(&input(&leaf, &key, &chain)).unwrap();
        let w = warning(&bundle, warning::V1_CERTIFICATE);
        assert!(
            w.message
                .starts_with("the certificate is an X.509 version 1"),
            "{}",
            w.message
        );
        assert!(!codes(&bundle).contains(&warning::SHA1_SIGNATURE));
    }

    #[test]
    fn an_unknown_critical_extension_is_stored_with_a_warning() {
        let b = Bundle::with(1, &PKCS_ECDSA_P256_SHA256, |params| {
            let mut ext =
                CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![5, 0]);
            ext.set_criticality(true);
            params.custom_extensions.push(ext);
        });
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&b.chain_with_root()));
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        let w = warning(&bundle, warning::UNKNOWN_CRITICAL_EXTENSION);
        assert!(w.message.contains("1.3.6.1.4.1.55555.1"), "{}", w.message);
    }

    #[test]
    fn an_expired_intermediate_is_stored_with_a_warning() {
        let root = root_ca("Import Test Root");
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = ca_params("Old Intermediate");
        params.not_before = now() - Duration::days(400);
        params.not_after = now() - Duration::days(1);
        let der = sign(&params, &key, &root);
        let int = Ca { params, key, der };
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = sign(&leaf_params("www.example.com"), &leaf_key, &int);
        let (cert, key) = (pem_encode_cert(&leaf), key_pem(&leaf_key.serialize_der()));
        let chain = pems(&[int.der.clone(), root.der.clone()]);
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        let w = warning(&bundle, warning::CHAIN_CERTIFICATE_EXPIRED);
        assert!(
            w.message.starts_with(
                "chain certificate 1 (\"O=Import Test, CN=Old Intermediate\") expired on "
            ),
            "{}",
            w.message
        );
        assert!(!bundle.expired);
    }

    #[test]
    fn a_signature_that_cannot_be_checked_links_by_name_with_a_warning() {
        // A P-521 CA: ring verifies no P-521 signature.
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = openssl_self_signed(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "p521-ca",
        );
        let ca_cert_path = write(dir.path(), "ca.pem", &ca_cert);
        let ca_key_path = write(dir.path(), "ca-key.pem", &ca_key);
        let b = Bundle::new(0);
        let key_path = write(dir.path(), "leaf-key.pem", b.key_pem());
        let csr = dir.path().join("leaf.csr");
        let csr = csr.to_str().unwrap();
        openssl(&[
            "req",
            "-new",
            "-key",
            &key_path,
            "-subj",
            "/CN=www.example.com",
            "-out",
            csr,
        ]);
        let ext = write(
            dir.path(),
            "ext.cnf",
            "subjectAltName=DNS:www.example.com\n",
        );
        let leaf = String::from_utf8(openssl(&[
            "x509",
            "-req",
            "-in",
            csr,
            "-CA",
            &ca_cert_path,
            "-CAkey",
            &ca_key_path,
            "-days",
            "30",
            "-sha512",
            "-extfile",
            &ext,
        ]))
        .unwrap();
        let bundle = import(&input(&leaf, &b.key_pem(), &ca_cert)).unwrap();
        let w = warning(&bundle, warning::SIGNATURE_NOT_CHECKED);
        assert_eq!(
            w.message,
            "chain certificate 1 was taken as the issuer of the certificate by its name alone: \
             the signature (ecdsa-with-SHA512) cannot be checked here"
        );
        assert!(!codes(&bundle).contains(&warning::MISSING_INTERMEDIATES));
    }

    #[test]
    fn browsers_verdict_comes_from_webpki_against_the_roots_it_is_given() {
        let b = Bundle::new(1);
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&b.chain()));
        let root = CertificateDer::from(b.root.der.as_slice());
        let anchors = [webpki::anchor_from_trusted_cert(&root).unwrap()];
        // With our root trusted: complete, and browsers would accept it.
        let bundle = validate_with_roots(&input(&cert, &key, &chain), now(), &anchors).unwrap();
        assert_eq!(codes(&bundle), Vec::<&str>::new());
        // With the Mozilla roots: nothing links to them.
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        assert_eq!(
            codes(&bundle),
            [
                warning::MISSING_INTERMEDIATES,
                warning::BROWSERS_WOULD_REJECT
            ]
        );
        // A CA certificate imported as the certificate: webpki says why.
        let int = &b.intermediates[0];
        let int_cert = pem_encode_cert(&int.der);
        let int_key = key_pem(&int.key.serialize_der());
        let bundle = validate_with_roots(&input(&int_cert, &int_key, ""), now(), &anchors).unwrap();
        let verdict = warning(&bundle, warning::BROWSERS_WOULD_REJECT);
        assert!(
            verdict.message.contains("CaUsedAsEndEntity"),
            "{}",
            verdict.message
        );
        assert!(bundle.info.is_ca);
    }

    #[test]
    fn the_mozilla_roots_are_recognized_as_issuers() {
        // Every root of webpki-roots is found by its own subject; a root's
        // self-signature is checked against its own key.
        let mut found = 0;
        for path in std::fs::read_dir("/etc/ssl/certs")
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(text) = std::fs::read(path.path()) else {
                continue;
            };
            let Ok(block) = pem::parse(&text) else {
                continue;
            };
            let Ok((_, cert)) = X509Certificate::from_der(block.contents()) else {
                continue;
            };
            if is_self_signed(&cert) && issued_by_known_root(&cert, webpki_roots::TLS_SERVER_ROOTS)
            {
                found += 1;
            }
        }
        // Debian's ca-certificates and webpki-roots are both Mozilla's list.
        if std::path::Path::new("/etc/ssl/certs").exists() {
            assert!(found > 50, "only {found} system roots matched webpki-roots");
        }
    }

    // -- PKCS#12 -------------------------------------------------------------

    fn openssl_pkcs12(dir: &Path, b: &Bundle, extra: &[&str], password: &str) -> Vec<u8> {
        let cert = write(dir, "leaf.pem", b.cert_pem());
        let key = write(dir, "key.pem", b.key_pem());
        let chain = write(dir, "chain.pem", pems(&b.chain_with_root()));
        let out = dir.join("out.p12");
        let out = out.to_str().unwrap();
        let pass = format!("pass:{password}");
        let mut args = vec![
            "pkcs12",
            "-export",
            "-in",
            &cert,
            "-inkey",
            &key,
            "-certfile",
            &chain,
            "-passout",
            &pass,
            "-out",
            out,
        ];
        args.extend_from_slice(extra);
        openssl(&args);
        std::fs::read(out).unwrap()
    }

    fn p12_input<'a>(p12: &'a [u8], password: Option<&'a str>) -> ImportInput<'a> {
        ImportInput {
            pkcs12: Some(p12),
            pkcs12_password: password,
            ..ImportInput::default()
        }
    }

    #[test]
    fn a_pkcs12_file_from_openssl_imports_with_its_chain() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(2);
        for extra in [&[][..], &["-legacy"]] {
            let p12 = openssl_pkcs12(dir.path(), &b, extra, "p12-pass");
            let bundle = import(&p12_input(&p12, Some("p12-pass"))).unwrap();
            assert_eq!(bundle.certificate_der, b.leaf, "{extra:?}");
            assert_eq!(bundle.chain_der, b.chain_with_root(), "{extra:?}");
            assert_eq!(bundle.key_pkcs8_der, b.key.serialize_der(), "{extra:?}");
        }
    }

    #[test]
    fn a_pkcs12_file_with_a_wrong_or_missing_password_or_damaged_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(1);
        let p12 = openssl_pkcs12(dir.path(), &b, &[], "p12-pass");
        let err = import(&p12_input(&p12, Some("wrong"))).unwrap_err();
        assert_eq!(err, ImportError::Pkcs12WrongPassword);
        assert_error(&err, "import_pkcs12_wrong_password", "pkcs12_password");
        let err = import(&p12_input(&p12, None)).unwrap_err();
        assert_eq!(err, ImportError::Pkcs12PasswordRequired);
        assert_error(&err, "import_pkcs12_password_required", "pkcs12_password");

        let mut truncated = p12.clone();
        truncated.truncate(p12.len() / 2);
        let err = import(&p12_input(&truncated, Some("p12-pass"))).unwrap_err();
        assert_error(&err, "import_pkcs12_damaged", "pkcs12");
        let err = import(&p12_input(b"not a pkcs12 file", Some("p12-pass"))).unwrap_err();
        assert_error(&err, "import_pkcs12_damaged", "pkcs12");

        // A file without a password opens without one.
        let open = openssl_pkcs12(dir.path(), &b, &[], "");
        assert!(import(&p12_input(&open, None)).is_ok());
    }

    #[test]
    fn a_pkcs12_file_without_its_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(1);
        let cert = write(dir.path(), "leaf.pem", b.cert_pem());
        let p12 = openssl(&[
            "pkcs12", "-export", "-nokeys", "-in", &cert, "-passout", "pass:x",
        ]);
        let err = import(&p12_input(&p12, Some("x"))).unwrap_err();
        assert_eq!(err, ImportError::Pkcs12NoPrivateKey);
        assert_error(&err, "import_pkcs12_no_private_key", "pkcs12");
    }

    #[test]
    fn a_pkcs12_file_without_a_certificate_or_with_another_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(1);
        let key = write(dir.path(), "key.pem", b.key_pem());
        let p12 = openssl(&[
            "pkcs12", "-export", "-nocerts", "-inkey", &key, "-passout", "pass:x",
        ]);
        let err = import(&p12_input(&p12, Some("x"))).unwrap_err();
        assert_eq!(err, ImportError::Pkcs12NoCertificate);
        assert_error(&err, "import_pkcs12_no_certificate", "pkcs12");

        let other = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let p12 = export_pkcs12(&b.leaf, &b.chain(), &other.serialize_der(), "x", "").unwrap();
        let err = import(&p12_input(&p12, Some("x"))).unwrap_err();
        assert_error(&err, "import_key_mismatch", "pkcs12");
    }

    #[test]
    fn exported_pkcs12_opens_in_openssl_with_the_same_certificate_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let b = Bundle::new(2);
        let (cert, key, chain) = (b.cert_pem(), b.key_pem(), pems(&b.chain_with_root()));
        let bundle = import(&input(&cert, &key, &chain)).unwrap();
        let p12 = export_pkcs12(
            &bundle.certificate_der,
            &bundle.chain_der,
            &bundle.key_pkcs8_der,
            "export pass é",
            "www.example.com \u{1F512}",
        )
        .unwrap();
        let path = write(dir.path(), "out.p12", &p12);
        let out = openssl(&[
            "pkcs12",
            "-in",
            &path,
            "-passin",
            "pass:export pass é",
            "-nodes",
        ]);
        let blocks = pem::parse_many(&out).unwrap();
        let certs: Vec<Vec<u8>> = blocks
            .iter()
            .filter(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.contents().to_vec())
            .collect();
        assert_eq!(certs[0], bundle.certificate_der);
        let mut rest = certs[1..].to_vec();
        let mut expected = bundle.chain_der.clone();
        rest.sort();
        expected.sort();
        assert_eq!(rest, expected);
        let keys: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() == "PRIVATE KEY").collect();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].contents(), bundle.key_pkcs8_der.as_slice());
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("friendlyName: www.example.com"), "{text}");

        // Modern algorithms only (openssl prints -info on stderr).
        let out = std::process::Command::new("openssl")
            .args([
                "pkcs12",
                "-in",
                &path,
                "-passin",
                "pass:export pass é",
                "-info",
                "-noout",
            ])
            .output()
            .unwrap();
        let info = String::from_utf8_lossy(&out.stderr);
        assert!(info.contains("MAC: sha256"), "{info}");
        assert!(info.contains("PBES2, PBKDF2, AES-256-CBC"), "{info}");
        assert!(info.contains("hmacWithSHA256"), "{info}");
        assert!(!info.contains("RC2") && !info.contains("3DES"), "{info}");

        // And the desk reads its own file back.
        let again = import(&p12_input(&p12, Some("export pass é"))).unwrap();
        assert_eq!(again.certificate_der, bundle.certificate_der);
        assert_eq!(again.chain_der, bundle.chain_der);
        assert_eq!(again.key_pkcs8_der, bundle.key_pkcs8_der);
    }

    // -- Output helpers and the API's view -----------------------------------

    #[test]
    fn key_pem_and_chain_pem_are_plain_pem_blocks() {
        let b = Bundle::new(2);
        let key = key_pem(&b.key.serialize_der());
        assert!(key.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(key.ends_with("-----END PRIVATE KEY-----\n"));
        assert_eq!(pem::parse(&key).unwrap().contents(), b.key.serialize_der());
        let chain = chain_pem(&b.chain());
        assert_eq!(
            crate::pki::cert::parse_pem_certs(&chain).unwrap(),
            b.chain()
        );
        assert_eq!(chain_pem(&[]), "");
    }

    #[test]
    fn warnings_serialize_as_code_and_message() {
        let w = ImportWarning {
            code: warning::MISSING_INTERMEDIATES,
            message: "add them".into(),
        };
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!({"code": "missing_intermediates", "message": "add them"})
        );
    }

    #[test]
    fn every_error_has_a_field_and_a_code_of_its_own() {
        let all = [
            ImportError::TooLarge {
                field: "chain",
                size: 1,
            },
            ImportError::WrongKind {
                field: "certificate",
                expected: "",
                found: String::new(),
                hint: String::new(),
            },
            ImportError::BadPem {
                field: "certificate",
                reason: String::new(),
            },
            ImportError::BadCertificate {
                field: "chain",
                which: String::new(),
                reason: String::new(),
            },
            ImportError::MultipleCertificates { count: 2 },
            ImportError::MultiplePrivateKeys {
                field: "private_key",
                count: 2,
            },
            ImportError::ConflictingFields {
                field: "certificate",
                other: "fullchain",
            },
            ImportError::MissingCertificate,
            ImportError::MissingPrivateKey,
            ImportError::KeyPasswordRequired,
            ImportError::KeyWrongPassword,
            ImportError::KeyEncryptionUnsupported {
                algorithm: String::new(),
            },
            ImportError::LegacyEncryptedKey,
            ImportError::BadPrivateKey {
                field: "private_key",
                reason: String::new(),
            },
            ImportError::KeyMismatch {
                field: "private_key",
                key: String::new(),
                certificate: String::new(),
            },
            ImportError::KeyTooSmall {
                field: "certificate",
                bits: 1024,
            },
            ImportError::UnsupportedKey {
                field: "certificate",
                key: String::new(),
            },
            ImportError::ChainBroken {
                field: "chain",
                position: 1,
                certificate: String::new(),
                issued: String::new(),
                reason: String::new(),
            },
            ImportError::Expired {
                field: "certificate",
                not_after: now(),
            },
            ImportError::Pkcs12PasswordRequired,
            ImportError::Pkcs12WrongPassword,
            ImportError::Pkcs12Damaged {
                reason: String::new(),
            },
            ImportError::Pkcs12Unsupported {
                reason: String::new(),
            },
            ImportError::Pkcs12NoPrivateKey,
            ImportError::Pkcs12NoCertificate,
            ImportError::Export {
                reason: String::new(),
            },
        ];
        let fields = [
            "certificate",
            "fullchain",
            "private_key",
            "key_password",
            "chain",
            "pkcs12",
            "pkcs12_password",
        ];
        let mut codes: Vec<&str> = all.iter().map(ImportError::code).collect();
        for e in &all {
            assert!(fields.contains(&e.field()), "{e:?}");
            assert!(!e.to_string().is_empty());
        }
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }

    #[test]
    fn the_input_debug_output_hides_keys_and_passwords() {
        let b = Bundle::new(0);
        let (cert, key) = (b.cert_pem(), b.key_pem());
        let shown = format!(
            "{:?}",
            ImportInput {
                key_password: Some("hunter2"),
                ..input(&cert, &key, "")
            }
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("PRIVATE"),
            "{shown}"
        );
    }
}
