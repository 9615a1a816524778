//! The certificate store: certificates imported by hand, keys sealed at rest.

use std::path::Path;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use reqwest::StatusCode;
use serde_json::{json, Value};
use time::{Duration, OffsetDateTime};

use crate::support::*;

/// A leaf, its key and chain, made with rcgen (keys from openssl for RSA).
pub struct Bundle {
    pub cert: String,
    pub key: String,
    /// Intermediates, the leaf's issuer first.
    pub chain: String,
}

fn key_for(dir: &Path, spec: &str) -> KeyPair {
    match spec {
        "ec:P-256" => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap(),
        "ec:P-384" => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        rsa => {
            let bits = rsa.strip_prefix("rsa:").expect("rsa:BITS");
            let path = dir.join(format!("rsa-{bits}-{}.pem", rand::random::<u32>()));
            openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                path.to_str().unwrap(),
            ]);
            KeyPair::from_pem_and_sign_algo(
                &std::fs::read_to_string(path).unwrap(),
                &rcgen::PKCS_RSA_SHA256,
            )
            .unwrap()
        }
    }
}

fn ca_params(cn: &str, now: OffsetDateTime) -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = rcgen::DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p.not_before = now - Duration::days(30);
    p.not_after = now + Duration::days(3650);
    p
}

/// A chain with `intermediates` CAs between the root and the leaf.
pub fn make_bundle(
    dir: &Path,
    key: &str,
    name: &str,
    intermediates: usize,
    not_after: OffsetDateTime,
) -> Bundle {
    signed_bundle(key_for(dir, key), name, intermediates, not_after)
}

/// The renewal of a bundle's certificate: the same key and names, a new
/// serial and expiry, from a new chain of one intermediate.
pub fn renewed(b: &Bundle, name: &str, not_after: OffsetDateTime) -> Bundle {
    signed_bundle(KeyPair::from_pem(&b.key).unwrap(), name, 1, not_after)
}

fn signed_bundle(
    leaf_key: KeyPair,
    name: &str,
    intermediates: usize,
    not_after: OffsetDateTime,
) -> Bundle {
    let now = OffsetDateTime::now_utc();
    let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let root_params = ca_params("Test Root", now);
    let mut issuer = Issuer::new(root_params, root_key);
    let mut chain = vec![];
    for i in 0..intermediates {
        let k = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let p = ca_params(&format!("Test Intermediate {i}"), now);
        let c = p.signed_by(&k, &issuer).unwrap();
        chain.insert(0, c.pem());
        issuer = Issuer::new(p, k);
    }
    let mut p = CertificateParams::new(vec![name.to_string(), format!("www.{name}")]).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    // A day before now, or before the expiry of an already expired one.
    p.not_before = (now - Duration::days(1)).min(not_after - Duration::days(1));
    p.not_after = not_after;
    // As a CA does; rcgen would derive it from the key, the same for a renewal.
    p.serial_number = Some(rcgen::SerialNumber::from(rand::random::<u64>() >> 1));
    let leaf = p.signed_by(&leaf_key, &issuer).unwrap();
    Bundle {
        cert: leaf.pem(),
        key: leaf_key.serialize_pem(),
        chain: chain.concat(),
    }
}

pub fn import_body(b: &Bundle) -> Value {
    json!({"certificate": b.cert, "private_key": b.key, "chain": b.chain})
}

