//! Import validation (`certdesk::pki::import::validate_import`), in this
//! process, no database: parse the PEM, link the chain, match the key.
//!
//! Builds one bundle in memory with rcgen (a P-256 leaf signed by an
//! intermediate, the intermediate, the leaf's PKCS#8 key, all PEM), then
//! validates it in a loop on one thread for `run_time`, `runs` times; the
//! figure is the median rate.

use std::time::{Duration, Instant};

use anyhow::Result;
use certdesk::pki::import::{chain_pem, key_pem, validate_import, ImportInput};
use certdesk::pki::pem_encode_cert;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

fn ca_params(cn: &str, now: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Bench");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

/// Bundles per second, the median of `runs` runs.
pub fn bundles_per_second(runs: usize, run_time: Duration) -> Result<f64> {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let root = ca_params("Bench Root", now);
    let int_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let int = ca_params("Bench Intermediate", now);
    let int_der = int
        .signed_by(&int_key, &Issuer::from_params(&root, &root_key))?
        .der()
        .to_vec();

    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name
        .push(DnType::CommonName, "www.example.com");
    leaf.subject_alt_names = vec![
        SanType::DnsName("www.example.com".try_into()?),
        SanType::DnsName("example.com".try_into()?),
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.not_before = now - time::Duration::hours(1);
    leaf.not_after = now + time::Duration::days(90);
    let leaf_der = leaf
        .signed_by(&leaf_key, &Issuer::from_params(&int, &int_key))?
        .der()
        .to_vec();

    let certificate = pem_encode_cert(&leaf_der);
    let private_key = key_pem(&leaf_key.serialize_der());
    let chain = chain_pem(&[int_der]);
    let input = ImportInput {
        certificate: Some(certificate.as_bytes()),
        private_key: Some(private_key.as_bytes()),
        chain: Some(chain.as_bytes()),
        ..ImportInput::default()
    };

    // The bundle must be accepted, or the loop would time the refusal.
    validate_import(&input, now)?;

    let mut rates = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let mut count: u64 = 0;
        while start.elapsed() < run_time {
            for _ in 0..64 {
                let bundle = validate_import(std::hint::black_box(&input), now)?;
                std::hint::black_box(bundle);
            }
            count += 64;
        }
        let rate = count as f64 / start.elapsed().as_secs_f64();
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    Ok(rates[runs / 2])
}
