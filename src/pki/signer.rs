//! The built-in CA's keys and its leaf-certificate signer.
//!
//! The leaf is built from parameters the desk sets itself and the CSR's
//! SubjectPublicKeyInfo only; nothing else from the customer's CSR reaches
//! rcgen (DESIGN.md, "the rcgen trap").

use std::fmt;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    CustomExtension, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
    SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PKCS_RSA_SHA256,
};
use time::{Duration, OffsetDateTime};
use x509_parser::asn1_rs::Tag;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;
use x509_parser::x509::{SubjectPublicKeyInfo, X509Name};

use super::csr::{classify_key, KeyType};
use super::der;
use crate::domain::dns::DnsName;

/// id-pe-authorityInfoAccess (RFC 5280 §4.2.2.1).
const OID_AUTHORITY_INFO_ACCESS: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 1, 1];
/// id-ad-caIssuers.
const OID_CA_ISSUERS: [u64; 9] = [1, 3, 6, 1, 5, 5, 7, 48, 2];
/// certificatePolicies, and the CA/Browser Forum's domain-validated policy.
const OID_CERTIFICATE_POLICIES: [u64; 4] = [2, 5, 29, 32];
const OID_CABF_DOMAIN_VALIDATED: [u64; 6] = [2, 23, 140, 1, 2, 1];
/// X.520 ub-common-name.
const MAX_CN_LEN: usize = 64;
const ROOT_CN_SUFFIX: &str = " Root CA";
const INTERMEDIATE_CN_SUFFIX: &str = " Issuing CA";
/// The longest organization name whose CA common names still fit in 64 characters.
pub const MAX_ORG_NAME_LEN: usize = MAX_CN_LEN - INTERMEDIATE_CN_SUFFIX.len();
const ROOT_VALIDITY: Duration = Duration::days(3653);
const INTERMEDIATE_VALIDITY: Duration = Duration::days(1827);
/// CA certificates start an hour in the past, so a relying party whose clock
/// runs a little behind does not see them as not yet valid.
const BACKDATE: Duration = Duration::hours(1);

/// A CA certificate and its private key (PKCS#8 DER).
#[derive(Clone, PartialEq, Eq)]
pub struct CaKeyMaterial {
    pub cert_der: Vec<u8>,
    pub key_pkcs8_der: Vec<u8>,
}

impl fmt::Debug for CaKeyMaterial {
    // Never print the private key, even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CaKeyMaterial")
            .field("cert_der", &format_args!("[{} bytes]", self.cert_der.len()))
            .field("key_pkcs8_der", &"[elided]")
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignerError {
    #[error("the organization name {reason}")]
    BadOrgName { reason: String },
    #[error("the issuing CA certificate cannot be used: {reason}")]
    BadIntermediate { reason: String },
    #[error("the issuing CA's private key cannot be read: {reason}")]
    BadPrivateKey { reason: String },
    #[error("the issuing CA's private key does not belong to its certificate")]
    KeyMismatch,
    #[error("the public key to certify cannot be used: {reason}")]
    UnsupportedPublicKey { reason: String },
    #[error("a certificate needs at least one name")]
    NoNames,
    #[error("the certificate's end of validity must come after its start")]
    BadValidity,
    #[error(
        "the certificate would be valid until {not_after}, after the issuing CA expires \
         ({issuer_not_after}); shorten the validity or renew the CA"
    )]
    ValidityBeyondIssuer {
        not_after: OffsetDateTime,
        issuer_not_after: OffsetDateTime,
    },
    #[error("the CA Issuers URL {url:?} must be an absolute http:// or https:// URL in plain ASCII without spaces")]
    BadCaIssuersUrl { url: String },
    #[error("the certificate could not be signed: {reason}")]
    Signing { reason: String },
}

fn signing_error(e: rcgen::Error) -> SignerError {
    SignerError::Signing {
        reason: e.to_string(),
    }
}