fn in_days(d: i64) -> OffsetDateTime {
    OffsetDateTime::now_utc() + Duration::days(d)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn imported_certificates_come_back_byte_for_byte_through_the_api() {
    let desk = Desk::start(None, &[]).await;
    crate::console_http::set_password(&desk, "admin@localhost", "a long enough password");
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("rsa:2048", 1),
        ("rsa:3072", 0),
        ("rsa:4096", 2),
        ("ec:P-256", 2),
        ("ec:P-384", 1),
    ];
    let mut ids = vec![];
    for (i, (key, intermediates)) in cases.iter().enumerate() {
        let name = format!("site{i}.example.com");
        let b = make_bundle(
            dir.path(),
            key,
            &name,
            *intermediates,
            in_days(20 + i as i64 * 100),
        );
        let (s, c, _) = desk
            .api
            .post("/api/v1/certificates", Some(&import_body(&b)))
            .await;
        assert_eq!(s, StatusCode::CREATED, "{key}: {c}");
        assert_eq!(c["chain"].as_array().unwrap().len(), *intermediates, "{c}");
        let id = c["id"].as_str().unwrap().to_string();
        for (part, expected) in [
            ("certificate", b.cert.clone()),
            ("chain", b.chain.clone()),
            ("fullchain", format!("{}{}", b.cert, b.chain)),
        ] {
            let res = reqwest::Client::new()
                .get(format!(
                    "{}/api/v1/certificates/{id}/pem?part={part}",
                    desk.url
                ))
                .bearer_auth(&desk.token)
                .send()
                .await
                .unwrap();
            assert_eq!(res.text().await.unwrap(), expected, "{key} {part}");
        }
        let (s, k, _) = desk
            .api
            .post(
                &format!("/api/v1/certificates/{id}/private-key"),
                Some(&json!({"password": "a long enough password"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{k}");
        assert_eq!(
            k["private_key"],
            b.key.as_str(),
            "{key}: the key comes back as it went in"
        );
        ids.push((id, name));
    }

    // Listing, with days left and the expiry warning under 30 days.
    let (_, page) = desk.api.get("/api/v1/certificates").await;
    let list = page["certificates"].as_array().unwrap();
    assert_eq!(list.len(), cases.len());
    let first = list
        .iter()
        .find(|c| c["common_name"] == "site0.example.com")
        .unwrap();
    assert_eq!(first["expiring_soon"], true);
    assert!(
        (18..=20).contains(&first["days_left"].as_i64().unwrap()),
        "{first}"
    );
    let (_, soon) = desk
        .api
        .get("/api/v1/certificates?expiring_within_days=30")
        .await;
    assert_eq!(soon["certificates"].as_array().unwrap().len(), 1);
    let (_, named) = desk.api.get("/api/v1/certificates?name=site3").await;
    assert_eq!(named["certificates"][0]["common_name"], "site3.example.com");

    // A wrong password gets no key; every key download is audited.
    let (id, _) = &ids[0];
    let (s, p, _) = desk
        .api
        .post(
            &format!("/api/v1/certificates/{id}/private-key"),
            Some(&json!({"password": "guess"})),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("password")),
        "{p}"
    );

    // PKCS#12 export opens with openssl and holds the same certificate.
    let res = reqwest::Client::new()
        .post(format!("{}/api/v1/certificates/{id}/pkcs12", desk.url))
        .bearer_auth(&desk.token)
        .json(&json!({"password": "a long enough password", "export_password": "export-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let p12 = dir.path().join("out.p12");
    std::fs::write(&p12, res.bytes().await.unwrap()).unwrap();
    let out = openssl(&[
        "pkcs12",
        "-in",
        p12.to_str().unwrap(),
        "-passin",
        "pass:export-secret",
        "-nokeys",
        "-clcerts",
    ]);
    assert!(String::from_utf8_lossy(&out).contains("site0.example.com"));

    // Notes, then delete.
    let res = reqwest::Client::new()
        .patch(format!("{}/api/v1/certificates/{id}", desk.url))
        .bearer_auth(&desk.token)
        .json(&json!({"notes": "web cluster A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let (_, c) = desk.api.get(&format!("/api/v1/certificates/{id}")).await;
    assert_eq!(c["notes"], "web cluster A");
    let res = reqwest::Client::new()
        .delete(format!("{}/api/v1/certificates/{id}", desk.url))
        .bearer_auth(&desk.token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let (s, _) = desk.api.get(&format!("/api/v1/certificates/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Another account sees none of them.
    let other = desk
        .api
        .as_user(&desk.user("Other Co", "x@other.example", "admin"));
    let (_, page) = other.get("/api/v1/certificates").await;
    assert_eq!(page["certificates"], json!([]));
    let (s, _) = other
        .get(&format!("/api/v1/certificates/{}", ids[1].0))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_cli_imports_lists_downloads_and_deletes() {
    let desk = Desk::start(None, &[]).await;
    crate::console_http::set_password(&desk, "admin@localhost", "a long enough password");
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "ec:P-256", "cli.example.com", 1, in_days(200));
    let (cert, key, chain) = (
        dir.path().join("c.pem"),
        dir.path().join("k.pem"),
        dir.path().join("chain.pem"),
    );
    std::fs::write(&cert, &b.cert).unwrap();
    std::fs::write(&key, &b.key).unwrap();
    std::fs::write(&chain, &b.chain).unwrap();
    let out = desk.cli(&[
        "--output",
        "json",
        "cert",
        "import",
        "--cert",
        cert.to_str().unwrap(),
        "--key",
        key.to_str().unwrap(),
        "--chain",
        chain.to_str().unwrap(),
        "--notes",
        "imported by the CLI",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let c: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = c["id"].as_str().unwrap().to_string();

    let out = desk.cli(&["cert", "list"]);
    assert!(
        stdout(&out).contains("cli.example.com") && stdout(&out).contains("imported by the CLI"),
        "{}",
        stdout(&out)
    );

    let pw = dir.path().join("pw");
    std::fs::write(&pw, "a long enough password\n").unwrap();
    let dl = dir.path().join("download");
    let out = desk.cli(&[
        "cert",
        "download",
        &id,
        "--out",
        dl.to_str().unwrap(),
        "--key",
        "--password-file",
        pw.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dl.join("cert.pem")).unwrap(),
        b.cert
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("chain.pem")).unwrap(),
        b.chain
    );
    assert_eq!(
        std::fs::read_to_string(dl.join("fullchain.pem")).unwrap(),
        format!("{}{}", b.cert, b.chain)
    );
    assert_eq!(std::fs::read_to_string(dl.join("key.pem")).unwrap(), b.key);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dl.join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    let out = desk.cli(&["cert", "delete", &id, "--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = desk.cli(&["cert", "show", &id]);
    assert!(
        !out.status.success() && stderr(&out).contains("not found"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn private_keys_are_sealed_at_rest_and_survive_a_master_key_rotation() {
    let smtp = SmtpServer::start();
    let mut desk = Desk::start(Some(&smtp), &["--validation", "none"]).await;
    crate::console_http::set_password(&desk, "admin@localhost", "a long enough password");
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "rsa:2048", "secret.example.com", 1, in_days(90));
    let (s, c, _) = desk
        .api
        .post("/api/v1/certificates", Some(&import_body(&b)))
        .await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap().to_string();

    let key_der = pem::parse(&b.key).unwrap().into_contents();
    let key_body: String = b.key.lines().filter(|l| !l.starts_with("-----")).collect();
    let key_line = b.key.lines().nth(1).unwrap().to_string();
    let mut places = desk.database_contents().await;
    places.push((
        "desk.log".into(),
        std::fs::read(desk.path("desk.log")).unwrap(),
    ));
    assert!(
        places
            .iter()
            .any(|(_, b)| contains(b, b"secret.example.com")),
        "the search reads the stored certificate's row"
    );
    for (name, bytes) in &places {
        assert!(!contains(bytes, &key_der), "{name} holds the key's DER");
        assert!(
            !contains(bytes, key_body.as_bytes()) && !contains(bytes, key_line.as_bytes()),
            "{name} holds its PEM"
        );
    }

    // Rotate while the desk runs; it keeps opening the key throughout.
    let old_key = std::fs::read_to_string(desk.path("master.key")).unwrap();
    let out = desk.cli(&["admin", "rotate-master-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("certificate keys"),
        "{}",
        stdout(&out)
    );
    assert_ne!(
        std::fs::read_to_string(desk.path("master.key")).unwrap(),
        old_key
    );
    assert!(
        !desk.path("master.key.previous").exists(),
        "the old key is gone once rotation finished"
    );
    let download = json!({"password": "a long enough password"});
    let (s, k, _) = desk
        .api
        .post(
            &format!("/api/v1/certificates/{id}/private-key"),
            Some(&download),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert_eq!(k["private_key"], b.key.as_str());

    // After a restart with only the new key: the store and the built-in CA still work.
    desk.kill();
    desk.restart().await;
    let (s, k, _) = desk
        .api
        .post(
            &format!("/api/v1/certificates/{id}/private-key"),
            Some(&download),
        )
        .await;
    assert_eq!(
        (s, k["private_key"].as_str()),
        (StatusCode::OK, Some(b.key.as_str()))
    );
    let (csr_pem, _) = csr(
        dir.path(),
        "ec:P-256",
        "after.example.com",
        "DNS:after.example.com",
        &[],
    );
    let (_, o, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.com", None)),
        )
        .await;
    desk.wait_order_state(o["id"].as_str().unwrap(), "issued")
        .await;
}

#[tokio::test]
async fn a_renewed_certificate_replaces_the_old_one_with_the_same_or_a_new_key() {
    let desk = Desk::start(None, &[]).await;
    crate::console_http::set_password(&desk, "admin@localhost", "a long enough password");
    let dir = tempfile::tempdir().unwrap();
    let b = make_bundle(dir.path(), "ec:P-256", "renew.example.com", 1, in_days(10));
    let (_, c, _) = desk
        .api
        .post("/api/v1/certificates", Some(&import_body(&b)))
        .await;
    let id = c["id"].as_str().unwrap().to_string();
    let http = reqwest::Client::new();
    let put = |body: Value| {
        http.put(format!("{}/api/v1/certificates/{id}", desk.url))
            .bearer_auth(&desk.token)
            .json(&body)
            .send()
    };

    // A certificate for another key cannot reuse the stored one.
    let other = make_bundle(dir.path(), "ec:P-256", "renew.example.com", 1, in_days(300));
    let res = put(json!({"certificate": other.cert, "chain": other.chain}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["code"], "import_key_mismatch", "{p}");
    // The caller sent no key: the certificate is what does not fit.
    assert_eq!(p["field"], "certificate", "{p}");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("send the new certificate's private key"),
        "{p}"
    );
    // A blank PKCS#12 field is no new key either.
    let res = put(json!({"certificate": other.cert, "chain": other.chain, "pkcs12": ""}))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let p: Value = res.json().await.unwrap();
    assert_eq!(p["field"], "certificate", "{p}");

    // With its own key it replaces the entry; the id and notes stay.
    let res =
        put(json!({"certificate": other.cert, "chain": other.chain, "private_key": other.key}))
            .await
            .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let renewed: Value = res.json().await.unwrap();
    assert_eq!(renewed["id"], id.as_str());
    assert_eq!(renewed["expiring_soon"], false);
    let (_, k, _) = desk
        .api
        .post(
            &format!("/api/v1/certificates/{id}/private-key"),
            Some(&json!({"password": "a long enough password"})),
        )
        .await;
    assert_eq!(
        k["private_key"],
        other.key.as_str(),
        "the new key replaced the old one"
    );
}

/// One refusal of the import API: what was sent, and what must come back.
struct Refusal {
    what: &'static str,
    body: Value,
    status: StatusCode,
    field: Option<&'static str>,
    code: &'static str,
    /// Part of the message a user acts on.
    detail: &'static str,
}

#[tokio::test]
async fn each_bad_import_is_refused_with_its_status_field_and_code() {
    let desk = Desk::start(None, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let b = make_bundle(d, "ec:P-256", "bad.example.com", 1, in_days(90));
    let other = make_bundle(d, "ec:P-256", "bad.example.com", 1, in_days(90));
    let with = |changes: Value| {
        let mut body = import_body(&b);
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };

    let key_file = d.join("key.pem");
    std::fs::write(&key_file, &b.key).unwrap();
    let encrypted_key = String::from_utf8(openssl(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes-256-cbc",
        "-in",
        key_file.to_str().unwrap(),
        "-passout",
        "pass:key secret",
    ]))
    .unwrap();

    let (small_cert, small_key) = (d.join("small.crt"), d.join("small.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:1024",
        "-nodes",
        "-keyout",
        small_key.to_str().unwrap(),
        "-out",
        small_cert.to_str().unwrap(),
        "-subj",
        "/CN=small.example.com",
        "-days",
        "30",
    ]);

    let (cert_file, chain_file, p12_file) = (d.join("c.pem"), d.join("chain.pem"), d.join("b.p12"));
    std::fs::write(&cert_file, &b.cert).unwrap();
    std::fs::write(&chain_file, &b.chain).unwrap();
    openssl(&[
        "pkcs12",
        "-export",
        "-in",
        cert_file.to_str().unwrap(),
        "-inkey",
        key_file.to_str().unwrap(),
        "-certfile",
        chain_file.to_str().unwrap(),
        "-passout",
        "pass:right p12 password",
        "-out",
        p12_file.to_str().unwrap(),
    ]);
    use base64::Engine;
    let p12 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&p12_file).unwrap());

    let damaged_pem = b.cert.replacen("-----\n", "-----\n*", 1);
    let (csr_pem, _) = csr(d, "ec:P-256", "bad.example.com", "DNS:bad.example.com", &[]);
    let expired = make_bundle(
        d,
        "ec:P-256",
        "old.example.com",
        1,
        OffsetDateTime::now_utc() - Duration::days(3),
    );
    let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
    let cases = vec![
        Refusal {
            what: "plain text in the certificate field",
            body: with(json!({"certificate": "hello, I am not a certificate"})),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_wrong_kind",
            detail: "not a certificate",
        },
        Refusal {
            what: "a PEM block with damaged base64",
            body: with(json!({"certificate": damaged_pem})),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_bad_pem",
            detail: "not readable PEM",
        },
        Refusal {
            what: "a certificate cut short (no -----END line)",
            body: with(json!({"certificate": &b.cert[..b.cert.len() / 2]})),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_bad_pem",
            detail: "no -----END line",
        },
        Refusal {
            what: "a CSR in the certificate field",
            body: with(json!({"certificate": csr_pem})),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_wrong_kind",
            detail: "certificate signing request",
        },
        Refusal {
            what: "the certificate and its intermediate in the certificate field",
            body: with(json!({"certificate": format!("{}{}", b.cert, b.chain)})),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_multiple_certificates",
            detail: "put the intermediates in the chain field",
        },
        Refusal {
            what: "another certificate's key",
            body: with(json!({"private_key": other.key})),
            status: unprocessable,
            field: Some("private_key"),
            code: "import_key_mismatch",
            detail: "does not belong to this certificate",
        },
        Refusal {
            what: "an encrypted key without its password",
            body: with(json!({"private_key": encrypted_key})),
            status: unprocessable,
            field: Some("key_password"),
            code: "import_key_password_required",
            detail: "give its password",
        },
        Refusal {
            what: "an encrypted key with a wrong password",
            body: with(json!({"private_key": encrypted_key, "key_password": "guess"})),
            status: unprocessable,
            field: Some("key_password"),
            code: "import_key_wrong_password",
            detail: "does not decrypt",
        },
        Refusal {
            what: "an RSA 1024 certificate",
            body: json!({
                "certificate": std::fs::read_to_string(&small_cert).unwrap(),
                "private_key": std::fs::read_to_string(&small_key).unwrap(),
            }),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_key_too_small",
            detail: "1024 bits; at least 2048",
        },
        Refusal {
            what: "a chain that did not issue the certificate",
            body: with(json!({"chain": other.chain})),
            status: unprocessable,
            field: Some("chain"),
            code: "import_chain_broken",
            detail: "chain certificate 1 did not issue the certificate",
        },
        Refusal {
            what: "an expired certificate",
            body: import_body(&expired),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_certificate_expired",
            detail: "allow expired",
        },
        Refusal {
            what: "a certificate field over 64 KiB",
            body: with(json!({"certificate": "x".repeat(64 * 1024 + 1)})),
            status: unprocessable,
            field: Some("certificate"),
            code: "import_too_large",
            detail: "at most 64 KiB",
        },
        Refusal {
            what: "a request over the desk's 256 KiB body limit",
            body: with(json!({"chain": "x".repeat(256 * 1024)})),
            status: StatusCode::PAYLOAD_TOO_LARGE,
            field: None,
            code: "body_too_large",
            detail: "larger than the 256 KiB the desk accepts",
        },
        Refusal {
            what: "a PKCS#12 file with a wrong password",
            body: json!({"pkcs12": p12, "pkcs12_password": "wrong p12 password"}),
            status: unprocessable,
            field: Some("pkcs12_password"),
            code: "import_pkcs12_wrong_password",
            detail: "does not open the PKCS#12 file",
        },
    ];
    let http = reqwest::Client::new();
    for case in &cases {
        let res = http
            .post(format!("{}/api/v1/certificates", desk.url))
            .bearer_auth(&desk.token)
            .json(&case.body)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let content_type = res.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        let p: Value = res.json().await.unwrap();
        assert_eq!(status, case.status, "{}: {p}", case.what);
        assert_eq!(
            content_type, "application/problem+json",
            "{}: {p}",
            case.what
        );
        assert_eq!(
            (p["field"].as_str(), p["code"].as_str()),
            (case.field, Some(case.code)),
            "{}: {p}",
            case.what
        );
        assert_eq!(p["status"], status.as_u16(), "{}: {p}", case.what);
        assert!(
            p["detail"].as_str().unwrap().contains(case.detail),
            "{}: {p}",
            case.what
        );
    }
    let (_, page) = desk.api.get("/api/v1/certificates").await;
    assert_eq!(
        page["certificates"],
        json!([]),
        "nothing refused was stored"
    );

    // "Allow expired" stores the expired one, marked as such.
    let mut body = import_body(&expired);
    body["allow_expired"] = json!(true);
    let (s, c, _) = desk.api.post("/api/v1/certificates", Some(&body)).await;
    assert_eq!(s, StatusCode::CREATED, "{c}");
    assert_eq!(
        (c["expired"].as_bool(), c["expiring_soon"].as_bool()),
        (Some(true), Some(false))
    );
    assert!(
        c["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["code"] == "expired"),
        "{c}"
    );
}
