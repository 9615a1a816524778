//! Parse, verify and check a customer's certificate signing request.
//!
//! Everything here goes through x509-parser, never rcgen's CSR parser: rcgen
//! copies `CA:TRUE` from the request and guesses the key type from the
//! signature algorithm (see DESIGN.md). The checks run in an order that gives
//! the most useful message: the key is judged before the signature, because
//! ring cannot verify a signature made with a key it refuses (a 1024-bit RSA
//! key would otherwise be reported as "signature does not verify").

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::error::X509Error;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid2sn, oid_registry};
use x509_parser::oid_registry::{
    Oid, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::domain::dns::{DnsName, DnsNameError};

/// The most names one certificate may carry unless the policy says otherwise.
pub const DEFAULT_MAX_NAMES: usize = 100;
/// Smallest RSA modulus accepted (CA/Browser Forum BR 6.1.5).
pub const MIN_RSA_BITS: u32 = 2048;
/// Largest RSA modulus accepted: ring verifies nothing larger, and no browser
/// needs more.
pub const MAX_RSA_BITS: u32 = 8192;

/// What the desk accepts in a CSR beyond the fixed rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CsrPolicy {
    /// Ed25519 keys work with few TLS clients, so they are off by default.
    pub allow_ed25519: bool,
    pub max_names: usize,
}

impl Default for CsrPolicy {
    fn default() -> Self {
        CsrPolicy {
            allow_ed25519: false,
            max_names: DEFAULT_MAX_NAMES,
        }
    }
}

/// The kind of public key in a CSR or certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Rsa { bits: u32 },
    EcP256,
    EcP384,
    Ed25519,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyType::Rsa { bits } => write!(f, "RSA {bits}"),
            KeyType::EcP256 => f.write_str("ECDSA P-256"),
            KeyType::EcP384 => f.write_str("ECDSA P-384"),
            KeyType::Ed25519 => f.write_str("Ed25519"),
        }
    }
}

impl FromStr for KeyType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ECDSA P-256" => Ok(KeyType::EcP256),
            "ECDSA P-384" => Ok(KeyType::EcP384),
            "Ed25519" => Ok(KeyType::Ed25519),
            _ => s
                .strip_prefix("RSA ")
                .and_then(|bits| bits.parse().ok())
                .map(|bits| KeyType::Rsa { bits })
                .ok_or_else(|| format!("unknown key type {s:?}")),
        }
    }
}

impl Serialize for KeyType {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KeyType {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A CSR that parsed, verified and passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedCsr {
    pub common_name: Option<String>,
    /// subjectAltName dNSNames plus the common name when it is a DNS name;
    /// the common name first, no duplicates, otherwise in CSR order.
    pub names: Vec<DnsName>,
    pub key_type: KeyType,
    /// The subject, e.g. `CN=www.example.com, O=Example`.
    pub subject: String,
    /// The whole SubjectPublicKeyInfo, as the CSR holds it.
    pub spki_der: Vec<u8>,
    /// e.g. `ecdsa-with-SHA256`, or the dotted OID when it has no name.
    pub signature_algorithm: String,
    /// The CSR in DER.
    pub der: Vec<u8>,
}

/// Why a CSR was refused. The messages are shown to the customer as the
/// error of the `csr` field; [`CsrError::code`] gives a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrError {
    #[error(
        "the CSR is not readable PEM ({reason}); paste the whole block from \
         -----BEGIN CERTIFICATE REQUEST----- to -----END CERTIFICATE REQUEST-----"
    )]
    BadPem { reason: String },
    #[error("this is not a certificate signing request: {reason}")]
    NotACsr { reason: String },
    #[error(
        "the CSR's signature does not verify; generate the CSR again with its own private key"
    )]
    BadSignature,
    #[error(
        "the CSR is signed with {algorithm}, which the desk cannot check; \
         sign it with SHA-256 (e.g. openssl req -sha256)"
    )]
    UnsupportedSignatureAlgorithm { algorithm: String },
    #[error("the CSR's RSA key is {bits} bits; at least 2048 bits are required")]
    RsaTooSmall { bits: u32 },
    #[error("the CSR's RSA key is {bits} bits; at most 8192 bits are accepted")]
    RsaTooLarge { bits: u32 },
    #[error("the CSR's RSA key is {bits} bits, which is not a multiple of 8; use 2048, 3072 or 4096 bits")]
    RsaBitsNotMultipleOf8 { bits: u32 },
    #[error(
        "the CSR's RSA public exponent is {e}; it must be odd, at least 65537 and below 2^256 \
         (generate the key again with the default exponent 65537)"
    )]
    RsaBadExponent { e: String },
    #[error("the CSR's key uses the elliptic curve {curve}; only P-256 and P-384 are accepted")]
    UnsupportedCurve { curve: String },
    #[error(
        "the CSR's key is Ed25519, which this desk does not issue; use ECDSA P-256 or RSA 2048"
    )]
    Ed25519NotAllowed,
    #[error("the CSR's key algorithm {oid} is not supported; use ECDSA P-256, P-384 or RSA")]
    UnsupportedKeyAlgorithm { oid: String },
    #[error("the CSR names {name}, which cannot be issued: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("the CSR asks for the IP address {ip}; IP addresses are not allowed; only DNS names can be ordered")]
    IpAddressNotAllowed { ip: String },
    #[error(
        "the CSR names {name}, whose wildcard is not allowed: a wildcard must be the whole \
         leftmost label and sit below a registrable domain, as in *.example.com"
    )]
    BadWildcard { name: String },
    #[error("the CSR names {count} domains; at most {max} are allowed on one certificate")]
    TooManyNames { count: usize, max: usize },
    #[error("the CSR names no domain: put the domain in the subjectAltName or the common name")]
    NoNames,
    #[error("the CSR asks for CA:TRUE; only end-entity certificates are issued")]
    RequestsCa,
    #[error("the CSR's {extension} extension is malformed; generate the CSR again")]
    MalformedExtension { extension: String },
}

