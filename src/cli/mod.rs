//! The `certdesk` command. `serve` runs the desk; `admin` works on the data
//! folder directly; everything else talks to a running desk over the REST
//! API, as `aws` or `step` do.

mod client;
mod output;

use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};

use crate::ca::builtin::Validation;
use crate::config::{FileConfig, ServeOverrides, ServeSettings, DEFAULT_DATA_DIR};
use crate::service::{accounts, ServiceError};
use client::{Client, ClientError};
use output::Output;

#[derive(Parser)]
#[command(
    name = "certdesk",
    version,
    about = "Self-hosted SSL/TLS certificate order desk"
)]
pub struct Cli {
    /// URL of the desk (client commands).
    #[arg(long, global = true, env = "CERTDESK_URL")]
    url: Option<String>,
    /// API token (client commands).
    #[arg(long, global = true, env = "CERTDESK_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// TOML config file (server settings, and url/token for the client).
    #[arg(long, global = true, env = "CERTDESK_CONFIG")]
    config: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the desk: API, built-in CA, worker.
    Serve(ServeArgs),
    /// Orders: create, list, show, cancel, resend emails.
    #[command(subcommand)]
    Order(OrderCmd),
    /// The approver addresses allowed for a domain (CA/B Forum 3.2.2.4.4).
    ApproverEmails { domain: String },
    /// Certificate signing requests.
    #[command(subcommand)]
    Csr(CsrCmd),
    /// The certificate store: certificates imported by hand.
    #[command(subcommand)]
    Cert(CertCmd),
    /// Accounts, users and tokens, on the data folder directly.
    Admin(AdminArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Data folder (database, CA, outbox).
    #[arg(long, env = "CERTDESK_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL instead of the SQLite file in the data folder:
    /// postgres://USER:PASSWORD@HOST:5432/DATABASE.
    #[arg(long, env = "CERTDESK_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Address and port to listen on.
    #[arg(long, env = "CERTDESK_LISTEN")]
    listen: Option<String>,
    /// URL users and approvers reach the desk at (links in emails, AIA).
    #[arg(long, env = "CERTDESK_PUBLIC_URL")]
    public_url: Option<String>,
    /// Email of the first administrator, created on first start.
    #[arg(long, env = "CERTDESK_ADMIN_EMAIL")]
    admin_email: Option<String>,
    /// SMTP server: smtp://host:port, smtp://user:pass@host:587?tls=required, smtps://host:465.
    #[arg(long, env = "CERTDESK_SMTP_URL", hide_env_values = true)]
    smtp_url: Option<String>,
    /// Sender of the desk's emails.
    #[arg(long, env = "CERTDESK_MAIL_FROM")]
    mail_from: Option<String>,
    /// Resends of one email per order per hour.
    #[arg(long, env = "CERTDESK_RESEND_LIMIT_PER_HOUR")]
    resend_limit_per_hour: Option<u32>,
    /// Built-in CA validation: email (approval link) or none (issue at once).
    #[arg(long, env = "CERTDESK_VALIDATION", value_enum)]
    validation: Option<ValidationArg>,
    /// Longest validity the built-in CA issues, in days (at most 397).
    #[arg(long, env = "CERTDESK_MAX_DAYS")]
    max_days: Option<u32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum ValidationArg {
    Email,
    None,
}

#[derive(Subcommand)]
enum OrderCmd {
    /// Order a certificate for the names in a CSR.
    Create {
        #[arg(long)]
        csr: PathBuf,
        /// Domain administrator who receives the certificate by email.
        #[arg(long)]
        admin_email: String,
        #[arg(long, default_value = "")]
        admin_name: String,
        /// Approver address (see `certdesk approver-emails`).
        #[arg(long)]
        approver_email: Option<String>,
        #[arg(long)]
        ca: Option<String>,
        #[arg(long)]
        days: Option<u32>,
        /// Language of the emails: en or it.
        #[arg(long)]
        language: Option<String>,
        /// Makes a retried command return the first order instead of a second.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// List orders, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Everything about one order, with its email history.
    Show { id: String },
    /// Cancel an order still waiting for approval.
    Cancel { id: String },
    /// Ask the CA to send the fulfillment email again.
    ResendEmail {
        id: String,
        /// Do not ask for confirmation.
        #[arg(long, short)]
        yes: bool,
    },
    /// Ask the CA to send the approval email again.
    ResendApproval { id: String },
}

#[derive(Args)]
struct CertFiles {
    /// The certificate (PEM or DER), alone.
    #[arg(long)]
    cert: Option<PathBuf>,
    /// The certificate followed by its intermediates, in one file.
    #[arg(long, conflicts_with = "cert")]
    fullchain: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1; encrypted PKCS#8 needs --key-password-file).
    #[arg(long)]
    key: Option<PathBuf>,
    #[arg(long)]
    key_password_file: Option<PathBuf>,
    /// The intermediate certificates.
    #[arg(long)]
    chain: Option<PathBuf>,
    /// A PKCS#12 file instead of --cert/--key/--chain.
    #[arg(long, conflicts_with_all = ["cert", "fullchain", "key", "chain"])]
    p12: Option<PathBuf>,
    /// File holding the PKCS#12 password.
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// The CSR the certificate was made from, kept for reference.
    #[arg(long)]
    csr: Option<PathBuf>,
    #[arg(long)]
    notes: Option<String>,
    /// Store an expired certificate anyway (marked expired).
    #[arg(long)]
    allow_expired: bool,
}

#[derive(Subcommand)]
enum CertCmd {
    /// Import a certificate with its key and intermediates.
    Import(CertFiles),
    /// List stored certificates, newest first.
    List {
        /// Part of a name on the certificate.
        #[arg(long)]
        name: Option<String>,
        /// Only those expiring within this many days.
        #[arg(long)]
        expiring_within: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Everything about one certificate.
    Show { id: String },
    /// Write cert.pem, chain.pem and fullchain.pem (and, after your password, the key or a PKCS#12).
    Download {
        id: String,
        #[arg(long)]
        out: PathBuf,
        /// Also write key.pem (mode 0600). Asks for your password.
        #[arg(long)]
        key: bool,
        /// Also write this PKCS#12 file. Asks for your password and the file's password.
        #[arg(long)]
        p12: Option<PathBuf>,
        /// File holding your password (instead of the prompt).
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// File holding the PKCS#12 file's password (instead of the prompt).
        #[arg(long)]
        export_password_file: Option<PathBuf>,
    },
    /// Change the notes.
    Edit {
        id: String,
        #[arg(long)]
        notes: String,
    },
    /// Replace the certificate (renewal), keeping the stored key unless --key or --p12 is given.
    Replace {
        id: String,
        #[command(flatten)]
        files: CertFiles,
    },
    /// Delete a certificate and its key.
    Delete {
        id: String,
        #[arg(long, short)]
        yes: bool,
    },
}

#[derive(Subcommand)]
enum CsrCmd {
    /// Show what a CSR asks for, and whether the CA accepts it.
    Decode { file: PathBuf },
}

#[derive(Args)]
struct AdminArgs {
    /// Data folder of the desk (anywhere on the command line).
    #[arg(long, env = "CERTDESK_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// The desk's PostgreSQL database, when it runs on one.
    #[arg(
        long,
        env = "CERTDESK_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    database_url: Option<String>,
    #[command(subcommand)]
    command: AdminCmd,
}

#[derive(Subcommand)]
enum AdminCmd {
    /// Seal every stored private key again under a new master key, without downtime.
    RotateMasterKey,
    #[command(subcommand)]
    Account(AccountCmd),
    #[command(subcommand)]
    User(UserCmd),
    #[command(subcommand)]
    Token(TokenCmd),
}

#[derive(Subcommand)]
enum AccountCmd {
    Create { name: String },
    List,
}

#[derive(Subcommand)]
enum UserCmd {
    Create {
        /// Account id or name.
        #[arg(long)]
        account: String,
        #[arg(long)]
        email: String,
        #[arg(long, value_parser = ["admin", "member", "viewer"])]
        role: String,
    },
    /// Set a user's console password (read from standard input when it is not a terminal).
    SetPassword {
        #[arg(long)]
        email: String,
    },
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create an API token; prints the token alone.
    Create {
        #[arg(long)]
        email: String,
    },
}

/// A failure the user can act on, printed as `error: …`.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Message(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// With its causes: "cannot open the database in d: <why>".
    #[error("{}", with_causes(.0))]
    Other(#[from] anyhow::Error),
}

/// The error and its causes, "a: b: c", leaving out a cause whose text the
/// message already carries: many of the desk's errors quote their source
/// ("database error: {0}"), and `{:#}` would print it twice.
fn with_causes(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

impl From<ServiceError> for CliError {
    fn from(e: ServiceError) -> Self {
        CliError::Message(e.to_string())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if let CliError::Client(ClientError::Api { body, .. }) = &e {
                if let Some(field) = body.get("field").and_then(Value::as_str) {
                    eprintln!("error: {e} (field: {field})");
                    return ExitCode::FAILURE;
                }
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CERTDESK_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,lettre=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let out = Output::new(cli.output);
    match cli.command {
        Command::Serve(args) => {
            init_logging();
            let file = FileConfig::load(cli.config.as_deref())
                .map_err(|e| CliError::Message(e.to_string()))?;
            let settings = ServeSettings::resolve(
                ServeOverrides {
                    data_dir: args.data_dir,
                    database_url: args.database_url,
                    listen: args.listen,
                    public_url: args.public_url,
                    admin_email: args.admin_email,
                    smtp_url: args.smtp_url,
                    mail_from: args.mail_from,
                    resend_limit_per_hour: args.resend_limit_per_hour,
                    validation: args.validation.map(|v| match v {
                        ValidationArg::Email => Validation::Email,
                        ValidationArg::None => Validation::None,
                    }),
                    max_days: args.max_days,
                },
                file,
            )
            .map_err(|e| CliError::Message(e.to_string()))?;
            crate::server::serve(settings).await?;
            Ok(())
        }
        Command::Admin(args) => {
            let file = FileConfig::load(cli.config.as_deref())
                .map_err(|e| CliError::Message(e.to_string()))?;
            let data_dir = args
                .data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into());
            let database_url = crate::config::database_url(args.database_url.or(file.database_url))
                .map_err(|e| CliError::Message(e.to_string()))?;
            admin(&out, &data_dir, database_url.as_deref(), args.command).await
        }
        command => {
            let file_path = cli.config.clone().or_else(FileConfig::default_client_path);
            let file = FileConfig::load(file_path.as_deref())
                .map_err(|e| CliError::Message(e.to_string()))?;
            let client = Client::new(cli.url.or(file.url), cli.token.or(file.token))?;
            client_command(&out, &client, command).await
        }
    }
}

async fn admin(
    out: &Output,
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    cmd: AdminCmd,
) -> Result<(), CliError> {
    if database_url.is_none() && !data_dir.join(crate::server::DB_FILE).exists() {
        return Err(CliError::Message(format!(
            "no desk database in {}: start the desk once with `certdesk serve --data-dir {}`, or pass --data-dir",
            data_dir.display(),
            data_dir.display()
        )));
    }
    let store = crate::server::open_store(data_dir, database_url).await?;
    let store = store.as_ref();
    match cmd {
        AdminCmd::RotateMasterKey => {
            let report = crate::service::keys::rotate_master_key(
                store,
                data_dir,
                std::env::var("CERTDESK_MASTER_KEY").ok().as_deref(),
                std::env::var("CERTDESK_NEW_MASTER_KEY").ok().as_deref(),
            )
            .await
            .map_err(|e| CliError::Message(e.to_string()))?;
            out.record(
                &json!({
                    "new_key_id": report.new_key_id,
                    "certificate_keys": report.certificate_keys,
                    "ca_secrets": report.ca_secrets,
                }),
                &[
                    ("new key id", "new_key_id"),
                    ("certificate keys", "certificate_keys"),
                    ("CA secrets", "ca_secrets"),
                ],
            );
        }
        AdminCmd::Account(AccountCmd::Create { name }) => {
            let a = accounts::create_account(store, &name).await?;
            out.record(
                &json!({"id": a.id, "name": a.name}),
                &[("id", "id"), ("name", "name")],
            );
        }
        AdminCmd::Account(AccountCmd::List) => {
            let list = store.list_accounts().await.map_err(ServiceError::from)?;
            let rows: Vec<Value> = list
                .iter()
                .map(|a| json!({"id": a.id, "name": a.name}))
                .collect();
            out.table(&Value::Array(rows), &[("ID", "id"), ("NAME", "name")]);
        }
        AdminCmd::User(UserCmd::Create {
            account,
            email,
            role,
        }) => {
            let u = accounts::create_user(store, &account, &email, &role, None).await?;
            out.record(
                &json!({"id": u.id, "account_id": u.account_id, "email": u.email, "role": u.role}),
                &[
                    ("id", "id"),
                    ("account", "account_id"),
                    ("email", "email"),
                    ("role", "role"),
                ],
            );
        }
        AdminCmd::User(UserCmd::SetPassword { email }) => {
            let password = read_secret("New password: ")?;
            accounts::set_password(store, &email, &password).await?;
            out.message(&format!("password set for {email}"));
        }
        AdminCmd::Token(TokenCmd::Create { email }) => {
            let token = accounts::create_token(store, &email).await?;
            // Alone on stdout, for `export CERTDESK_TOKEN=$(certdesk admin token create …)`.
            if out.json() {
                println!("{}", json!({"token": token}));
            } else {
                println!("{token}");
            }
        }
    }
    Ok(())
}

fn read_secret(prompt: &str) -> Result<String, CliError> {
    let stdin = std::io::stdin();
    let mut line = String::new();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        stdin
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Message(e.to_string()))?;
    } else {
        stdin
            .lock()
            .read_to_string(&mut line)
            .map_err(|e| CliError::Message(e.to_string()))?;
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_file(path: &std::path::Path, what: &str) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Message(format!("{what} {}: {e}", path.display())))
}

const ORDER_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("status", "status_label"),
    ("state", "state"),
    ("ca", "ca"),
    ("common name", "common_name"),
    ("names", "names"),
    ("key type", "key_type"),
    ("days", "days"),
    ("admin email", "admin_email"),
    ("admin name", "admin_name"),
    ("approver email", "approver_email"),
    ("failure", "failure_reason"),
    ("serial", "certificate.serial"),
    ("not after", "certificate.not_after"),
    ("fingerprint", "certificate.sha256_fingerprint"),
    ("created", "created_at"),
];

const EMAIL_COLUMNS: &[(&str, &str)] = &[
    ("REQUEST", "id"),
    ("KIND", "kind"),
    ("TRIGGER", "trigger"),
    ("RECIPIENT", "recipient"),
    ("STATE", "state"),
    ("ERROR", "error"),
    ("REQUESTED", "created_at"),
];

fn order_path(id: &str) -> Result<String, CliError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(CliError::Message(format!("{id:?} is not an order id")));
    }
    Ok(format!("/api/v1/orders/{id}"))
}

async fn client_command(out: &Output, client: &Client, command: Command) -> Result<(), CliError> {
    match command {
        Command::Order(OrderCmd::Create {
            csr,
            admin_email,
            admin_name,
            approver_email,
            ca,
            days,
            language,
            idempotency_key,
        }) => {
            let body = json!({
                "csr": read_file(&csr, "CSR file")?,
                "admin_email": admin_email,
                "admin_name": admin_name,
                "approver_email": approver_email,
                "ca": ca,
                "days": days,
                "language": language,
            });
            let headers: Vec<(&str, String)> = idempotency_key
                .map(|k| vec![("Idempotency-Key", k)])
                .unwrap_or_default();
            let order = client.post("/api/v1/orders", Some(&body), &headers).await?;
            out.record(&order, ORDER_FIELDS);
        }
        Command::Order(OrderCmd::List {
            status,
            domain,
            limit,
            cursor,
        }) => {
            let mut q = vec![];
            for (k, v) in [("status", status), ("domain", domain), ("cursor", cursor)] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            if let Some(l) = limit {
                q.push(("limit", l.to_string()));
            }
            let page = client.get("/api/v1/orders", &q).await?;
            if out.json() {
                out.print_json(&page);
            } else {
                out.table(
                    &page["orders"],
                    &[
                        ("ID", "id"),
                        ("COMMON NAME", "common_name"),
                        ("STATUS", "status_label"),
                        ("CA", "ca"),
                        ("CREATED", "created_at"),
                        ("EXPIRES", "certificate.not_after"),
                    ],
                );
                if let Some(next) = page["next_cursor"].as_str() {
                    println!("more: certdesk order list --cursor {next}");
                }
            }
        }
        Command::Order(OrderCmd::Show { id }) => {
            let order = client.get(&order_path(&id)?, &[]).await?;
            if out.json() {
                out.print_json(&order);
            } else {
                out.record(&order, ORDER_FIELDS);
                println!("\nEmail requests:");
                out.table(&order["email_requests"], EMAIL_COLUMNS);
            }
        }
        Command::Order(OrderCmd::Cancel { id }) => {
            let order = client
                .post(&format!("{}/cancel", order_path(&id)?), None, &[])
                .await?;
            out.record(&order, ORDER_FIELDS);
        }
        Command::Order(OrderCmd::ResendEmail { id, yes }) => {
            let path = format!("{}/fulfillment-email", order_path(&id)?);
            let info = client.get(&path, &[]).await?;
            let recipient = info["recipient"].as_str().unwrap_or("?").to_string();
            let ca_name = info["ca_name"].as_str().unwrap_or("the CA").to_string();
            if !yes
                && !confirm(&format!(
                    "Resend the fulfillment email to {recipient}? [y/N] "
                ))?
            {
                return Err(CliError::Message("not sent: not confirmed".into()));
            }
            let accepted = client.post(&path, None, &[]).await?;
            if out.json() {
                out.print_json(&accepted);
            } else {
                println!(
                    "Fulfillment email requested from {ca_name}; it will be sent to {recipient} (request {})",
                    accepted["request_id"].as_str().unwrap_or("?")
                );
            }
        }
        Command::Order(OrderCmd::ResendApproval { id }) => {
            let accepted = client
                .post(&format!("{}/approval-email", order_path(&id)?), None, &[])
                .await?;
            if out.json() {
                out.print_json(&accepted);
            } else {
                println!(
                    "Approval email requested from {}; it will be sent to {} (request {})",
                    accepted["ca_name"].as_str().unwrap_or("the CA"),
                    accepted["recipient"].as_str().unwrap_or("?"),
                    accepted["request_id"].as_str().unwrap_or("?")
                );
            }
        }
        Command::ApproverEmails { domain } => {
            let res = client
                .get("/api/v1/approver-emails", &[("domain", domain)])
                .await?;
            if out.json() {
                out.print_json(&res);
            } else {
                for a in res["addresses"].as_array().into_iter().flatten() {
                    println!("{}", a.as_str().unwrap_or_default());
                }
            }
        }
        Command::Csr(CsrCmd::Decode { file }) => {
            let body = json!({ "csr": read_file(&file, "CSR file")? });
            let res = client.post("/api/v1/csr/decode", Some(&body), &[]).await?;
            if out.json() {
                out.print_json(&res);
            } else {
                out.record(
                    &res,
                    &[
                        ("common name", "common_name"),
                        ("names", "names"),
                        ("key type", "key_type"),
                        ("subject", "subject"),
                        ("signature", "signature_algorithm"),
                    ],
                );
                for choice in res["approver_emails"].as_array().into_iter().flatten() {
                    let list: Vec<&str> = choice["addresses"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "{:<16} {}: {}",
                        "approvers",
                        choice["registrable_domain"].as_str().unwrap_or(""),
                        list.join(", ")
                    );
                }
            }
        }
        Command::Cert(cmd) => cert_command(out, client, cmd).await?,
        Command::Serve(_) | Command::Admin(_) => unreachable!("handled by run"),
    }
    Ok(())
}

fn read_secret_file(path: &std::path::Path) -> Result<String, CliError> {
    Ok(read_file(path, "password file")?
        .trim_end_matches(['\r', '\n'])
        .to_string())
}

fn import_body(f: &CertFiles) -> Result<Value, CliError> {
    use base64::Engine;
    let text = |p: &Option<PathBuf>, what: &str| -> Result<Option<String>, CliError> {
        p.as_deref().map(|p| read_file(p, what)).transpose()
    };
    let p12 = match &f.p12 {
        Some(p) => Some(
            base64::engine::general_purpose::STANDARD
                .encode(std::fs::read(p).map_err(|e| {
                    CliError::Message(format!("PKCS#12 file {}: {e}", p.display()))
                })?),
        ),
        None => None,
    };
    Ok(json!({
        "certificate": text(&f.cert, "certificate file")?,
        "fullchain": text(&f.fullchain, "full-chain file")?,
        "private_key": text(&f.key, "key file")?,
        "key_password": f.key_password_file.as_deref().map(read_secret_file).transpose()?,
        "chain": text(&f.chain, "chain file")?,
        "pkcs12": p12,
        "pkcs12_password": f.password_file.as_deref().map(read_secret_file).transpose()?,
        "csr": text(&f.csr, "CSR file")?,
        "notes": f.notes,
        "allow_expired": f.allow_expired,
    }))
}

const CERT_FIELDS: &[(&str, &str)] = &[
    ("id", "id"),
    ("common name", "common_name"),
    ("names", "names"),
    ("issuer", "issuer"),
    ("serial", "serial"),
    ("not before", "not_before"),
    ("not after", "not_after"),
    ("days left", "days_left"),
    ("key type", "key_type"),
    ("fingerprint", "sha256_fingerprint"),
    ("notes", "notes"),
];

fn cert_path(id: &str) -> Result<String, CliError> {
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(CliError::Message(format!("{id:?} is not a certificate id")));
    }
    Ok(format!("/api/v1/certificates/{id}"))
}

