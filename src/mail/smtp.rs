//! SMTP client: lettre's protocol code over connections this module opens
//! and pools itself, with TCP_NODELAY set.
//!
//! Why not lettre's `AsyncSmtpTransport`: its sockets keep Nagle's
//! algorithm on, and lettre writes a message's final `\r\n.\r\n` as a
//! separate 5-byte write after the body. Nagle holds those 5 bytes until the
//! body is acknowledged, and the server delays that acknowledgement (it has
//! nothing to say until the terminator arrives): every message stalled
//! ~40 ms, measured with strace against postfix's smtp-sink (terminator
//! written at .214366, "250 Ok" read at .257198), capping a connection at
//! ~23 messages/s. With TCP_NODELAY the whole transaction takes under 1 ms
//! on loopback.
//!
//! Where the server offers PIPELINING (RFC 2920) a message takes two round
//! trips instead of lettre's four: MAIL, RCPT and DATA go in one write and
//! their replies are read together, then the dot-stuffed body and its
//! terminator go in one write. Servers that do not offer it get lettre's
//! command-by-command `send`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{AsyncSmtpConnection, AsyncTokioStream, TlsParameters};
use lettre::transport::smtp::commands::{Data, Ehlo, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use tokio::net::TcpStream;

use super::MailError;

/// Idle connections kept for reuse, and how long one may sit idle (servers
/// commonly drop idle clients after a minute or more; RFC 5321 4.5.3.2.7
/// asks servers to wait at least 5 minutes). When the workers and the
/// requests' own submissions had 16 slots each, up to 32 emails went out at
/// once, and with room for only 16 idle about a quarter of the issuance
/// benchmark's emails opened a new connection (1,118 connects in 4 s; none
/// with 32). They now share 16 slots (`Desk::at_once`); the room for 32
/// stays, as it costs nothing until used.
const MAX_IDLE: usize = 32;
const IDLE_FOR: Duration = Duration::from_secs(60);
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// `smtp://host` without a `tls` parameter.
    None,
    /// `smtp://host?tls=opportunistic`: STARTTLS when offered.
    StartTlsIfOffered,
    /// `smtp://host?tls=required`: STARTTLS or fail.
    StartTls,
    /// `smtps://host`: TLS from the first byte.
    Implicit,
}

pub struct SmtpClient {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    idle: Mutex<Vec<(Connection, Instant)>>,
}

/// A connection ready for `MAIL FROM`, and whether its server said it takes
/// pipelined commands (lettre does not keep that from its own EHLO).
struct Connection {
    smtp: AsyncSmtpConnection,
    pipelining: bool,
}