/// Creates a new root (self-signed, 10 years) and an issuing intermediate
/// (5 years, signed by the root), both ECDSA P-256.
pub fn generate_ca(org_name: &str) -> Result<(CaKeyMaterial, CaKeyMaterial), SignerError> {
    let org = org_name.trim();
    if org.is_empty() {
        return Err(SignerError::BadOrgName {
            reason: "is empty".into(),
        });
    }
    if org.chars().count() > MAX_ORG_NAME_LEN {
        return Err(SignerError::BadOrgName {
            reason: format!("is longer than {MAX_ORG_NAME_LEN} characters"),
        });
    }
    if org.chars().any(char::is_control) {
        return Err(SignerError::BadOrgName {
            reason: "contains a control character".into(),
        });
    }
    let now = OffsetDateTime::now_utc();

    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing_error)?;
    let mut root = CertificateParams::default();
    root.distinguished_name = ca_name(org, ROOT_CN_SUFFIX);
    root.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    root.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    root.not_before = now - BACKDATE;
    root.not_after = now + ROOT_VALIDITY;
    root.serial_number = Some(random_serial());
    let root_cert = root.self_signed(&root_key).map_err(signing_error)?;

    let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(signing_error)?;
    let mut int = CertificateParams::default();
    int.distinguished_name = ca_name(org, INTERMEDIATE_CN_SUFFIX);
    int.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    int.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    int.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    int.use_authority_key_identifier_extension = true;
    int.not_before = now - BACKDATE;
    int.not_after = now + INTERMEDIATE_VALIDITY;
    int.serial_number = Some(random_serial());
    let root_issuer = Issuer::from_params(&root, &root_key);
    let int_cert = int
        .signed_by(&int_key, &root_issuer)
        .map_err(signing_error)?;

    Ok((
        CaKeyMaterial {
            cert_der: root_cert.der().to_vec(),
            key_pkcs8_der: root_key.serialize_der(),
        },
        CaKeyMaterial {
            cert_der: int_cert.der().to_vec(),
            key_pkcs8_der: int_key.serialize_der(),
        },
    ))
}

fn ca_name(org: &str, cn_suffix: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, org);
    dn.push(DnType::CommonName, format!("{org}{cn_suffix}"));
    dn
}

/// 16 random bytes, top bit clear (so the INTEGER stays positive in 16
/// bytes) and first byte non-zero (so no encoder shortens it): 127 bits of
/// randomness, well above the Baseline Requirements' 64.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    let mut rng = rand::thread_rng();
    loop {
        rng.fill_bytes(&mut bytes);
        bytes[0] &= 0x7f;
        if bytes[0] != 0 {
            return SerialNumber::from_slice(&bytes);
        }
    }
}

/// What to certify: the customer's key and the names the desk validated.
#[derive(Debug, Clone, Copy)]
pub struct LeafRequest<'a> {
    /// The CSR's SubjectPublicKeyInfo ([`super::csr::DecodedCsr::spki_der`]).
    pub spki_der: &'a [u8],
    /// Every name goes into subjectAltName; the first that fits is the CN.
    pub names: &'a [DnsName],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Where relying parties can fetch the issuing CA certificate (AIA).
    pub ca_issuers_url: &'a str,
    /// Where the issuing CA publishes its CRL (cRLDistributionPoints).
    pub crl_url: &'a str,
}

/// Signs leaf certificates with the issuing intermediate's key.
#[derive(Debug)]
pub struct Signer {
    issuer: Issuer<'static, KeyPair>,
    issuer_not_after: OffsetDateTime,
    /// The intermediate's subjectKeyIdentifier, for the CRL's AKI.
    issuer_ski: Vec<u8>,
}

impl Signer {
    /// Loads the issuing intermediate.
    ///
    /// rcgen's `Issuer::from_ca_cert_der` needs rcgen's own x509-parser
    /// feature, so the issuer is rebuilt from the certificate's subject and
    /// subjectKeyIdentifier; a test signature then proves the rebuilt issuer
    /// name matches the certificate byte for byte, which chain building needs.
    pub fn new(intermediate: &CaKeyMaterial) -> Result<Signer, SignerError> {
        let bad = |reason: &str| SignerError::BadIntermediate {
            reason: reason.to_owned(),
        };
        let (rest, cert) = X509Certificate::from_der(&intermediate.cert_der)
            .map_err(|e| bad(&format!("it does not parse ({e})")))?;
        if !rest.is_empty() {
            return Err(bad("extra data follows the certificate"));
        }
        if !matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca) {
            return Err(bad(
                "it is not a CA certificate (no basicConstraints CA:TRUE)",
            ));
        }
        let ski = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
            .ok_or_else(|| bad("it has no subjectKeyIdentifier"))?;

        let key_pair = KeyPair::try_from(intermediate.key_pkcs8_der.as_slice()).map_err(|e| {
            SignerError::BadPrivateKey {
                reason: e.to_string(),
            }
        })?;
        if key_pair.subject_public_key_info() != cert.public_key().raw {
            return Err(SignerError::KeyMismatch);
        }