impl CsrError {
    /// A stable, machine-readable code for the API.
    pub fn code(&self) -> &'static str {
        match self {
            CsrError::BadPem { .. } => "csr_bad_pem",
            CsrError::NotACsr { .. } => "csr_not_a_csr",
            CsrError::BadSignature => "csr_bad_signature",
            CsrError::UnsupportedSignatureAlgorithm { .. } => "csr_unsupported_signature_algorithm",
            CsrError::RsaTooSmall { .. } => "csr_rsa_too_small",
            CsrError::RsaTooLarge { .. } => "csr_rsa_too_large",
            CsrError::RsaBitsNotMultipleOf8 { .. } => "csr_rsa_bits_not_multiple_of_8",
            CsrError::RsaBadExponent { .. } => "csr_rsa_bad_exponent",
            CsrError::UnsupportedCurve { .. } => "csr_unsupported_curve",
            CsrError::Ed25519NotAllowed => "csr_ed25519_not_allowed",
            CsrError::UnsupportedKeyAlgorithm { .. } => "csr_unsupported_key_algorithm",
            CsrError::InvalidName { .. } => "csr_invalid_name",
            CsrError::IpAddressNotAllowed { .. } => "csr_ip_address_not_allowed",
            CsrError::BadWildcard { .. } => "csr_bad_wildcard",
            CsrError::TooManyNames { .. } => "csr_too_many_names",
            CsrError::NoNames => "csr_no_names",
            CsrError::RequestsCa => "csr_requests_ca",
            CsrError::MalformedExtension { .. } => "csr_malformed_extension",
        }
    }
}

