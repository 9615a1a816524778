//! Outgoing mail: the messages the CA sends and the transports that carry them.
//!
//! Two transports: SMTP (plain, STARTTLS or implicit TLS, with credentials, as
//! the URL says) and, for the embedded default, an outbox folder of `.eml`
//! files. Each message carries a Message-ID fixed per email request, so a
//! message sent twice after a crash is recognisably the same message.

pub mod smtp;
pub mod templates;

use std::path::{Path, PathBuf};

use lettre::message::Mailbox;
use lettre::Message;

use crate::domain::EmailAddress;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum MailError {
    /// Worth trying again later: connection refused, timeouts, 4xx replies.
    #[error("mail server unavailable: {0}")]
    Transient(String),
    /// The server refused the message for good (5xx); its reply is kept.
    #[error("mail server refused the message: {0}")]
    Permanent(String),
    #[error("mail configuration: {0}")]
    Config(String),
}

enum Transport {
    Smtp(smtp::SmtpClient),
    Outbox(PathBuf),
}

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    description: String,
    message_id_domain: String,
}

impl Mailer {
    /// `url`: `smtp://host:port` (plain), `smtp://…?tls=required` (STARTTLS),
    /// `smtps://user:pass@host:465` (implicit TLS).
    pub fn smtp(url: &str, from: &str) -> Result<Mailer, MailError> {
        let transport = smtp::SmtpClient::from_url(url)?;
        let description = transport.describe();
        Mailer::new(Transport::Smtp(transport), from, description)
    }

    pub fn outbox(dir: &Path, from: &str) -> Result<Mailer, MailError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| MailError::Config(format!("outbox folder {}: {e}", dir.display())))?;
        let description = format!("outbox folder {}", dir.display());
        Mailer::new(Transport::Outbox(dir.to_path_buf()), from, description)
    }

    fn new(transport: Transport, from: &str, description: String) -> Result<Mailer, MailError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| MailError::Config(format!("sender address {from:?}: {e}")))?;
        let message_id_domain = from.email.domain().to_string();
        Ok(Mailer {
            transport,
            from,
            description,
            message_id_domain,
        })
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    pub fn from(&self) -> &Mailbox {
        &self.from
    }

    /// The Message-ID for an email request: the same on every attempt.
    pub fn message_id_for(&self, request_id: &str) -> String {
        format!("<{request_id}@{}>", self.message_id_domain)
    }

    pub async fn send(&self, message: Message) -> Result<(), MailError> {
        match &self.transport {
            Transport::Smtp(smtp) => smtp.send(message.envelope(), &message.formatted()).await,
            Transport::Outbox(dir) => write_to_outbox(dir, &message).await,
        }
    }
}

/// One file per Message-ID, written atomically: a retried request replaces
/// its own file instead of adding a second one.
async fn write_to_outbox(dir: &Path, message: &Message) -> Result<(), MailError> {
    let id = message
        .headers()
        .get_raw("Message-ID")
        .unwrap_or("no-id")
        .trim_matches(|c| c == '<' || c == '>')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    let final_path = dir.join(format!("{id}.eml"));
    let tmp_path = dir.join(format!(".{id}.eml.tmp"));
    let bytes = message.formatted();
    let io = |e: std::io::Error| MailError::Transient(format!("outbox {}: {e}", dir.display()));
    tokio::fs::write(&tmp_path, bytes).await.map_err(io)?;
    tokio::fs::rename(&tmp_path, &final_path)
        .await
        .map_err(io)?;
    Ok(())
}

pub fn mailbox(name: Option<&str>, address: &EmailAddress) -> Result<Mailbox, MailError> {
    let email = address
        .as_str()
        .parse()
        .map_err(|e| MailError::Permanent(format!("address {address}: {e}")))?;
    Ok(Mailbox::new(
        name.filter(|n| !n.is_empty()).map(str::to_string),
        email,
    ))
}