        let mut params = CertificateParams::default();
        params.distinguished_name = rebuild_name(cert.subject()).map_err(|r| bad(&r))?;
        params.key_identifier_method = KeyIdMethod::PreSpecified(ski.clone());
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let signer = Signer {
            issuer: Issuer::new(params, key_pair),
            issuer_not_after: cert.validity().not_after.to_datetime(),
            issuer_ski: ski,
        };

        let mut probe = CertificateParams::default();
        probe.distinguished_name = DistinguishedName::new();
        let probe = probe
            .signed_by(signer.issuer.key(), &signer.issuer)
            .map_err(signing_error)?;
        let (_, probe) = X509Certificate::from_der(probe.der())
            .map_err(|e| bad(&format!("a test certificate does not parse ({e})")))?;
        if probe.issuer().as_raw() != cert.subject().as_raw() {
            return Err(bad("its subject name cannot be reproduced exactly"));
        }
        Ok(signer)
    }

    /// Signs a leaf (end-entity, TLS server) certificate and returns its DER.
    pub fn sign_leaf(&self, req: &LeafRequest<'_>) -> Result<Vec<u8>, SignerError> {
        if req.names.is_empty() {
            return Err(SignerError::NoNames);
        }
        if req.not_after <= req.not_before {
            return Err(SignerError::BadValidity);
        }
        if req.not_after > self.issuer_not_after {
            return Err(SignerError::ValidityBeyondIssuer {
                not_after: req.not_after,
                issuer_not_after: self.issuer_not_after,
            });
        }
        let aia = ca_issuers_extension(req.ca_issuers_url)?;
        check_http_url(req.crl_url)?;
        let key = CsrPublicKey::from_spki(req.spki_der)?;

        let mut params = CertificateParams::default();
        params.not_before = req.not_before;
        params.not_after = req.not_after;
        params.serial_number = Some(random_serial());
        params.subject_alt_names = req
            .names
            .iter()
            .map(|n| {
                n.as_str()
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(signing_error)
            })
            .collect::<Result<_, _>>()?;
        // A CN longer than 64 characters breaks the X.520 bound; such a
        // name stays in the SAN, which is what clients match against.
        params.distinguished_name = DistinguishedName::new();
        if let Some(cn) = req.names.iter().find(|n| n.as_str().len() <= MAX_CN_LEN) {
            params
                .distinguished_name
                .push(DnType::CommonName, cn.as_str());
        }
        params.is_ca = IsCa::ExplicitNoCa;
        // rcgen always marks keyUsage critical.
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![req.crl_url.to_string()],
        }];
        // The BRs require the CA/B Forum policy OID that says how the
        // names were validated: domain control, here.
        let policies = der::sequence(&[&der::sequence(&[&der::oid(&OID_CABF_DOMAIN_VALIDATED)])]);
        params.custom_extensions = vec![
            aia,
            CustomExtension::from_oid_content(&OID_CERTIFICATE_POLICIES, policies),
        ];

        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(signing_error)?;
        Ok(cert.der().to_vec())
    }
}

fn check_http_url(url: &str) -> Result<(), SignerError> {
    let plain = url.bytes().all(|b| b.is_ascii_graphic());
    let lower = url.to_ascii_lowercase();
    let absolute = ["http://", "https://"]
        .iter()
        .any(|scheme| lower.len() > scheme.len() && lower.starts_with(scheme));
    if !plain || !absolute {
        return Err(SignerError::BadCaIssuersUrl {
            url: url.to_owned(),
        });
    }
    Ok(())
}

