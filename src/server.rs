//! `certdesk serve`: open (or create) the data folder, start the built-in
//! CA, the worker and the HTTP listener.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Notify;

use crate::ca::builtin::{BuiltinCa, BuiltinConfig};
use crate::ca::CaRegistry;
use crate::config::ServeSettings;
use crate::crypto::Keyring;
use crate::domain::EmailAddress;
use crate::mail::Mailer;
use crate::service::{accounts, Desk, DeskSettings};
use crate::store::{PgStore, SqliteStore, Store};
use crate::worker;

pub const DB_FILE: &str = "certdesk.db";

/// The desk's database: PostgreSQL when a URL is configured, otherwise the
/// embedded SQLite file in the data folder.
pub async fn open_store(
    data_dir: &Path,
    database_url: Option<&str>,
) -> anyhow::Result<Arc<dyn Store>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    if let Some(url) = database_url {
        let shown = crate::config::redact_url(url);
        let store = PgStore::connect(url)
            .await
            .with_context(|| format!("cannot open the database at {shown}"))?;
        tracing::info!("database: PostgreSQL at {shown}");
        return Ok(Arc::new(store));
    }
    let store = SqliteStore::open(&data_dir.join(DB_FILE))
        .await
        .with_context(|| format!("cannot open the database in {}", data_dir.display()))?;
    Ok(Arc::new(store))
}

pub async fn serve(settings: ServeSettings) -> anyhow::Result<()> {
    let data = &settings.data_dir;
    // The database and the built-in CA (its keys, its ledger: files in the
    // data folder) open side by side; neither needs the other. The CA
    // opens on a task of its own, as part of that is work done on the
    // thread that polls it (reading and unsealing keys), which would hold
    // up the database's round trips on a shared task. The data folder is
    // made first, for both.
    std::fs::create_dir_all(data)
        .with_context(|| format!("cannot create the data folder {}", data.display()))?;
    let ca = tokio::spawn({
        let settings = settings.clone();
        async move {
            let data = &settings.data_dir;
            let keys = Arc::new(Keyring::load(
                std::env::var("CERTDESK_MASTER_KEY").ok().as_deref(),
                data,
            )?);
            let mailer = match &settings.smtp_url {
                Some(url) => Mailer::smtp(url, &settings.mail_from)?,
                None => Mailer::outbox(&data.join("outbox"), &settings.mail_from)?,
            };
            tracing::info!("mail goes to the {}", mailer.describe());
            if settings.smtp_url.is_none() {
                tracing::info!("no SMTP server configured (--smtp-url): every message is written as an .eml file instead");
            }
            let mailer = Arc::new(mailer);
            let builtin = BuiltinCa::open(
                &data.join("ca"),
                keys.clone(),
                BuiltinConfig {
                    validation: settings.validation,
                    max_days: settings.max_days,
                    allow_ed25519: settings.allow_ed25519,
                    public_url: settings.public_url.clone(),
                    name: settings.ca_name.clone(),
                },
                mailer.clone(),
            )
            .await?;
            anyhow::Ok((keys, mailer, builtin))
        }
    });
    // Both run to their end: the store's error, if any, is the one
    // reported, as when the store opened first.
    let store = open_store(data, settings.database_url.as_deref()).await;
    let ca = ca.await.context("opening the built-in CA")?;
    let store = store?;
    let (keys, mailer, builtin) = ca?;
    let message_id_domain = mailer.from().email.domain().to_string();
    let tasks = worker::tasks(settings.database_url.is_some());

    let mut cas = CaRegistry::default();
    cas.add(builtin.clone());

    let desk = Arc::new(Desk {
        store,
        cas,
        settings: DeskSettings {
            resend_limit_per_hour: settings.resend_limit_per_hour,
            default_ca: crate::ca::builtin::ID.to_string(),
            default_days: settings.default_days,
            message_id_domain,
        },
        wake: Arc::new(Notify::new()),
        at_once: Arc::new(tokio::sync::Semaphore::new(tasks)),
        handoff: Default::default(),
        keys,
        tokens: accounts::TokenCache::new(accounts::CREDENTIAL_TTL),
        sessions: accounts::SessionCache::new(accounts::CREDENTIAL_TTL),
    });
    builtin.set_notifier(Arc::new(worker::QueueNotifier {
        desk: Arc::downgrade(&desk),
    }));

    let admin_email = EmailAddress::parse(&settings.admin_email)
        .map_err(|e| anyhow::anyhow!("--admin-email: {e}"))?;
    // The first administrator and the worker's start (leases of a previous
    // run freed, pending orders queued) need nothing of each other: their
    // round trips overlap. Both run to their end before either's error is
    // reported.
    let (first, worker) = tokio::join!(
        accounts::bootstrap(desk.store.as_ref(), &admin_email),
        worker::spawn(desk.clone(), tasks)
    );
    if let Some(first) = first? {
        // Printed once, to the terminal, never to the log.
        println!("Created the first administrator. Keep these; they are not shown again.");
        println!("  email:     {}", first.email);
        println!("  password:  {}", first.password);
        println!("  API token: {}", first.token);
        println!("  (export CERTDESK_TOKEN={} to use the CLI)", first.token);
    }

    worker?;

    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let secure_cookies = settings.public_url.starts_with("https://");
    let app = crate::http::app(desk.clone(), Some(&builtin), secure_cookies);
    tracing::info!(
        "certdesk listening on http://{} (public URL {}); built-in CA at {}",
        listener.local_addr()?,
        settings.public_url,
        data.join("ca").display()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    // Jobs still waiting in memory for a slot will not run here: free their
    // leases, so that another desk sharing the queue, or this one started
    // again, runs them now rather than when the leases run out.
    let waiting = desk.handoff.drain();
    if !waiting.is_empty() {
        match desk.store.release_leases(&waiting).await {
            Ok(n) => tracing::info!(jobs = n, "jobs not started are left to the queue"),
            Err(e) => tracing::warn!(
                error = %e,
                "could not free the leases of jobs not started; they run when the leases run out"
            ),
        }
    }
    tracing::info!("certdesk stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
