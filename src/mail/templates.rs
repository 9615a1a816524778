//! The two emails of an order: the approval request to the approver, and the
//! fulfillment email with the certificate to the domain administrator.
//!
//! Text and HTML bodies say the same, in the order's language (texts in
//! `i18n/<lang>/emails.ftl`); every value put into HTML is escaped.

use html_escape::encode_text as esc;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::Message;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::MailError;
use crate::i18n::{t, t_args, Lang};

pub struct FulfillmentDetails<'a> {
    pub order_id: &'a str,
    pub admin_name: &'a str,
    pub common_name: &'a str,
    pub names: &'a [String],
    pub serial: &'a str,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub sha256_fingerprint: &'a str,
    pub issuer: &'a str,
    pub key_type: &'a str,
    pub ca_name: &'a str,
    pub certificate_pem: &'a str,
    pub chain_pem: &'a str,
}

pub struct ApprovalDetails<'a> {
    pub order_id: &'a str,
    pub names: &'a [String],
    pub requester: &'a str,
    pub admin_email: &'a str,
    pub link: &'a str,
    pub expires_at: OffsetDateTime,
    pub ca_name: &'a str,
}

fn date(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

/// A translated message for HTML: the translation's own text is escaped, and
/// so is every argument, in bold when named in `strong`. Private-use
/// placeholders stand in for the arguments while the text is escaped, so
/// markup never comes from a translation or a value.
fn html_t(lang: Lang, id: &str, args: &[(&str, &str)], strong: &[&str]) -> String {
    let marks: Vec<String> = (0..args.len())
        .map(|i| format!("\u{E000}{i}\u{E001}"))
        .collect();
    let marked: Vec<(&str, &str)> = args
        .iter()
        .zip(&marks)
        .map(|((name, _), mark)| (*name, mark.as_str()))
        .collect();
    let mut html = esc(&t_args(lang, id, &marked)).into_owned();
    for ((name, value), mark) in args.iter().zip(&marks) {
        let value = if strong.contains(name) {
            format!("<strong>{}</strong>", esc(value))
        } else {
            esc(value).into_owned()
        };
        html = html.replace(mark.as_str(), &value);
    }
    html
}

fn greeting(lang: Lang, name: &str) -> String {
    if name.is_empty() {
        t(lang, "email-greeting")
    } else {
        t_args(lang, "email-greeting-name", &[("name", name)])
    }
}

/// What an email says, before it becomes a MIME message.
struct Content {
    subject: String,
    text: String,
    html: String,
}

fn build(
    from: &Mailbox,
    to: Mailbox,
    message_id: &str,
    subject: String,
    body: MultiPart,
) -> Result<Message, MailError> {
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .message_id(Some(message_id.to_string()))
        .multipart(body)
        .map_err(|e| MailError::Permanent(format!("cannot build message: {e}")))
}

pub fn fulfillment_email(
    from: &Mailbox,
    to: Mailbox,
    message_id: &str,
    d: &FulfillmentDetails,
    lang: Lang,
) -> Result<Message, MailError> {
    let c = fulfillment_content(d, lang);
    let fullchain = format!("{}{}", d.certificate_pem, d.chain_pem);
    let pem = ContentType::parse("application/x-pem-file").expect("static content type");
    let body = MultiPart::mixed()
        .multipart(MultiPart::alternative_plain_html(c.text, c.html))
        .singlepart(
            Attachment::new("certificate.pem".into())
                .body(d.certificate_pem.to_string(), pem.clone()),
        )
        .singlepart(Attachment::new("chain.pem".into()).body(d.chain_pem.to_string(), pem.clone()))
        .singlepart(Attachment::new("fullchain.pem".into()).body(fullchain, pem));
    build(from, to, message_id, c.subject, body)
}

fn fulfillment_content(d: &FulfillmentDetails, lang: Lang) -> Content {
    let subject = t_args(
        lang,
        "fulfillment-subject",
        &[("domain", d.common_name), ("order", d.order_id)],
    );
    let label = |id: &str| t(lang, id);
    let rows: Vec<(String, String)> = vec![
        (
            label("fulfillment-label-common-name"),
            d.common_name.to_string(),
        ),
        (label("fulfillment-label-names"), d.names.join(", ")),
        (label("fulfillment-label-serial"), d.serial.to_string()),
        (label("fulfillment-label-valid-from"), date(d.not_before)),
        (label("fulfillment-label-valid-until"), date(d.not_after)),
        (
            label("fulfillment-label-fingerprint"),
            d.sha256_fingerprint.to_string(),
        ),
        (label("fulfillment-label-issuer"), d.issuer.to_string()),
        (label("fulfillment-label-key-type"), d.key_type.to_string()),
        (label("email-label-order"), d.order_id.to_string()),
    ];
    let greeting = greeting(lang, d.admin_name);
    let intro_args = [("ca", d.ca_name), ("domain", d.common_name)];

    // Labels differ in length between languages: align on the longest.
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 1;
    let mut text = format!(
        "{greeting}\n\n{}\n\n",
        t_args(lang, "fulfillment-intro", &intro_args)
    );
    for (k, v) in &rows {
        text.push_str(&format!("{k:<width$} {v}\n"));
    }
    text.push_str(&install_notes_text(lang));

    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#1f2933\">\
         <p>{}</p><p>{}</p><table style=\"border-collapse:collapse\">",
        esc(&greeting),
        html_t(lang, "fulfillment-intro", &intro_args, &["domain"]),
    );
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:2px 12px 2px 0\">{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        ));
    }
    html.push_str("</table>");
    html.push_str(&install_notes_html(lang));
    html.push_str("</body></html>");
    Content {
        subject,
        text,
        html,
    }
}