/// Parses a CSR (PEM or DER), verifies its signature and checks it against
/// the desk's rules.
pub fn decode_csr(input: &[u8], policy: &CsrPolicy) -> Result<DecodedCsr, CsrError> {
    let der = to_der(input)?;
    let (rest, csr) = X509CertificationRequest::from_der(&der).map_err(|e| CsrError::NotACsr {
        reason: format!("the data does not parse as a PKCS#10 request ({e})"),
    })?;
    if !rest.is_empty() {
        return Err(CsrError::NotACsr {
            reason: format!("{} bytes of extra data follow the request", rest.len()),
        });
    }
    let info = &csr.certification_request_info;

    let key_type = classify_key(&info.subject_pki)?;
    if key_type == KeyType::Ed25519 && !policy.allow_ed25519 {
        return Err(CsrError::Ed25519NotAllowed);
    }
    let signature_algorithm = oid_name(&csr.signature_algorithm.algorithm);
    verified_signatures::check(csr.as_raw(), || csr.verify_signature()).map_err(|e| match e {
        X509Error::SignatureUnsupportedAlgorithm => CsrError::UnsupportedSignatureAlgorithm {
            algorithm: signature_algorithm.clone(),
        },
        _ => CsrError::BadSignature,
    })?;

    let requested = requested_names(&csr)?;

    let common_name = match info.subject.iter_common_name().next() {
        None => None,
        Some(attr) => Some(
            attr.as_str()
                .map_err(|_| CsrError::InvalidName {
                    name: "(the common name)".into(),
                    reason: "the common name is not a readable text string".into(),
                })?
                .to_owned(),
        ),
    };

    let mut names: Vec<DnsName> = Vec::new();
    if let Some(cn) = common_name.as_deref() {
        if let Some(name) = common_name_as_dns(cn)? {
            names.push(name);
        }
    }
    for name in requested {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    if names.is_empty() {
        return Err(CsrError::NoNames);
    }
    if names.len() > policy.max_names {
        return Err(CsrError::TooManyNames {
            count: names.len(),
            max: policy.max_names,
        });
    }

    Ok(DecodedCsr {
        common_name,
        names,
        key_type,
        subject: info.subject.to_string(),
        spki_der: info.subject_pki.raw.to_vec(),
        signature_algorithm,
        der: csr.as_raw().to_vec(),
    })
}

/// The signatures this process has found valid, by the SHA-256 of the whole
/// request. Each CSR is decoded twice on its way: by the desk when the order
/// is placed, and again by the built-in CA before it signs (the CA takes
/// nothing on the desk's word). Whether a signature verifies depends on the
/// request's bytes alone, so a verdict remembered for the same bytes is the
/// verdict the check would give: the second decode still parses the bytes
/// and applies its own policy, and skips only the public-key operation (a
/// twentieth of the desk's CPU per certificate, docs/PERFORMANCE.md). Bytes
/// changed in between (in the database, say) hash differently and are
/// verified afresh. Only successes are remembered, and only the latest
/// `GENERATION` to `2 × GENERATION` of them (32 bytes each).
mod verified_signatures {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use sha2::{Digest, Sha256};

    const GENERATION: usize = 4096;

    #[derive(Default)]
    struct Seen {
        current: HashSet<[u8; 32]>,
        previous: HashSet<[u8; 32]>,
    }

    static SEEN: Mutex<Option<Seen>> = Mutex::new(None);

    /// `verify`'s verdict on the request `der`, run only when these bytes
    /// have not verified before.
    pub(super) fn check<E>(der: &[u8], verify: impl FnOnce() -> Result<(), E>) -> Result<(), E> {
        let digest: [u8; 32] = Sha256::digest(der).into();
        let known = |seen: &Seen| seen.current.contains(&digest) || seen.previous.contains(&digest);
        if lock().as_ref().is_some_and(known) {
            return Ok(());
        }
        verify()?;
        let mut guard = lock();
        let seen = guard.get_or_insert_with(Seen::default);
        if seen.current.len() >= GENERATION {
            seen.previous = std::mem::take(&mut seen.current);
        }
        seen.current.insert(digest);
        Ok(())
    }

    fn lock() -> std::sync::MutexGuard<'static, Option<Seen>> {
        // A panic while holding it leaves a set that is still sound.
        SEEN.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[cfg(test)]
    pub(super) fn remembers(der: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(der).into();
        lock()
            .as_ref()
            .is_some_and(|s| s.current.contains(&digest) || s.previous.contains(&digest))
    }
}

const CSR_LABELS: [&str; 2] = ["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"];

/// DER as is (it starts with a SEQUENCE tag); anything else is read as PEM.
fn to_der(input: &[u8]) -> Result<Vec<u8>, CsrError> {
    if input.first() == Some(&0x30) {
        return Ok(input.to_vec());
    }
    let blocks = pem::parse_many(input).map_err(|e| CsrError::BadPem {
        reason: e.to_string(),
    })?;
    if blocks.iter().any(|b| b.tag().contains("PRIVATE KEY")) {
        return Err(CsrError::NotACsr {
            reason: "the text contains a private key; send only the CSR and keep the \
                     private key to yourself"
                .into(),
        });
    }
    let mut csrs = blocks.iter().filter(|b| CSR_LABELS.contains(&b.tag()));
    match (csrs.next(), csrs.next(), blocks.first()) {
        (Some(block), None, _) => Ok(block.contents().to_vec()),
        (Some(_), Some(_), _) => Err(CsrError::NotACsr {
            reason: "the text holds more than one CSR; send one at a time".into(),
        }),
        (None, _, Some(other)) => Err(CsrError::NotACsr {
            reason: format!(
                "the PEM block is a {}, not a CERTIFICATE REQUEST",
                other.tag()
            ),
        }),
        (None, _, None) => Err(CsrError::BadPem {
            reason: "no -----BEGIN CERTIFICATE REQUEST----- line found".into(),
        }),
    }
}

/// Judges a public key against the desk's key rules.
///
/// Shared with the signer (which must never sign a key the desk refuses) and
/// with certificate inspection (which describes keys the desk would refuse).
pub(crate) fn classify_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, CsrError> {
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_PKCS1_RSAENCRYPTION {
        let malformed = || CsrError::NotACsr {
            reason: "the RSA public key is malformed".into(),
        };
        let Ok(PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err(malformed());
        };
        let modulus = positive_integer(rsa.modulus).ok_or_else(malformed)?;
        let exponent = positive_integer(rsa.exponent).ok_or_else(malformed)?;
        let bits = bit_length(modulus);
        if bits < u64::from(MIN_RSA_BITS) {
            return Err(CsrError::RsaTooSmall { bits: bits as u32 });
        }
        if bits > u64::from(MAX_RSA_BITS) {
            return Err(CsrError::RsaTooLarge {
                bits: u32::try_from(bits).unwrap_or(u32::MAX),
            });
        }
        let bits = bits as u32;
        if bits % 8 != 0 {
            return Err(CsrError::RsaBitsNotMultipleOf8 { bits });
        }
        check_rsa_exponent(exponent)?;
        Ok(KeyType::Rsa { bits })
    } else if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        let Some(curve) = curve else {
            return Err(CsrError::UnsupportedCurve {
                curve: "explicit curve parameters".into(),
            });
        };
        let (key_type, point_len) = match curve.to_id_string().as_str() {
            "1.2.840.10045.3.1.7" => (KeyType::EcP256, 65),
            "1.3.132.0.34" => (KeyType::EcP384, 97),
            other => {
                return Err(CsrError::UnsupportedCurve {
                    curve: curve_name(other),
                })
            }
        };
        // ring only takes uncompressed points; say so rather than let the
        // signature check fail with a misleading message.
        let point = &spki.subject_public_key.data;
        if point.len() != point_len || point.first() != Some(&0x04) {
            return Err(CsrError::NotACsr {
                reason: "the elliptic-curve public key is not an uncompressed point".into(),
            });
        }
        Ok(key_type)
    } else if *alg == OID_SIG_ED25519 {
        if spki.subject_public_key.data.len() != 32 {
            return Err(CsrError::NotACsr {
                reason: "the Ed25519 public key is not 32 bytes".into(),
            });
        }
        Ok(KeyType::Ed25519)
    } else {
        Err(CsrError::UnsupportedKeyAlgorithm {
            oid: oid_name_with_id(alg),
        })
    }
}

