//! Microbenchmark of certificate import validation
//! (`certdesk::pki::import::validate_import`).
//!
//! Builds one bundle in memory with rcgen (a P-256 leaf signed by an
//! intermediate, the intermediate, the leaf's PKCS#8 key, all PEM), then
//! validates it in a loop on one thread for about 2 s, five times, and prints
//! the median rate.
//!
//!     cargo run --release --example import_validation

use std::time::{Duration, Instant};

use certdesk::pki::import::{chain_pem, key_pem, validate_import, ImportInput};
use certdesk::pki::pem_encode_cert;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

const RUNS: usize = 5;
const RUN_TIME: Duration = Duration::from_secs(2);

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

fn main() -> Result<(), Box<dyn std::error::Error>> {
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

    let first = validate_import(&input, now)?;
    println!(
        "bundle: {} ({}), 1 intermediate, warnings: {:?}",
        first.info.subject,
        first.info.key_type,
        first.warnings.iter().map(|w| w.code).collect::<Vec<_>>()
    );

    let mut rates = Vec::with_capacity(RUNS);
    for run in 1..=RUNS {
        let start = Instant::now();
        let mut count: u64 = 0;
        while start.elapsed() < RUN_TIME {
            for _ in 0..64 {
                let bundle = validate_import(std::hint::black_box(&input), now)?;
                std::hint::black_box(bundle);
            }
            count += 64;
        }
        let rate = count as f64 / start.elapsed().as_secs_f64();
        println!("run {run}: {rate:.0} bundles/s");
        rates.push(rate);
    }
    rates.sort_by(f64::total_cmp);
    let median = rates[RUNS / 2];
    println!(
        "validate_import: {median:.0} bundles/s (median of {RUNS} runs of {} s, one thread; {:.1} µs each)",
        RUN_TIME.as_secs(),
        1e6 / median
    );
    Ok(())
}
