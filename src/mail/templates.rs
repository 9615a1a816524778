//! The two emails of an order: the approval request to the approver, and the
//! fulfillment email with the certificate to the domain administrator.
//!
//! Text and HTML bodies say the same; every value put into HTML is escaped.

use html_escape::encode_text as esc;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::Message;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::MailError;

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
) -> Result<Message, MailError> {
    let subject = format!(
        "Your SSL certificate for {} is ready (order {})",
        d.common_name, d.order_id
    );
    let rows: Vec<(&str, String)> = vec![
        ("Common name", d.common_name.to_string()),
        ("Names", d.names.join(", ")),
        ("Serial number", d.serial.to_string()),
        ("Valid from", date(d.not_before)),
        ("Valid until", date(d.not_after)),
        ("SHA-256 fingerprint", d.sha256_fingerprint.to_string()),
        ("Issuer", d.issuer.to_string()),
        ("Key type", d.key_type.to_string()),
        ("Order", d.order_id.to_string()),
    ];
    let greeting = if d.admin_name.is_empty() {
        "Hello,".to_string()
    } else {
        format!("Hello {},", d.admin_name)
    };
    let mut text = format!(
        "{greeting}\n\n{} has issued the SSL/TLS certificate for {}.\n\n",
        d.ca_name, d.common_name
    );
    for (k, v) in &rows {
        text.push_str(&format!("{k:<20} {v}\n"));
    }
    text.push_str(INSTALL_NOTES_TEXT);
    let mut html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#1f2933\">\
         <p>{}</p><p>{} has issued the SSL/TLS certificate for <strong>{}</strong>.</p>\
         <table style=\"border-collapse:collapse\">",
        esc(&greeting),
        esc(d.ca_name),
        esc(d.common_name)
    );
    for (k, v) in &rows {
        html.push_str(&format!(
            "<tr><th style=\"text-align:left;padding:2px 12px 2px 0\">{}</th><td><code>{}</code></td></tr>",
            esc(k),
            esc(v)
        ));
    }
    html.push_str("</table>");
    html.push_str(INSTALL_NOTES_HTML);
    html.push_str("</body></html>");

    let fullchain = format!("{}{}", d.certificate_pem, d.chain_pem);
    let pem = ContentType::parse("application/x-pem-file").expect("static content type");
    let body = MultiPart::mixed()
        .multipart(MultiPart::alternative_plain_html(text, html))
        .singlepart(
            Attachment::new("certificate.pem".into())
                .body(d.certificate_pem.to_string(), pem.clone()),
        )
        .singlepart(Attachment::new("chain.pem".into()).body(d.chain_pem.to_string(), pem.clone()))
        .singlepart(Attachment::new("fullchain.pem".into()).body(fullchain, pem));
    build(from, to, message_id, subject, body)
}

const INSTALL_NOTES_TEXT: &str = "
Attached:
  certificate.pem  the certificate alone
  chain.pem        the intermediate certificate(s)
  fullchain.pem    the certificate followed by the chain

Installing it:
  - nginx: ssl_certificate fullchain.pem; ssl_certificate_key <your private key>;
  - Apache: SSLCertificateFile certificate.pem, SSLCertificateChainFile chain.pem,
    SSLCertificateKeyFile <your private key>
  - The private key never left your server: use the key you made the CSR with.

The desk that ordered this certificate does not keep a copy of it. If you want it
to hold the certificate for you, import it in SSL > Certificates.
";

const INSTALL_NOTES_HTML: &str = "<h3>Attached</h3><ul>\
<li><code>certificate.pem</code>: the certificate alone</li>\
<li><code>chain.pem</code>: the intermediate certificate(s)</li>\
<li><code>fullchain.pem</code>: the certificate followed by the chain</li></ul>\
<h3>Installing it</h3><ul>\
<li>nginx: <code>ssl_certificate fullchain.pem; ssl_certificate_key &lt;your private key&gt;;</code></li>\
<li>Apache: <code>SSLCertificateFile certificate.pem</code>, <code>SSLCertificateChainFile chain.pem</code>, \
<code>SSLCertificateKeyFile &lt;your private key&gt;</code></li>\
<li>The private key never left your server: use the key you made the CSR with.</li></ul>\
<p>The desk that ordered this certificate does not keep a copy of it. If you want it to hold \
the certificate for you, import it in SSL &gt; Certificates.</p>";

pub fn approval_email(
    from: &Mailbox,
    to: Mailbox,
    message_id: &str,
    d: &ApprovalDetails,
) -> Result<Message, MailError> {
    let subject = format!(
        "Approve the SSL certificate request for {} (order {})",
        d.names.first().map(String::as_str).unwrap_or("?"),
        d.order_id
    );
    let names = d.names.join(", ");
    let text = format!(
        "Hello,\n\n{requester} asked {ca} for an SSL/TLS certificate for:\n\n  {names}\n\n\
         Order: {order}\nThe certificate will be sent to: {admin}\n\n\
         You receive this message because you are an administrator of the domain.\n\
         To approve or decline the request, open:\n\n  {link}\n\n\
         The link works once and expires on {expires}.\n\
         If you did not expect this request, decline it or ignore this message.\n",
        requester = d.requester,
        ca = d.ca_name,
        order = d.order_id,
        admin = d.admin_email,
        link = d.link,
        expires = date(d.expires_at),
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif;color:#1f2933\">\
         <p>Hello,</p><p>{requester} asked {ca} for an SSL/TLS certificate for:</p>\
         <p><strong>{names}</strong></p><p>Order: <code>{order}</code><br>\
         The certificate will be sent to: {admin}</p>\
         <p>You receive this message because you are an administrator of the domain.</p>\
         <p><a href=\"{link}\">Review the request and approve or decline it</a></p>\
         <p>The link works once and expires on {expires}. If you did not expect this request, \
         decline it or ignore this message.</p></body></html>",
        requester = esc(d.requester),
        ca = esc(d.ca_name),
        names = esc(&names),
        order = esc(d.order_id),
        admin = esc(d.admin_email),
        link = html_escape::encode_double_quoted_attribute(d.link),
        expires = esc(&date(d.expires_at)),
    );
    build(
        from,
        to,
        message_id,
        subject,
        MultiPart::alternative_plain_html(text, html),
    )
}