/// The size of an RSA key's modulus in bits, if the key is RSA and readable.
pub(crate) fn rsa_modulus_bits(spki: &SubjectPublicKeyInfo<'_>) -> Option<u64> {
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => positive_integer(rsa.modulus).map(bit_length),
        _ => None,
    }
}

/// The magnitude bytes of a DER INTEGER that must be positive, without
/// leading zeros; `None` for a negative or zero value.
fn positive_integer(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        return None;
    }
    let start = bytes.iter().position(|&b| b != 0)?;
    Some(&bytes[start..])
}

fn bit_length(magnitude: &[u8]) -> u64 {
    match magnitude.first() {
        None => 0,
        Some(first) => magnitude.len() as u64 * 8 - u64::from(first.leading_zeros()),
    }
}

fn check_rsa_exponent(e: &[u8]) -> Result<(), CsrError> {
    let odd = e.last().is_some_and(|b| b & 1 == 1);
    let below_2_256 = bit_length(e) <= 256;
    let at_least_65537 = bit_length(e) > 17 || (bit_length(e) == 17 && be_u64(e) >= 65537);
    if odd && below_2_256 && at_least_65537 {
        return Ok(());
    }
    let shown = if e.len() <= 8 {
        be_u64(e).to_string()
    } else {
        format!("0x{}", hex::encode(e))
    };
    Err(CsrError::RsaBadExponent { e: shown })
}

fn be_u64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

fn curve_name(oid: &str) -> String {
    let name = match oid {
        "1.3.132.0.35" => "P-521",
        "1.3.132.0.10" => "secp256k1",
        "1.2.840.10045.3.1.1" => "P-192",
        "1.3.132.0.33" => "P-224",
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1",
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1",
        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1",
        _ => return oid.to_owned(),
    };
    format!("{name} ({oid})")
}

fn oid_name(oid: &Oid<'_>) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn oid_name_with_id(oid: &Oid<'_>) -> String {
    match oid2sn(oid, oid_registry()) {
        Ok(name) => format!("{name} ({})", oid.to_id_string()),
        Err(_) => oid.to_id_string(),
    }
}

/// The subjectAltName entries of the extension request, and the refusal of
/// `CA:TRUE`. Any name that is not a DNS name is refused.
fn requested_names(csr: &X509CertificationRequest<'_>) -> Result<Vec<DnsName>, CsrError> {
    let mut names = Vec::new();
    let extensions = csr
        .certification_request_info
        .iter_attributes()
        .filter_map(|attr| match attr.parsed_attribute() {
            ParsedCriAttribute::ExtensionRequest(req) => Some(req.extensions.iter()),
            _ => None,
        })
        .flatten();
    for ext in extensions {
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) if bc.ca => return Err(CsrError::RequestsCa),
            ParsedExtension::SubjectAlternativeName(san) => {
                for general_name in &san.general_names {
                    names.push(san_to_dns(general_name)?);
                }
            }
            ParsedExtension::ParseError { .. } if ext.oid == OID_X509_EXT_SUBJECT_ALT_NAME => {
                return Err(CsrError::MalformedExtension {
                    extension: "subjectAltName".into(),
                })
            }
            ParsedExtension::ParseError { .. } if ext.oid == OID_X509_EXT_BASIC_CONSTRAINTS => {
                return Err(CsrError::MalformedExtension {
                    extension: "basicConstraints".into(),
                })
            }
            // Other requested extensions (key usage, EKU, …) are ignored: the
            // desk sets the certificate profile itself.
            _ => {}
        }
    }
    Ok(names)
}

fn san_to_dns(general_name: &GeneralName<'_>) -> Result<DnsName, CsrError> {
    let only_dns = "only DNS names are issued".to_owned();
    match general_name {
        GeneralName::DNSName(s) => DnsName::parse(s).map_err(|e| dns_error(s, e)),
        GeneralName::IPAddress(bytes) => Err(CsrError::IpAddressNotAllowed {
            ip: ip_to_string(bytes),
        }),
        GeneralName::RFC822Name(email) => Err(CsrError::InvalidName {
            name: format!("the email address {email}"),
            reason: only_dns,
        }),
        GeneralName::URI(uri) => Err(CsrError::InvalidName {
            name: format!("the URI {uri}"),
            reason: only_dns,
        }),
        GeneralName::DirectoryName(dn) => Err(CsrError::InvalidName {
            name: format!("the directory name {dn}"),
            reason: only_dns,
        }),
        GeneralName::OtherName(oid, _) => Err(CsrError::InvalidName {
            name: format!("an otherName ({})", oid.to_id_string()),
            reason: only_dns,
        }),
        GeneralName::RegisteredID(oid) => Err(CsrError::InvalidName {
            name: format!("a registeredID ({})", oid.to_id_string()),
            reason: only_dns,
        }),
        GeneralName::X400Address(_) | GeneralName::EDIPartyName(_) => Err(CsrError::InvalidName {
            name: "an X.400 or EDI party name".into(),
            reason: only_dns,
        }),
        GeneralName::Invalid(_, _) => Err(CsrError::InvalidName {
            name: "an unreadable subjectAltName entry".into(),
            reason: "the entry is not valid text".into(),
        }),
    }
}