fn print_certificate(out: &Output, c: &Value) {
    if out.json() {
        return out.print_json(c);
    }
    out.record(c, CERT_FIELDS);
    for w in c["warnings"].as_array().into_iter().flatten() {
        println!(
            "{:<16} {}",
            "warning",
            w["message"].as_str().unwrap_or_default()
        );
    }
    for (i, link) in c["chain"].as_array().into_iter().flatten().enumerate() {
        println!(
            "{:<16} {}: {}",
            "chain",
            i + 1,
            link["subject"].as_str().unwrap_or_default()
        );
    }
}

fn write_private(path: &std::path::Path, data: &[u8]) -> Result<(), CliError> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| CliError::Message(format!("{}: {e}", path.display())))
}

async fn cert_command(out: &Output, client: &Client, cmd: CertCmd) -> Result<(), CliError> {
    match cmd {
        CertCmd::Import(files) => {
            let c = client
                .post("/api/v1/certificates", Some(&import_body(&files)?), &[])
                .await?;
            print_certificate(out, &c);
        }
        CertCmd::List {
            name,
            expiring_within,
            cursor,
        } => {
            let mut q = vec![];
            if let Some(n) = name {
                q.push(("name", n));
            }
            if let Some(d) = expiring_within {
                q.push(("expiring_within_days", d.to_string()));
            }
            if let Some(c) = cursor {
                q.push(("cursor", c));
            }
            let page = client.get("/api/v1/certificates", &q).await?;
            if out.json() {
                out.print_json(&page);
            } else {
                out.table(
                    &page["certificates"],
                    &[
                        ("ID", "id"),
                        ("COMMON NAME", "common_name"),
                        ("NAMES", "names"),
                        ("ISSUER", "issuer"),
                        ("EXPIRES", "not_after"),
                        ("DAYS LEFT", "days_left"),
                        ("KEY", "key_type"),
                        ("NOTES", "notes"),
                    ],
                );
                if let Some(next) = page["next_cursor"].as_str() {
                    println!("more: certdesk cert list --cursor {next}");
                }
            }
        }
        CertCmd::Show { id } => print_certificate(out, &client.get(&cert_path(&id)?, &[]).await?),
        CertCmd::Download {
            id,
            out: dir,
            key,
            p12,
            password_file,
            export_password_file,
        } => {
            let path = cert_path(&id)?;
            std::fs::create_dir_all(&dir)
                .map_err(|e| CliError::Message(format!("{}: {e}", dir.display())))?;
            let mut written = vec![];
            for (part, file) in [
                ("certificate", "cert.pem"),
                ("chain", "chain.pem"),
                ("fullchain", "fullchain.pem"),
            ] {
                let (_, body) = client
                    .call(
                        reqwest::Method::GET,
                        &format!("{path}/pem"),
                        &[("part", part.to_string())],
                        None,
                        &[],
                    )
                    .await?;
                let text = body.as_str().unwrap_or_default().to_string();
                let target = dir.join(file);
                std::fs::write(&target, text)
                    .map_err(|e| CliError::Message(format!("{}: {e}", target.display())))?;
                written.push(target);
            }
            if key || p12.is_some() {
                let password = match &password_file {
                    Some(f) => read_secret_file(f)?,
                    None => read_secret("Your password: ")?,
                };
                if key {
                    let body = json!({ "password": password });
                    let res = client
                        .post(&format!("{path}/private-key"), Some(&body), &[])
                        .await?;
                    let target = dir.join("key.pem");
                    write_private(
                        &target,
                        res["private_key"].as_str().unwrap_or_default().as_bytes(),
                    )?;
                    written.push(target);
                }
                if let Some(target) = p12 {
                    let export_password = match &export_password_file {
                        Some(f) => read_secret_file(f)?,
                        None => read_secret("Password for the PKCS#12 file: ")?,
                    };
                    let body = json!({ "password": password, "export_password": export_password });
                    let bytes = client.post_bytes(&format!("{path}/pkcs12"), &body).await?;
                    write_private(&target, &bytes)?;
                    written.push(target);
                }
            }
            if out.json() {
                out.print_json(&json!({ "written": written.iter().map(|p| p.display().to_string()).collect::<Vec<_>>() }));
            } else {
                for p in written {
                    println!("wrote {}", p.display());
                }
            }
        }
        CertCmd::Edit { id, notes } => {
            let (_, c) = client
                .call(
                    reqwest::Method::PATCH,
                    &cert_path(&id)?,
                    &[],
                    Some(&json!({ "notes": notes })),
                    &[],
                )
                .await?;
            print_certificate(out, &c);
        }
        CertCmd::Replace { id, files } => {
            let (_, c) = client
                .call(
                    reqwest::Method::PUT,
                    &cert_path(&id)?,
                    &[],
                    Some(&import_body(&files)?),
                    &[],
                )
                .await?;
            print_certificate(out, &c);
        }
        CertCmd::Delete { id, yes } => {
            let path = cert_path(&id)?;
            let c = client.get(&path, &[]).await?;
            let label = c["common_name"].as_str().unwrap_or(&id).to_string();
            if !yes
                && !confirm(&format!(
                    "Delete the certificate {label} and its private key? [y/N] "
                ))?
            {
                return Err(CliError::Message("not deleted: not confirmed".into()));
            }
            client
                .call(reqwest::Method::DELETE, &path, &[], None, &[])
                .await?;
            out.message(&format!("deleted {label} ({id})"));
        }
    }
    Ok(())
}

/// Asks on the terminal (or reads a line from piped input); only "y" or
/// "yes" confirms.
fn confirm(question: &str) -> Result<bool, CliError> {
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| CliError::Message(e.to_string()))?;
    Ok(matches!(
        line.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_quoting_its_cause_shows_the_cause_once() {
        let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(crate::crypto::CryptoError::KeyFile {
            path: "data/master.key".into(),
            source: missing,
        })
        .context("cannot start");
        assert_eq!(
            CliError::from(e).to_string(),
            "cannot start: master key file data/master.key: no such file"
        );
    }

    #[test]
    fn an_error_not_quoting_its_cause_is_followed_by_it() {
        let e = anyhow::anyhow!("connection refused").context("cannot open the database");
        assert_eq!(
            CliError::from(e).to_string(),
            "cannot open the database: connection refused"
        );
    }
}