/// The attachments, by file name, and what each holds.
fn attachments(lang: Lang) -> [(&'static str, String); 3] {
    [
        (
            "certificate.pem",
            t(lang, "fulfillment-attached-certificate"),
        ),
        ("chain.pem", t(lang, "fulfillment-attached-chain")),
        ("fullchain.pem", t(lang, "fulfillment-attached-fullchain")),
    ]
}

fn install_notes_text(lang: Lang) -> String {
    let key = format!("<{}>", t(lang, "fulfillment-private-key"));
    let mut text = format!("\n{}:\n", t(lang, "fulfillment-attached"));
    for (file, what) in attachments(lang) {
        text.push_str(&format!("  {file:<16} {what}\n"));
    }
    text.push_str(&format!(
        "\n{}:\n  \
         - nginx: ssl_certificate fullchain.pem; ssl_certificate_key {key};\n  \
         - Apache: SSLCertificateFile certificate.pem, SSLCertificateChainFile chain.pem,\n    \
         SSLCertificateKeyFile {key}\n  \
         - {}\n\n{}\n",
        t(lang, "fulfillment-install"),
        t(lang, "fulfillment-key-note"),
        t(lang, "fulfillment-no-copy"),
    ));
    text
}

fn install_notes_html(lang: Lang) -> String {
    let key = esc(&format!("<{}>", t(lang, "fulfillment-private-key"))).into_owned();
    let mut html = format!("<h3>{}</h3><ul>", esc(&t(lang, "fulfillment-attached")));
    for (file, what) in attachments(lang) {
        html.push_str(&format!("<li><code>{file}</code>: {}</li>", esc(&what)));
    }
    html.push_str(&format!(
        "</ul><h3>{}</h3><ul>\
         <li>nginx: <code>ssl_certificate fullchain.pem; ssl_certificate_key {key};</code></li>\
         <li>Apache: <code>SSLCertificateFile certificate.pem</code>, \
         <code>SSLCertificateChainFile chain.pem</code>, \
         <code>SSLCertificateKeyFile {key}</code></li>\
         <li>{}</li></ul><p>{}</p>",
        esc(&t(lang, "fulfillment-install")),
        esc(&t(lang, "fulfillment-key-note")),
        esc(&t(lang, "fulfillment-no-copy")),
    ));
    html
}

pub fn approval_email(
    from: &Mailbox,
    to: Mailbox,
    message_id: &str,
    d: &ApprovalDetails,
    lang: Lang,
) -> Result<Message, MailError> {
    let c = approval_content(d, lang);
    build(
        from,
        to,
        message_id,
        c.subject,
        MultiPart::alternative_plain_html(c.text, c.html),
    )
}

fn approval_content(d: &ApprovalDetails, lang: Lang) -> Content {
    let subject = t_args(
        lang,
        "approval-subject",
        &[
            ("domain", d.names.first().map(String::as_str).unwrap_or("?")),
            ("order", d.order_id),
        ],
    );
    let names = d.names.join(", ");
    let expires = date(d.expires_at);
    let greeting = t(lang, "email-greeting");
    let order_label = t(lang, "email-label-order");
    let intro_args = [("requester", d.requester), ("ca", d.ca_name)];
    let recipient_args = [("admin", d.admin_email)];
    let expiry_args = [("expires", expires.as_str())];
    let text = format!(
        "{greeting}\n\n{intro}\n\n  {names}\n\n\
         {order_label}: {order}\n{recipient}\n\n\
         {reason}\n{open}\n\n  {link}\n\n\
         {expiry}\n{unexpected}\n",
        intro = t_args(lang, "approval-intro", &intro_args),
        order = d.order_id,
        recipient = t_args(lang, "approval-recipient", &recipient_args),
        reason = t(lang, "approval-reason"),
        open = t(lang, "approval-open"),
        link = d.link,
        expiry = t_args(lang, "approval-expiry", &expiry_args),
        unexpected = t(lang, "approval-unexpected"),
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#1f2933\">\
         <p>{greeting}</p><p>{intro}</p>\
         <p><strong>{names}</strong></p><p>{order_label}: <code>{order}</code><br>\
         {recipient}</p>\
         <p>{reason}</p>\
         <p><a href=\"{href}\">{link_text}</a></p>\
         <p>{expiry} {unexpected}</p></body></html>",
        greeting = esc(&greeting),
        intro = html_t(lang, "approval-intro", &intro_args, &[]),
        names = esc(&names),
        order_label = esc(&order_label),
        order = esc(d.order_id),
        recipient = html_t(lang, "approval-recipient", &recipient_args, &[]),
        reason = esc(&t(lang, "approval-reason")),
        href = html_escape::encode_double_quoted_attribute(d.link),
        link_text = esc(&t(lang, "approval-link")),
        expiry = html_t(lang, "approval-expiry", &expiry_args, &[]),
        unexpected = esc(&t(lang, "approval-unexpected")),
    );
    Content {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fulfillment(lang: Lang) -> Content {
        let names = vec!["www.example.com".to_string(), "example.com".to_string()];
        fulfillment_content(
            &FulfillmentDetails {
                order_id: "ord_42",
                admin_name: "Mario Rossi",
                common_name: "www.example.com",
                names: &names,
                serial: "0a1b2c",
                not_before: time::macros::datetime!(2025-01-01 00:00 UTC),
                not_after: time::macros::datetime!(2025-04-01 00:00 UTC),
                sha256_fingerprint: "AB:CD:EF",
                issuer: "CN=certdesk Intermediate",
                key_type: "ECDSA P-256",
                ca_name: "certdesk CA",
                certificate_pem: "CERT",
                chain_pem: "CHAIN",
            },
            lang,
        )
    }

    fn approval(lang: Lang) -> Content {
        let names = vec!["www.example.com".to_string()];
        approval_content(
            &ApprovalDetails {
                order_id: "ord_42",
                names: &names,
                requester: "ops@acme.example",
                admin_email: "it@example.com",
                link: "http://127.0.0.1:8080/approve/abc?x=1&y=2",
                expires_at: time::macros::datetime!(2025-02-01 12:00 UTC),
                ca_name: "certdesk <CA>",
            },
            lang,
        )
    }

    /// A missing message renders as `[id]`, a missing argument as `{$arg}`.
    fn assert_fully_translated(c: &Content) {
        for part in [&c.subject, &c.text, &c.html] {
            assert!(!part.contains('['), "untranslated message in {part}");
            assert!(!part.contains('{'), "missing argument in {part}");
            assert!(!part.contains('\u{E000}'), "placeholder left in {part}");
        }
    }

    #[test]
    fn every_email_is_fully_translated() {
        for lang in Lang::ALL {
            assert_fully_translated(&fulfillment(lang));
            assert_fully_translated(&approval(lang));
        }
    }

    #[test]
    fn english_keeps_its_texts() {
        let f = fulfillment(Lang::En);
        assert_eq!(
            f.subject,
            "Your SSL certificate for www.example.com is ready (order ord_42)"
        );
        assert!(f
            .text
            .starts_with("Hello Mario Rossi,\n\ncertdesk CA has issued"));
        assert!(f.text.contains("SHA-256 fingerprint  AB:CD:EF\n"));
        assert!(f
            .text
            .contains("  certificate.pem  the certificate alone\n"));
        assert!(f
            .html
            .contains("the SSL/TLS certificate for <strong>www.example.com</strong>."));
        let a = approval(Lang::En);
        assert!(a
            .subject
            .starts_with("Approve the SSL certificate request for www.example.com"));
        assert!(a.text.contains("Order: ord_42\n"));
    }

    #[test]
    fn italian_emails() {
        let f = fulfillment(Lang::It);
        assert_eq!(
            f.subject,
            "Il tuo certificato SSL per www.example.com è pronto (ordine ord_42)"
        );
        for s in [
            "Gentile Mario Rossi,",
            "certdesk CA ha emesso il certificato SSL/TLS per www.example.com.",
            "Impronta SHA-256",
            "AB:CD:EF",
            "ECDSA P-256",
            "Valido fino al",
            "fullchain.pem",
            "<la tua chiave privata>",
        ] {
            assert!(f.text.contains(s), "{s:?} not in {}", f.text);
        }
        assert!(f.html.contains("per <strong>www.example.com</strong>."));
        assert!(f.html.contains("&lt;la tua chiave privata&gt;"));

        let a = approval(Lang::It);
        assert_eq!(
            a.subject,
            "Approva la richiesta di certificato SSL per www.example.com (ordine ord_42)"
        );
        for s in [
            "Buongiorno,",
            "ops@acme.example ha richiesto a certdesk <CA> un certificato SSL/TLS per:",
            "Ordine: ord_42",
            "Il certificato verrà inviato a: it@example.com",
            "scade il 2025-02-01T12:00:00Z",
        ] {
            assert!(a.text.contains(s), "{s:?} not in {}", a.text);
        }
        assert!(a.html.contains("Esamina la richiesta"));
    }

    #[test]
    fn html_escapes_values_and_translations() {
        let a = approval(Lang::It);
        assert!(a.html.contains("richiesto a certdesk &lt;CA&gt; un"));
        assert!(a
            .html
            .contains("href=\"http://127.0.0.1:8080/approve/abc?x=1&amp;y=2\""));
        assert!(!a.html.contains("<CA>"));
    }
}