fn ip_to_string(bytes: &[u8]) -> String {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ipv4Addr::from(v4).to_string()
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ipv6Addr::from(v6).to_string()
    } else {
        format!("0x{}", hex::encode(bytes))
    }
}

/// A common name counts as a requested domain when it looks like one (has a
/// dot and no space); a CN such as "Example Web Server" is only a label and
/// is ignored. An IP address in the CN is always refused.
fn common_name_as_dns(cn: &str) -> Result<Option<DnsName>, CsrError> {
    if cn.parse::<IpAddr>().is_ok() {
        return Err(CsrError::IpAddressNotAllowed { ip: cn.to_owned() });
    }
    if !cn.contains('.') || cn.contains(char::is_whitespace) {
        return Ok(None);
    }
    DnsName::parse(cn).map(Some).map_err(|e| dns_error(cn, e))
}

fn dns_error(name: &str, error: DnsNameError) -> CsrError {
    match error {
        DnsNameError::IpAddress { .. } => CsrError::IpAddressNotAllowed {
            ip: name.to_owned(),
        },
        DnsNameError::BadWildcard { .. } | DnsNameError::WildcardOnPublicSuffix { .. } => {
            CsrError::BadWildcard {
                name: name.to_owned(),
            }
        }
        other => CsrError::InvalidName {
            name: name.to_owned(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::test_support::{dns, openssl, openssl_csr, rcgen_csr, rcgen_csr_with};
    use rcgen::{
        BasicConstraints, IsCa, SanType, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384,
        PKCS_ED25519,
    };

    fn decode(der: &[u8]) -> Result<DecodedCsr, CsrError> {
        decode_csr(der, &CsrPolicy::default())
    }

    fn to_pem(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der))
    }

    fn rsa(bits: &str) -> [String; 4] {
        [
            "-algorithm".into(),
            "RSA".into(),
            "-pkeyopt".into(),
            format!("rsa_keygen_bits:{bits}"),
        ]
    }

    fn strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }

    const SUBJ: [&str; 2] = ["-subj", "/CN=x.example.com"];

    #[test]
    fn p256_csr_in_pem_decodes_with_cn_first_and_names_deduplicated() {
        let der = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            Some("www.example.com"),
            vec![
                dns("example.com"),
                dns("WWW.example.com"),
                dns("*.shop.example.com"),
            ],
        );
        let csr = decode_csr(to_pem(&der).as_bytes(), &CsrPolicy::default()).unwrap();
        let names: Vec<&str> = csr.names.iter().map(DnsName::as_str).collect();
        assert_eq!(
            names,
            ["www.example.com", "example.com", "*.shop.example.com"]
        );
        assert_eq!(csr.common_name.as_deref(), Some("www.example.com"));
        assert_eq!(csr.key_type, KeyType::EcP256);
        assert_eq!(csr.key_type.to_string(), "ECDSA P-256");
        assert_eq!(csr.subject, "CN=www.example.com");
        assert_eq!(csr.signature_algorithm, "ecdsa-with-SHA256");
        assert_eq!(csr.der, der);
        let (_, spki) = SubjectPublicKeyInfo::from_der(&csr.spki_der).unwrap();
        assert_eq!(classify_key(&spki), Ok(KeyType::EcP256));
    }

    #[test]
    fn new_certificate_request_label_and_raw_der_are_accepted() {
        let der = rcgen_csr(&PKCS_ECDSA_P384_SHA384, None, vec![dns("example.com")]);
        let pem = pem::encode(&pem::Pem::new("NEW CERTIFICATE REQUEST", der.clone()));
        assert_eq!(decode(pem.as_bytes()).unwrap().key_type, KeyType::EcP384);
        let csr = decode(&der).unwrap();
        assert_eq!(csr.key_type.to_string(), "ECDSA P-384");
        assert_eq!(csr.common_name, None);
        assert_eq!(csr.subject, "");
    }

    #[test]
    fn a_descriptive_common_name_is_not_taken_as_a_domain() {
        let der = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            Some("Example Web Server"),
            vec![dns("example.com")],
        );
        let csr = decode(&der).unwrap();
        assert_eq!(csr.common_name.as_deref(), Some("Example Web Server"));
        assert_eq!(csr.names, [DnsName::parse("example.com").unwrap()]);
    }

    #[test]
    fn text_that_is_not_pem_is_refused_as_bad_pem() {
        for input in [
            &b"hello"[..],
            b"",
            b"-----BEGIN CERTIFICATE REQUEST-----\n!!!not base64!!!\n-----END CERTIFICATE REQUEST-----\n",
        ] {
            let err = decode(input).unwrap_err();
            assert_eq!(err.code(), "csr_bad_pem", "{input:?}: {err}");
            assert!(err.to_string().contains("BEGIN CERTIFICATE REQUEST"), "{err}");
        }
    }

    #[test]
    fn other_pem_blocks_garbage_der_and_trailing_bytes_are_not_a_csr() {
        let cert = pem::encode(&pem::Pem::new("CERTIFICATE", vec![0x30, 0x00]));
        let err = decode(cert.as_bytes()).unwrap_err();
        assert_eq!(err.code(), "csr_not_a_csr");
        assert!(
            err.to_string()
                .contains("CERTIFICATE, not a CERTIFICATE REQUEST"),
            "{err}"
        );

        let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, None, vec![dns("example.com")]);
        let with_key = format!(
            "{}{}",
            to_pem(&der),
            pem::encode(&pem::Pem::new("PRIVATE KEY", vec![1, 2, 3]))
        );
        let err = decode(with_key.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");

        let two = format!("{}{}", to_pem(&der), to_pem(&der));
        assert!(decode(two.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("more than one CSR"));

        assert_eq!(
            decode(&[0x30, 0x03, 1, 2, 3]).unwrap_err().code(),
            "csr_not_a_csr"
        );

        let mut trailing = der.clone();
        trailing.extend_from_slice(b"junk");
        let err = decode(&trailing).unwrap_err();
        assert_eq!(err.code(), "csr_not_a_csr");
        assert!(err.to_string().contains("4 bytes of extra data"), "{err}");
    }

    /// `der` with the first letter of its common name `cn` changed to `y`,
    /// the signature left as it was.
    fn tampered(der: &[u8], cn: &str) -> Vec<u8> {
        let at = der
            .windows(cn.len())
            .position(|w| w == cn.as_bytes())
            .expect("CN in DER");
        let mut tampered = der.to_vec();
        tampered[at] = b'y';
        tampered
    }

    #[test]
    fn a_tampered_csr_is_refused_because_its_signature_does_not_verify() {
        let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("x.example.com"), vec![]);
        let tampered = tampered(&der, "x.example.com");
        assert_eq!(decode(&tampered), Err(CsrError::BadSignature));
        assert_eq!(
            CsrError::BadSignature.to_string(),
            "the CSR's signature does not verify; generate the CSR again with its own private key"
        );
    }

    #[test]
    fn a_tampered_copy_of_a_csr_that_verified_is_still_refused() {
        let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("z.example.com"), vec![]);
        assert!(!verified_signatures::remembers(&der));
        let first = decode(&der).unwrap();
        assert!(verified_signatures::remembers(&der));
        assert_eq!(
            decode(&der).unwrap(),
            first,
            "the second decode, as the CA's, gives the same answer"
        );
        let tampered = tampered(&der, "z.example.com");
        assert_eq!(decode(&tampered), Err(CsrError::BadSignature));
        assert!(!verified_signatures::remembers(&tampered));
    }

    #[test]
    fn rsa_2048_csr_from_openssl_decodes_as_rsa_2048() {
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(
            dir.path(),
            &strs(&rsa("2048")),
            &[
                "-subj",
                "/CN=www.example.com/O=Example",
                "-addext",
                "subjectAltName=DNS:example.com,DNS:www.example.com",
            ],
        );
        let csr = decode(&der).unwrap();
        assert_eq!(csr.key_type, KeyType::Rsa { bits: 2048 });
        assert_eq!(csr.key_type.to_string(), "RSA 2048");
        assert_eq!(csr.signature_algorithm, "sha256WithRSAEncryption");
        assert_eq!(csr.subject, "CN=www.example.com, O=Example");
        let names: Vec<&str> = csr.names.iter().map(DnsName::as_str).collect();
        assert_eq!(names, ["www.example.com", "example.com"]);
    }

    #[test]
    fn rsa_key_under_2048_bits_is_refused_naming_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(dir.path(), &strs(&rsa("1024")), &SUBJ);
        let err = decode(&der).unwrap_err();
        assert_eq!(err, CsrError::RsaTooSmall { bits: 1024 });
        assert_eq!(err.code(), "csr_rsa_too_small");
        assert!(err.to_string().contains("1024 bits"), "{err}");
    }

    #[test]
    fn rsa_key_whose_size_is_not_a_multiple_of_8_is_refused() {
        // OpenSSL 3 makes a 2049-bit request into a 2048-bit key (two primes
        // of 1024 bits), so 2050 bits stands in for an odd size here.
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(dir.path(), &strs(&rsa("2050")), &SUBJ);
        let err = decode(&der).unwrap_err();
        assert_eq!(err, CsrError::RsaBitsNotMultipleOf8 { bits: 2050 });
        assert!(err.to_string().contains("2050 bits"), "{err}");
    }

    #[test]
    fn rsa_exponent_3_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let rsa2048 = rsa("2048");
        let mut args = strs(&rsa2048);
        args.extend(["-pkeyopt", "rsa_keygen_pubexp:3"]);
        let der = openssl_csr(dir.path(), &args, &SUBJ);
        let err = decode(&der).unwrap_err();
        assert_eq!(err, CsrError::RsaBadExponent { e: "3".into() });
        assert!(err.to_string().contains("exponent is 3"), "{err}");
    }

    #[test]
    fn rsa_exponent_rules_cover_even_small_and_huge_values() {
        assert!(check_rsa_exponent(&[0x01, 0x00, 0x01]).is_ok());
        assert!(check_rsa_exponent(&[0x01, 0x00, 0x03]).is_ok());
        assert!(check_rsa_exponent(&[0xff; 32]).is_ok());
        for bad in [
            &[0x03][..],
            &[0x01, 0x00, 0x00],
            &[0x01, 0x00, 0x02],
            &[0xff, 0xff],
        ] {
            assert!(check_rsa_exponent(bad).is_err(), "{bad:?}");
        }
        let mut huge = vec![0x01];
        huge.extend([0u8; 31]);
        huge.push(0x01);
        assert!(check_rsa_exponent(&huge).is_err(), "2^256 + 1 is too large");
    }

    #[test]
    fn curves_other_than_p256_and_p384_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (curve, shown) in [
            ("P-521", "P-521 (1.3.132.0.35)"),
            ("secp256k1", "secp256k1 (1.3.132.0.10)"),
            ("brainpoolP256r1", "brainpoolP256r1 (1.3.36.3.3.2.8.1.1.7)"),
        ] {
            let pkeyopt = format!("ec_paramgen_curve:{curve}");
            let der = openssl_csr(
                dir.path(),
                &["-algorithm", "EC", "-pkeyopt", &pkeyopt],
                &SUBJ,
            );
            let err = decode(&der).unwrap_err();
            assert_eq!(
                err,
                CsrError::UnsupportedCurve {
                    curve: shown.into()
                }
            );
            assert!(err.to_string().contains(shown), "{err}");
        }
    }

    #[test]
    fn ed25519_is_refused_unless_the_policy_allows_it() {
        let der = rcgen_csr(&PKCS_ED25519, None, vec![dns("example.com")]);
        assert_eq!(decode(&der), Err(CsrError::Ed25519NotAllowed));
        let policy = CsrPolicy {
            allow_ed25519: true,
            ..CsrPolicy::default()
        };
        let csr = decode_csr(&der, &policy).unwrap();
        assert_eq!(csr.key_type, KeyType::Ed25519);
        assert_eq!(csr.signature_algorithm, "ed25519");
    }

    #[test]
    fn other_key_algorithms_are_refused_naming_the_algorithm() {
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(dir.path(), &["-algorithm", "ED448"], &SUBJ);
        let err = decode(&der).unwrap_err();
        assert_eq!(err.code(), "csr_unsupported_key_algorithm");
        assert!(err.to_string().contains("1.3.101.113"), "{err}");
    }

    #[test]
    fn p256_key_signed_with_sha384_decodes_as_p256() {
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["-subj", "/CN=x.example.com", "-sha384"],
        );
        let csr = decode(&der).unwrap();
        assert_eq!(csr.signature_algorithm, "ecdsa-with-SHA384");
        assert_eq!(csr.key_type, KeyType::EcP256);
    }

    #[test]
    fn a_signature_hash_the_desk_cannot_check_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["-subj", "/CN=x.example.com", "-sha512"],
        );
        let err = decode(&der).unwrap_err();
        assert_eq!(
            err,
            CsrError::UnsupportedSignatureAlgorithm {
                algorithm: "ecdsa-with-SHA512".into()
            }
        );
    }

    #[test]
    fn ip_addresses_are_refused_in_the_san_and_in_the_common_name() {
        let der = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![
                dns("example.com"),
                SanType::IpAddress("192.0.2.7".parse().unwrap()),
            ],
        );
        let err = decode(&der).unwrap_err();
        assert_eq!(
            err,
            CsrError::IpAddressNotAllowed {
                ip: "192.0.2.7".into()
            }
        );
        assert!(
            err.to_string().contains("only DNS names can be ordered"),
            "{err}"
        );

        let v6 = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![SanType::IpAddress("2001:db8::1".parse().unwrap())],
        );
        assert_eq!(
            decode(&v6),
            Err(CsrError::IpAddressNotAllowed {
                ip: "2001:db8::1".into()
            })
        );

        let cn = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            Some("192.0.2.7"),
            vec![dns("example.com")],
        );
        assert_eq!(
            decode(&cn),
            Err(CsrError::IpAddressNotAllowed {
                ip: "192.0.2.7".into()
            })
        );

        let dns_ip = rcgen_csr(&PKCS_ECDSA_P256_SHA256, None, vec![dns("10.0.0.1")]);
        assert_eq!(
            decode(&dns_ip),
            Err(CsrError::IpAddressNotAllowed {
                ip: "10.0.0.1".into()
            })
        );
    }

    #[test]
    fn email_and_uri_sans_are_refused_because_only_dns_names_are_issued() {
        let email = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![
                dns("example.com"),
                SanType::Rfc822Name("admin@example.com".try_into().unwrap()),
            ],
        );
        let err = decode(&email).unwrap_err();
        assert_eq!(err.code(), "csr_invalid_name");
        assert!(err.to_string().contains("admin@example.com"), "{err}");
        assert!(
            err.to_string().contains("only DNS names are issued"),
            "{err}"
        );

        let uri = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![SanType::URI("https://example.com/".try_into().unwrap())],
        );
        let err = decode(&uri).unwrap_err();
        assert!(
            err.to_string().contains("the URI https://example.com/"),
            "{err}"
        );
    }

    #[test]
    fn invalid_dns_names_are_refused_with_the_reason() {
        let der = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![dns("bad_name.example.com")],
        );
        let err = decode(&der).unwrap_err();
        assert_eq!(err.code(), "csr_invalid_name");
        assert!(
            err.to_string()
                .starts_with("the CSR names bad_name.example.com"),
            "{err}"
        );
        assert!(err.to_string().contains("'_'"), "{err}");

        let cn = rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("www..example.com"), vec![]);
        assert_eq!(decode(&cn).unwrap_err().code(), "csr_invalid_name");
    }

    #[test]
    fn misplaced_wildcards_are_refused() {
        for name in [
            "www.*.example.com",
            "w*.example.com",
            "*.*.example.com",
            "*.com",
            "*.co.uk",
        ] {
            let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, None, vec![dns(name)]);
            assert_eq!(
                decode(&der),
                Err(CsrError::BadWildcard { name: name.into() }),
                "{name}"
            );
        }
        let cn = rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("*.com"), vec![]);
        assert_eq!(
            decode(&cn),
            Err(CsrError::BadWildcard {
                name: "*.com".into()
            })
        );
    }

    #[test]
    fn more_than_100_names_are_refused_but_100_are_fine() {
        let sans = |n: usize| {
            (0..n)
                .map(|i| dns(&format!("host{i}.example.com")))
                .collect()
        };
        let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, None, sans(100));
        assert_eq!(decode(&der).unwrap().names.len(), 100);
        let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, None, sans(101));
        let err = decode(&der).unwrap_err();
        assert_eq!(
            err,
            CsrError::TooManyNames {
                count: 101,
                max: 100
            }
        );
        assert_eq!(
            err.to_string(),
            "the CSR names 101 domains; at most 100 are allowed on one certificate"
        );
    }

    #[test]
    fn a_csr_without_any_domain_is_refused() {
        let der = rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("Example Web Server"), vec![]);
        let err = decode(&der).unwrap_err();
        assert_eq!(err, CsrError::NoNames);
        assert_eq!(
            err.to_string(),
            "the CSR names no domain: put the domain in the subjectAltName or the common name"
        );
    }

    #[test]
    fn a_csr_asking_for_ca_true_is_refused() {
        let der = rcgen_csr_with(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![dns("example.com")],
            |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            },
        );
        let err = decode(&der).unwrap_err();
        assert_eq!(err, CsrError::RequestsCa);
        assert_eq!(
            err.to_string(),
            "the CSR asks for CA:TRUE; only end-entity certificates are issued"
        );

        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &[
                "-subj",
                "/CN=x.example.com",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
            ],
        );
        assert_eq!(decode(&der), Err(CsrError::RequestsCa));

        // CA:FALSE is harmless.
        let der = rcgen_csr_with(
            &PKCS_ECDSA_P256_SHA256,
            None,
            vec![dns("example.com")],
            |p| {
                p.is_ca = IsCa::ExplicitNoCa;
            },
        );
        assert!(decode(&der).is_ok());
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        let all = [
            CsrError::BadPem {
                reason: String::new(),
            },
            CsrError::NotACsr {
                reason: String::new(),
            },
            CsrError::BadSignature,
            CsrError::UnsupportedSignatureAlgorithm {
                algorithm: String::new(),
            },
            CsrError::RsaTooSmall { bits: 0 },
            CsrError::RsaTooLarge { bits: 0 },
            CsrError::RsaBitsNotMultipleOf8 { bits: 0 },
            CsrError::RsaBadExponent { e: String::new() },
            CsrError::UnsupportedCurve {
                curve: String::new(),
            },
            CsrError::Ed25519NotAllowed,
            CsrError::UnsupportedKeyAlgorithm { oid: String::new() },
            CsrError::InvalidName {
                name: String::new(),
                reason: String::new(),
            },
            CsrError::IpAddressNotAllowed { ip: String::new() },
            CsrError::BadWildcard {
                name: String::new(),
            },
            CsrError::TooManyNames { count: 0, max: 0 },
            CsrError::NoNames,
            CsrError::RequestsCa,
            CsrError::MalformedExtension {
                extension: String::new(),
            },
        ];
        let codes: std::collections::HashSet<&str> = all.iter().map(CsrError::code).collect();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("csr_")));
    }

    #[test]
    fn key_types_serialize_as_their_display_string() {
        for kt in [
            KeyType::Rsa { bits: 3072 },
            KeyType::EcP256,
            KeyType::EcP384,
            KeyType::Ed25519,
        ] {
            let json = serde_json::to_string(&kt).unwrap();
            assert_eq!(json, format!("\"{kt}\""));
            assert_eq!(serde_json::from_str::<KeyType>(&json).unwrap(), kt);
        }
    }

    #[test]
    fn openssl_reads_the_same_key_the_desk_reports() {
        // Guards the test helpers themselves: openssl agrees on the key size.
        let dir = tempfile::tempdir().unwrap();
        let der = openssl_csr(dir.path(), &strs(&rsa("3072")), &SUBJ);
        let path = dir.path().join("csr.der");
        std::fs::write(&path, &der).unwrap();
        let text = openssl(&[
            "req",
            "-inform",
            "DER",
            "-in",
            path.to_str().unwrap(),
            "-noout",
            "-text",
        ]);
        assert!(String::from_utf8_lossy(&text).contains("Public-Key: (3072 bit)"));
        assert_eq!(decode(&der).unwrap().key_type, KeyType::Rsa { bits: 3072 });
    }
}
