//! DESIGN rule 1: the desk never stores an issued certificate.

use reqwest::StatusCode;

use crate::support::*;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn the_desk_database_never_holds_the_issued_certificate_but_the_ca_ledger_does() {
    let (smtp, desk, csr_pem) = issuing_desk("secret.example.com").await;
    let (_, order, _) = desk
        .api
        .post(
            "/api/v1/orders",
            Some(&order_body(&csr_pem, "it@example.com", None)),
        )
        .await;
    let id = order["id"].as_str().unwrap();
    desk.wait_order_state(id, "issued").await;
    let (s, _, _) = desk
        .api
        .post(&format!("/api/v1/orders/{id}/fulfillment-email"), None)
        .await;
    assert_eq!(s, StatusCode::ACCEPTED);
    let mails = smtp.wait_for(2, |m| m.is_fulfillment()).await;
    desk.wait_order(id, |o| {
        o["email_requests"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["state"] == "sent")
    })
    .await;

    let cert_pem = mails[0].attachment("certificate.pem");
    let der = pem::parse(&cert_pem).unwrap().into_contents();
    let b64: String = cert_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    // Any 64-character line of the PEM body would betray a stored copy.
    let pem_lines: Vec<&str> = cert_pem.lines().filter(|l| l.len() == 64).collect();
    assert!(!pem_lines.is_empty());

    // The desk's whole database (files or rows), and its log.
    let mut places = desk.database_contents().await;
    places.push((
        "desk.log".into(),
        std::fs::read(desk.path("desk.log")).unwrap(),
    ));
    for (name, bytes) in &places {
        assert!(!contains(bytes, &der), "{name} holds the certificate's DER");
        assert!(!contains(bytes, b64.as_bytes()), "{name} holds its base64");
        for line in &pem_lines {
            assert!(
                !contains(bytes, line.as_bytes()),
                "{name} holds a line of its PEM"
            );
        }
    }
    // The search reads real contents: the order's public details are there.
    assert!(
        places
            .iter()
            .any(|(_, b)| contains(b, b"secret.example.com")),
        "the order's names are in the database"
    );

    let mut ledger = std::fs::read(desk.path("ca/ledger.db")).unwrap();
    ledger.extend(std::fs::read(desk.path("ca/ledger.db-wal")).unwrap_or_default());
    assert!(
        contains(&ledger, &der),
        "the CA's ledger keeps what it issued"
    );

    // The CA's private keys are sealed at rest.
    for key in ["ca/root.key.sealed", "ca/intermediate.key.sealed"] {
        let bytes = std::fs::read(desk.path(key)).unwrap();
        assert!(!contains(&bytes, b"PRIVATE KEY"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(desk.path(key))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
}
