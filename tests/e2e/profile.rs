//! What the built-in CA issues, checked by tools that are not ours: openssl
//! and pkilint, the CA/Browser Forum's certificate profile linter.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// Findings accepted on purpose, with the reason.
const ACCEPTED: &[(&str, &str)] = &[
    // The CN duplicates the first SAN: still expected by older clients.
    (
        "cabf.serverauth.dv.common_name_attribute_present",
        "WARNING",
    ),
    // The issue asks for SKI on leaves; the BRs merely do not recommend it.
    (
        "cabf.serverauth.subscriber.subject_key_identifier_extension_present",
        "WARNING",
    ),
    // rcgen derives key identifiers from a truncated SHA-256 (RFC 7093 method 1).
    (
        "pkix.unknown_subject_key_identifier_calculation_method",
        "NOTICE",
    ),
];

fn pkilint() -> PathBuf {
    let path = std::env::var_os("CERTDESK_PKILINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/tools/pkilint/bin/lint_cabf_serverauth_cert")
        });
    assert!(
        path.exists(),
        "pkilint is missing at {}: run scripts/test, which installs it",
        path.display()
    );
    path
}

fn findings(lint: &Path, cert: &Path) -> Vec<(String, String)> {
    let out = Command::new(lint)
        .args(["lint", "-d"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let found: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let (code, rest) = l.split_once(" (")?;
            let severity = rest.split(')').next()?;
            (!code.contains(' ')).then(|| (code.to_string(), severity.to_string()))
        })
        .collect();
    // Its exit code is the number of findings: make sure we read them all.
    assert_eq!(
        out.status.code(),
        Some(found.len() as i32),
        "pkilint output:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    found
}

#[tokio::test]
async fn issued_certificates_pass_openssl_and_the_cabf_linter() {
    let lint = pkilint();
    let smtp = SmtpServer::start();
    let desk = Desk::start(
        Some(&smtp),
        &[
            "--validation",
            "none",
            "--public-url",
            "http://certs.example.com",
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.pem");
    std::fs::write(&root, desk.root_pem().await).unwrap();
    let chain = dir.path().join("chain.pem");
    std::fs::write(&chain, desk.intermediate_pem().await).unwrap();

    let keys = ["ec:P-256", "ec:P-384", "rsa:2048", "rsa:3072"];
    for (i, key) in keys.iter().enumerate() {
        let cn = format!("site{i}.example.com");
        let sans = format!("DNS:{cn},DNS:*.site{i}.example.com,DNS:other{i}.example.org");
        let (csr_pem, _) = csr(dir.path(), key, &cn, &sans, &[]);
        let (s, o, _) = desk
            .api
            .post(
                "/api/v1/orders",
                Some(&order_body(&csr_pem, "it@example.com", None)),
            )
            .await;
        assert_eq!(s, reqwest::StatusCode::CREATED, "{key}: {o}");
    }
    let mails = smtp.wait_for(keys.len(), |m| m.is_fulfillment()).await;
    for mail in mails {
        let cert = dir.path().join("leaf.pem");
        std::fs::write(&cert, mail.attachment("certificate.pem")).unwrap();
        let verify = Command::new("openssl")
            .args(["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile"])
            .arg(&root)
            .arg("-untrusted")
            .arg(&chain)
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            verify.status.success(),
            "{}: {}",
            mail.subject,
            String::from_utf8_lossy(&verify.stderr)
        );
        let text = String::from_utf8(openssl(&[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-text",
        ]))
        .unwrap();
        for expected in [
            "CA:FALSE",
            "TLS Web Server Authentication",
            "CA Issuers - URI:http://certs.example.com/ca/builtin/intermediate.crt",
            "URI:http://certs.example.com/ca/builtin/intermediate.crl",
            "Policy: 2.23.140.1.2.1",
            "X509v3 Subject Key Identifier",
            "X509v3 Authority Key Identifier",
        ] {
            assert!(
                text.contains(expected),
                "{}: no {expected:?} in\n{text}",
                mail.subject
            );
        }
        assert!(
            text.contains("X509v3 Key Usage: critical\n                Digital Signature\n"),
            "{text}"
        );
        let unexpected: Vec<_> = findings(&lint, &cert)
            .into_iter()
            .filter(|(code, sev)| !ACCEPTED.iter().any(|(c, s)| c == code && s == sev))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: pkilint findings {unexpected:?}",
            mail.subject
        );
    }

    // The CRL the certificates point at is served and signed by the intermediate.
    let crl = reqwest::get(format!("{}/ca/builtin/intermediate.crl", desk.url))
        .await
        .unwrap();
    assert_eq!(crl.headers()["content-type"], "application/pkix-crl");
    let crl_path = dir.path().join("int.crl");
    std::fs::write(&crl_path, crl.bytes().await.unwrap()).unwrap();
    let check = Command::new("openssl")
        .args(["crl", "-inform", "DER", "-noout", "-in"])
        .arg(&crl_path)
        .arg("-CAfile")
        .arg(&chain)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("verify OK"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
}