impl Connection {
    /// One mail transaction. On any error the connection is closed (QUIT),
    /// as lettre's own `send` does: replies still unread after a refused
    /// command must not be taken for the next message's.
    async fn send(
        &mut self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<(), lettre::transport::smtp::Error> {
        let body = std::str::from_utf8(message)
            .ok()
            .filter(|_| self.pipelining);
        let (Some(body), Some(options)) = (body, self.mail_options(envelope, message)) else {
            self.smtp.send(envelope, message).await?;
            return Ok(());
        };
        let mut commands = Mail::new(envelope.from().cloned(), options).to_string();
        for to in envelope.to() {
            commands.push_str(&Rcpt::new(to.clone(), vec![]).to_string());
        }
        commands.push_str(&Data.to_string());
        let result = async {
            // One reply to MAIL, one per RCPT, one to DATA, in order.
            self.smtp.command(commands).await?;
            for _ in envelope.to() {
                self.smtp.read_response().await?;
            }
            self.smtp.read_response().await?;
            self.smtp.command(dot_stuffed(body)).await
        }
        .await;
        if let Err(e) = result {
            self.smtp.abort().await;
            return Err(e);
        }
        Ok(())
    }

    /// MAIL FROM's parameters as lettre's `send` chooses them; None where
    /// the server lacks an extension the message needs (lettre's `send`
    /// then refuses it with its own error).
    fn mail_options(&self, envelope: &Envelope, message: &[u8]) -> Option<Vec<MailParameter>> {
        let info = self.smtp.server_info();
        let mut options = vec![];
        let non_ascii = |a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii();
        if envelope.from().is_some_and(non_ascii) || envelope.to().iter().any(non_ascii) {
            info.supports_feature(Extension::SmtpUtfEight)
                .then_some(())?;
            options.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            info.supports_feature(Extension::EightBitMime)
                .then_some(())?;
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        Some(options)
    }
}

/// The message as DATA sends it (RFC 5321 4.5.2): a line starting with a
/// period gets a second one, and the terminator follows.
fn dot_stuffed(body: &str) -> String {
    let mut out = String::with_capacity(body.len() + 64);
    let mut line_start = true;
    for line in body.split_inclusive("\r\n") {
        if line_start && line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        line_start = line.ends_with("\r\n");
    }
    if !line_start {
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

impl SmtpClient {
    /// The URL forms lettre documents: `smtp://host[:port]` (plain, port
    /// 25), `smtp://…?tls=required|opportunistic` (STARTTLS, port 587),
    /// `smtps://host[:port]` (implicit TLS, port 465); credentials as
    /// `user:password@`, percent-encoded.
    pub fn from_url(url: &str) -> Result<SmtpClient, MailError> {
        let bad = |m: String| MailError::Config(format!("SMTP URL: {m}"));
        let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        let host = parsed
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host".into()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = parsed
            .query_pairs()
            .find(|(k, _)| k == "tls")
            .map(|(_, v)| v.into_owned());
        let (security, default_port) = match (parsed.scheme(), tls.as_deref()) {
            ("smtp", None) => (Security::None, 25),
            ("smtp", Some("required")) => (Security::StartTls, 587),
            ("smtp", Some("opportunistic")) => (Security::StartTlsIfOffered, 587),
            ("smtps", None) => (Security::Implicit, 465),
            (scheme, tls) => {
                return Err(bad(format!(
                    "unknown scheme {scheme:?} or tls parameter {tls:?}; use smtp://, smtp://…?tls=required, smtp://…?tls=opportunistic or smtps://"
                )))
            }
        };
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| bad("credentials are not valid percent-encoded UTF-8".into()))
        };
        let credentials = match parsed.password() {
            Some(password) => Some(Credentials::new(
                decode(parsed.username())?,
                decode(password)?,
            )),
            None => None,
        };
        Ok(SmtpClient {
            port: parsed.port().unwrap_or(default_port),
            host,
            security,
            credentials,
            hello: ClientId::default(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// The server by scheme, host and the port actually used; never the
    /// credentials (this goes to logs and the start-up banner).
    pub fn describe(&self) -> String {
        let scheme = match self.security {
            Security::Implicit => "smtps",
            _ => "smtp",
        };
        let tls = match self.security {
            Security::StartTls => " (STARTTLS required)",
            Security::StartTlsIfOffered => " (STARTTLS if offered)",
            Security::None | Security::Implicit => "",
        };
        format!("SMTP {scheme}://{}:{}{tls}", self.host, self.port)
    }

    /// Sends one message. A reused connection that turns out to be dead
    /// (the server closed it while idle) is replaced once; a reply from the
    /// server, or its silence, is never retried here (the job queue does).
    pub async fn send(&self, envelope: &Envelope, message: &[u8]) -> Result<(), MailError> {
        if let Some(mut conn) = self.take_idle() {
            match tokio::time::timeout(TIMEOUT, conn.send(envelope, message)).await {
                Ok(Ok(_)) => {
                    self.put_idle(conn);
                    return Ok(());
                }
                Ok(Err(e)) if e.is_response() || e.is_timeout() => return Err(classify(e)),
                Ok(Err(_)) => {} // closed while idle: a fresh connection
                Err(_) => return Err(silent()),
            }
        }
        let mut conn = match tokio::time::timeout(TIMEOUT, self.connect()).await {
            Ok(r) => r?,
            Err(_) => return Err(silent()),
        };
        match tokio::time::timeout(TIMEOUT, conn.send(envelope, message)).await {
            Ok(r) => r.map_err(classify)?,
            Err(_) => return Err(silent()),
        };
        self.put_idle(conn);
        Ok(())
    }

    fn take_idle(&self) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap();
        while let Some((conn, since)) = idle.pop() {
            if since.elapsed() < IDLE_FOR && !conn.smtp.has_broken() {
                return Some(conn);
            }
        }
        None
    }

    fn put_idle(&self, conn: Connection) {
        if conn.smtp.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap();
        if idle.len() < MAX_IDLE {
            idle.push((conn, Instant::now()));
        }
    }

    async fn connect(&self) -> Result<Connection, MailError> {
        let io =
            |e: std::io::Error| MailError::Transient(format!("{}:{}: {e}", self.host, self.port));
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let mut conn = if self.security == Security::Implicit {
            let tls = implicit_tls(tcp, &self.host).await.map_err(io)?;
            AsyncSmtpConnection::connect_with_transport(Box::new(tls), &self.hello).await
        } else {
            AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await
        }
        .map_err(classify)?;
        let starttls = match self.security {
            Security::StartTls => true,
            Security::StartTlsIfOffered => conn.can_starttls(),
            Security::None | Security::Implicit => false,
        };
        if starttls {
            let params = TlsParameters::new(self.host.clone())
                .map_err(|e| MailError::Config(format!("TLS for {}: {e}", self.host)))?;
            conn.starttls(params, &self.hello).await.map_err(classify)?;
        }
        // lettre reads the server's extensions but keeps no record of
        // PIPELINING: ask again, once per connection, after STARTTLS (whose
        // EHLO is the one that counts) and before AUTH.
        let pipelining = conn
            .command(Ehlo::new(self.hello.clone()))
            .await
            .map_err(classify)?
            .message()
            .skip(1)
            .any(|line| line.trim().eq_ignore_ascii_case("PIPELINING"));
        if let Some(credentials) = &self.credentials {
            conn.auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(classify)?;
        }
        Ok(Connection {
            smtp: conn,
            pipelining,
        })
    }
}

/// 5xx replies are final; everything else (4xx, network, TLS) may pass.
fn classify(e: lettre::transport::smtp::Error) -> MailError {
    if e.is_permanent() {
        MailError::Permanent(e.to_string())
    } else {
        MailError::Transient(e.to_string())
    }
}

fn silent() -> MailError {
    MailError::Transient(format!(
        "no answer from the mail server in {} s",
        TIMEOUT.as_secs()
    ))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// TLS from the first byte (SMTPS, port 465), verified against the
/// Mozilla roots, as lettre's own `smtps://` does.
async fn implicit_tls(tcp: TcpStream, host: &str) -> std::io::Result<TlsStream> {
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| invalid(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from(host.to_string()).map_err(|e| invalid(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    Ok(TlsStream(stream))
}

#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

impl tokio::io::AsyncRead for TlsStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for TlsStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_security_and_default_port_as_lettre_documents() {
        let c = SmtpClient::from_url("smtp://mail.example.com").unwrap();
        assert_eq!((c.security, c.port), (Security::None, 25));
        let c = SmtpClient::from_url("smtp://u:p%40ss@mail.example.com?tls=required").unwrap();
        assert_eq!((c.security, c.port), (Security::StartTls, 587));
        assert!(c.credentials.is_some());
        assert_eq!(
            c.describe(),
            "SMTP smtp://mail.example.com:587 (STARTTLS required)"
        );
        let c = SmtpClient::from_url("smtp://mail.example.com:2525?tls=opportunistic").unwrap();
        assert_eq!((c.security, c.port), (Security::StartTlsIfOffered, 2525));
        let c = SmtpClient::from_url("smtps://mail.example.com").unwrap();
        assert_eq!((c.security, c.port), (Security::Implicit, 465));
    }

    #[test]
    fn a_line_starting_with_a_period_is_doubled_and_the_message_terminated() {
        assert_eq!(dot_stuffed("a\r\n.b\r\n"), "a\r\n..b\r\n.\r\n");
        assert_eq!(dot_stuffed(".\r\nx.y"), "..\r\nx.y\r\n.\r\n");
        // Only a period at a line's start: CR or LF alone do not start one,
        // as lettre's own codec has it.
        assert_eq!(dot_stuffed("x\n.y\r.z"), "x\n.y\r.z\r\n.\r\n");
        assert_eq!(dot_stuffed(""), ".\r\n");
    }

    #[test]
    fn a_bad_url_names_the_problem() {
        for url in [
            "http://mail.example.com",
            "smtp://mail.example.com?tls=maybe",
            "smtp://",
        ] {
            let Err(MailError::Config(m)) = SmtpClient::from_url(url) else {
                panic!("{url} accepted");
            };
            assert!(m.starts_with("SMTP URL:"), "{m}");
        }
        assert_eq!(percent_decode("p%40ss").as_deref(), Some("p@ss"));
        assert_eq!(percent_decode("bad%4"), None);
    }
}