impl Signer {
    /// The issuing CA's CRL, listing `revoked` serials (hex), valid from
    /// `this_update` to `next_update`.
    pub fn sign_crl(
        &self,
        number: u64,
        this_update: OffsetDateTime,
        next_update: OffsetDateTime,
        revoked: &[(String, OffsetDateTime)],
    ) -> Result<Vec<u8>, SignerError> {
        let revoked_certs = revoked
            .iter()
            .map(|(serial, at)| {
                Ok(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&hex::decode(serial).map_err(|e| {
                        SignerError::Signing {
                            reason: format!("serial {serial:?} is not hex: {e}"),
                        }
                    })?),
                    revocation_time: *at,
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect::<Result<Vec<_>, SignerError>>()?;
        let params = CertificateRevocationListParams {
            this_update,
            next_update,
            crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::PreSpecified(self.issuer_ski.clone()),
        };
        Ok(params
            .signed_by(&self.issuer)
            .map_err(signing_error)?
            .der()
            .to_vec())
    }
}

/// authorityInfoAccess with a single caIssuers URI:
/// `SEQUENCE { SEQUENCE { id-ad-caIssuers, [6] IA5String url } }`.
fn ca_issuers_extension(url: &str) -> Result<CustomExtension, SignerError> {
    check_http_url(url)?;
    let access_description = der::sequence(&[
        &der::oid(&OID_CA_ISSUERS),
        &der::tlv(der::tag::GENERAL_NAME_URI, url.as_bytes()),
    ]);
    Ok(CustomExtension::from_oid_content(
        &OID_AUTHORITY_INFO_ACCESS,
        der::sequence(&[&access_description]),
    ))
}

/// The customer's public key as rcgen needs it. The algorithm comes from the
/// SubjectPublicKeyInfo itself, never from the CSR's signature algorithm (a
/// P-256 key in a CSR signed with SHA-384 is still a P-256 key).
struct CsrPublicKey {
    key_bits: Vec<u8>,
    algorithm: &'static SignatureAlgorithm,
}

impl CsrPublicKey {
    fn from_spki(spki_der: &[u8]) -> Result<CsrPublicKey, SignerError> {
        let unsupported = |reason: String| SignerError::UnsupportedPublicKey { reason };
        let (rest, spki) = SubjectPublicKeyInfo::from_der(spki_der)
            .map_err(|e| unsupported(format!("it does not parse ({e})")))?;
        if !rest.is_empty() {
            return Err(unsupported("extra data follows the key".into()));
        }
        // The same rules as for CSRs: the signer must not certify a key the
        // desk would refuse, whoever calls it.
        let algorithm = match classify_key(&spki).map_err(|e| unsupported(e.to_string()))? {
            KeyType::Rsa { .. } => &PKCS_RSA_SHA256,
            KeyType::EcP256 => &PKCS_ECDSA_P256_SHA256,
            KeyType::EcP384 => &PKCS_ECDSA_P384_SHA384,
            KeyType::Ed25519 => &PKCS_ED25519,
        };
        Ok(CsrPublicKey {
            key_bits: spki.subject_public_key.data.to_vec(),
            algorithm,
        })
    }
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// Rebuilds an rcgen name from a parsed one, keeping each value's string
/// type so the encoding comes out identical.
fn rebuild_name(name: &X509Name<'_>) -> Result<DistinguishedName, String> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter_rdn() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err("its subject has a multi-valued name component".into());
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or("its subject has an attribute type too large to read")?
            .collect();
        let ty = DnType::from_oid(&oid);
        // rcgen keeps one value per attribute type.
        if dn.get(&ty).is_some() {
            return Err("its subject repeats an attribute type".into());
        }
        let text = attr
            .as_str()
            .map_err(|_| "its subject holds a value that is not a text string".to_owned())?;
        let value = match attr.attr_value().tag() {
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|_| "its subject holds an invalid PrintableString".to_owned())?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text.try_into()
                    .map_err(|_| "its subject holds an invalid IA5String".to_owned())?,
            ),
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            _ => return Err("its subject uses a string type the signer cannot reproduce".into()),
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::cert::{inspect_der, pem_encode_cert};
    use crate::pki::csr::{decode_csr, CsrPolicy};
    use crate::pki::test_support::{dns, openssl, openssl_csr, rcgen_csr};
    use std::path::Path;
    use x509_parser::extensions::GeneralName;

    const AIA_URL: &str = "http://ca.example.test/issuing-ca.crt";

    fn names(list: &[&str]) -> Vec<DnsName> {
        list.iter().map(|s| DnsName::parse(s).unwrap()).collect()
    }

    fn write_pem(dir: &Path, file: &str, der: &[u8]) -> String {
        let path = dir.join(file);
        std::fs::write(&path, pem_encode_cert(der)).unwrap();
        path.to_str().unwrap().to_owned()
    }

    const CRL_URL: &str = "http://desk.example.com/ca/builtin/intermediate.crl";

    fn request<'a>(spki: &'a [u8], names: &'a [DnsName]) -> LeafRequest<'a> {
        let now = OffsetDateTime::now_utc();
        LeafRequest {
            spki_der: spki,
            names,
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(90),
            ca_issuers_url: AIA_URL,
            crl_url: CRL_URL,
        }
    }

    #[test]
    fn crl_is_signed_by_the_intermediate_and_lists_revoked_serials() {
        let (root, int) = generate_ca("Example Desk").unwrap();
        let signer = Signer::new(&int).unwrap();
        let now = OffsetDateTime::now_utc();
        let der = signer
            .sign_crl(7, now, now + Duration::days(7), &[("0a1b2c".into(), now)])
            .unwrap();
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&der).unwrap();
        let (_, int_cert) = X509Certificate::from_der(&int.cert_der).unwrap();
        crl.verify_signature(int_cert.public_key()).unwrap();
        assert_eq!(crl.issuer().as_raw(), int_cert.subject().as_raw());
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert_eq!(serials, ["0a1b2c"]);
        let _ = root;
    }

    #[test]
    fn issued_leaf_verifies_with_openssl_and_carries_the_server_profile() {
        let (root, int) = generate_ca("Example Desk").unwrap();
        let signer = Signer::new(&int).unwrap();
        let csr_der = rcgen_csr(
            &PKCS_ECDSA_P256_SHA256,
            Some("www.example.com"),
            vec![dns("example.com"), dns("*.shop.example.com")],
        );
        let csr = decode_csr(&csr_der, &CsrPolicy::default()).unwrap();
        let leaf = signer
            .sign_leaf(&request(&csr.spki_der, &csr.names))
            .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let root_pem = write_pem(dir.path(), "root.pem", &root.cert_der);
        let int_pem = write_pem(dir.path(), "int.pem", &int.cert_der);
        let leaf_pem = write_pem(dir.path(), "leaf.pem", &leaf);
        let out = openssl(&[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslserver",
            "-CAfile",
            &root_pem,
            "-untrusted",
            &int_pem,
            &leaf_pem,
        ]);
        assert!(
            String::from_utf8_lossy(&out).contains(": OK"),
            "{}",
            String::from_utf8_lossy(&out)
        );

        let text =
            String::from_utf8(openssl(&["x509", "-in", &leaf_pem, "-noout", "-text"])).unwrap();
        for expected in [
            "CA:FALSE",
            "X509v3 Key Usage: critical\n                Digital Signature\n",
            "X509v3 Extended Key Usage: \n                TLS Web Server Authentication\n",
            "CA Issuers - URI:http://ca.example.test/issuing-ca.crt",
            "DNS:www.example.com, DNS:example.com, DNS:*.shop.example.com",
            "Subject: CN = www.example.com",
            "Issuer: O = Example Desk, CN = Example Desk Issuing CA",
            "X509v3 Authority Key Identifier",
            "X509v3 Subject Key Identifier",
            "ASN1 OID: prime256v1",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
        assert!(!text.contains("Key Encipherment"), "{text}");
    }

    #[test]
    fn generated_ca_has_a_root_and_an_issuing_intermediate_with_the_right_constraints() {
        let (root, int) = generate_ca("Example Desk").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let root_pem = write_pem(dir.path(), "root.pem", &root.cert_der);
        let int_pem = write_pem(dir.path(), "int.pem", &int.cert_der);

        let root_text =
            String::from_utf8(openssl(&["x509", "-in", &root_pem, "-noout", "-text"])).unwrap();
        for expected in [
            "Subject: O = Example Desk, CN = Example Desk Root CA",
            "Issuer: O = Example Desk, CN = Example Desk Root CA",
            "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:1",
            "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign",
            "ASN1 OID: prime256v1",
        ] {
            assert!(
                root_text.contains(expected),
                "root lacks {expected:?}\n{root_text}"
            );
        }
        let int_text =
            String::from_utf8(openssl(&["x509", "-in", &int_pem, "-noout", "-text"])).unwrap();
        for expected in [
            "Subject: O = Example Desk, CN = Example Desk Issuing CA",
            "Issuer: O = Example Desk, CN = Example Desk Root CA",
            "X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:0",
            "X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign",
            "TLS Web Server Authentication",
            "X509v3 Authority Key Identifier",
        ] {
            assert!(
                int_text.contains(expected),
                "intermediate lacks {expected:?}\n{int_text}"
            );
        }
        openssl(&["verify", "-x509_strict", "-CAfile", &root_pem, &int_pem]);

        let root_info = inspect_der(&root.cert_der).unwrap();
        let int_info = inspect_der(&int.cert_der).unwrap();
        let years =
            |i: &crate::pki::cert::CertificateInfo| (i.not_after - i.not_before).whole_days() / 365;
        assert_eq!(years(&root_info), 10);
        assert_eq!(years(&int_info), 5);
        assert!(root_info.is_ca && int_info.is_ca);
        assert!(
            format!("{int:?}").contains("[elided]"),
            "the key must not be printed"
        );
    }

    #[test]
    fn p256_key_from_a_sha384_csr_comes_out_as_p256_in_the_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let csr_der = openssl_csr(
            dir.path(),
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            &["-subj", "/CN=x.example.com", "-sha384"],
        );
        let csr = decode_csr(&csr_der, &CsrPolicy::default()).unwrap();
        let (_, int) = generate_ca("Example Desk").unwrap();
        let leaf = Signer::new(&int)
            .unwrap()
            .sign_leaf(&request(&csr.spki_der, &csr.names))
            .unwrap();

        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        assert_eq!(cert.public_key().raw, csr.spki_der.as_slice());
        assert_eq!(inspect_der(&leaf).unwrap().key_type, "ECDSA P-256");
        // Signed by the P-256 intermediate with SHA-256, whatever the CSR used.
        assert_eq!(
            cert.signature_algorithm.algorithm.to_id_string(),
            "1.2.840.10045.4.3.2"
        );
    }

    #[test]
    fn rsa_p384_and_ed25519_keys_are_certified_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let rsa = openssl_csr(
            dir.path(),
            &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            &["-subj", "/CN=rsa.example.com"],
        );
        let p384 = rcgen_csr(&PKCS_ECDSA_P384_SHA384, Some("p384.example.com"), vec![]);
        let ed = rcgen_csr(&PKCS_ED25519, Some("ed.example.com"), vec![]);
        let policy = CsrPolicy {
            allow_ed25519: true,
            ..CsrPolicy::default()
        };
        let (root, int) = generate_ca("Example Desk").unwrap();
        let signer = Signer::new(&int).unwrap();
        let root_pem = write_pem(dir.path(), "root.pem", &root.cert_der);
        let int_pem = write_pem(dir.path(), "int.pem", &int.cert_der);
        for (csr_der, want) in [(rsa, "RSA 2048"), (p384, "ECDSA P-384"), (ed, "Ed25519")] {
            let csr = decode_csr(&csr_der, &policy).unwrap();
            let leaf = signer
                .sign_leaf(&request(&csr.spki_der, &csr.names))
                .unwrap();
            let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
            assert_eq!(cert.public_key().raw, csr.spki_der.as_slice(), "{want}");
            assert_eq!(inspect_der(&leaf).unwrap().key_type, want);
            let leaf_pem = write_pem(dir.path(), "leaf.pem", &leaf);
            openssl(&[
                "verify",
                "-CAfile",
                &root_pem,
                "-untrusted",
                &int_pem,
                &leaf_pem,
            ]);
        }
    }

    #[test]
    fn serials_are_16_random_bytes_with_the_top_bit_clear() {
        let (_, int) = generate_ca("Example Desk").unwrap();
        let signer = Signer::new(&int).unwrap();
        let csr = decode_csr(
            &rcgen_csr(&PKCS_ECDSA_P256_SHA256, Some("example.com"), vec![]),
            &CsrPolicy::default(),
        )
        .unwrap();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let leaf = signer
                .sign_leaf(&request(&csr.spki_der, &csr.names))
                .unwrap();
            let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
            let serial = cert.raw_serial();
            assert_eq!(serial.len(), 16, "{serial:?}");
            assert!(serial[0] != 0 && serial[0] & 0x80 == 0, "{serial:?}");
            assert!(seen.insert(serial.to_vec()));
        }
    }

    #[test]
    fn common_name_is_the_first_name_short_enough_for_a_cn() {
        let long = format!("{}.example.com", "a".repeat(60));
        let list = names(&[&long, "short.example.com"]);
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = key.subject_public_key_info();
        let (_, int) = generate_ca("Example Desk").unwrap();
        let leaf = Signer::new(&int)
            .unwrap()
            .sign_leaf(&request(&spki, &list))
            .unwrap();
        let info = inspect_der(&leaf).unwrap();
        assert_eq!(info.common_name.as_deref(), Some("short.example.com"));
        assert_eq!(info.names, [long.as_str(), "short.example.com"]);

        let only_long = names(&[&long]);
        let leaf = Signer::new(&int)
            .unwrap()
            .sign_leaf(&request(&spki, &only_long))
            .unwrap();
        let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
        assert_eq!(cert.subject().iter().count(), 0);
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert!(
            san.critical,
            "with an empty subject the SAN must be critical"
        );
        assert_eq!(san.value.general_names, [GeneralName::DNSName(&long)]);
    }

    #[test]
    fn signer_refuses_bad_requests_with_clear_errors() {
        let (_, int) = generate_ca("Example Desk").unwrap();
        let signer = Signer::new(&int).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let spki = key.subject_public_key_info();
        let list = names(&["example.com"]);

        assert_eq!(
            signer.sign_leaf(&request(&spki, &[])),
            Err(SignerError::NoNames)
        );

        let mut backwards = request(&spki, &list);
        backwards.not_after = backwards.not_before;
        assert_eq!(signer.sign_leaf(&backwards), Err(SignerError::BadValidity));

        let mut too_long = request(&spki, &list);
        too_long.not_after = too_long.not_before + Duration::days(3650);
        assert!(matches!(
            signer.sign_leaf(&too_long),
            Err(SignerError::ValidityBeyondIssuer { .. })
        ));

        for url in [
            "",
            "ca.example.test/int.crt",
            "http://ca.example.test/a b",
            "http://ca.example.test/\r\n",
            "http://bücher.example/",
        ] {
            let mut req = request(&spki, &list);
            req.ca_issuers_url = url;
            assert_eq!(
                signer.sign_leaf(&req),
                Err(SignerError::BadCaIssuersUrl { url: url.into() }),
                "{url:?}"
            );
        }

        let dir = tempfile::tempdir().unwrap();
        let weak = openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
        ]);
        let weak_path = dir.path().join("weak.pem");
        std::fs::write(&weak_path, weak).unwrap();
        let weak_spki = openssl(&[
            "pkey",
            "-in",
            weak_path.to_str().unwrap(),
            "-pubout",
            "-outform",
            "DER",
        ]);
        let err = signer.sign_leaf(&request(&weak_spki, &list)).unwrap_err();
        assert!(
            matches!(err, SignerError::UnsupportedPublicKey { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("1024 bits"), "{err}");
    }

    #[test]
    fn signer_refuses_a_mismatched_key_or_a_non_ca_certificate() {
        let (root, int) = generate_ca("Example Desk").unwrap();
        let mixed = CaKeyMaterial {
            cert_der: int.cert_der.clone(),
            key_pkcs8_der: root.key_pkcs8_der.clone(),
        };
        assert_eq!(Signer::new(&mixed).unwrap_err(), SignerError::KeyMismatch);

        let garbage = CaKeyMaterial {
            cert_der: int.cert_der.clone(),
            key_pkcs8_der: vec![1, 2, 3],
        };
        assert!(matches!(
            Signer::new(&garbage),
            Err(SignerError::BadPrivateKey { .. })
        ));

        let signer = Signer::new(&int).unwrap();
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        let list = names(&["example.com"]);
        let leaf = signer
            .sign_leaf(&request(&key.subject_public_key_info(), &list))
            .unwrap();
        let as_ca = CaKeyMaterial {
            cert_der: leaf,
            key_pkcs8_der: key.serialize_der(),
        };
        let err = Signer::new(&as_ca).unwrap_err();
        assert!(err.to_string().contains("not a CA certificate"), "{err}");
    }

    #[test]
    fn org_name_must_fit_the_ca_common_names() {
        assert!(generate_ca(&"x".repeat(MAX_ORG_NAME_LEN)).is_ok());
        for bad in [
            String::new(),
            "  ".into(),
            "x".repeat(MAX_ORG_NAME_LEN + 1),
            "Evil\nCorp".into(),
        ] {
            assert!(
                matches!(generate_ca(&bad), Err(SignerError::BadOrgName { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn signer_can_be_shared_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Signer>();
    }

    #[test]
    fn aia_extension_is_the_der_openssl_expects() {
        let ext = ca_issuers_extension("http://a.test/x").unwrap();
        let mut want = vec![0x30, 0x1d, 0x30, 0x1b];
        want.extend([0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02]);
        want.extend([0x86, 0x0f]);
        want.extend(b"http://a.test/x");
        assert_eq!(ext.content(), want.as_slice());
        assert!(!ext.criticality());
    }
}
