//! The database the desk runs on in this run: its embedded SQLite file, or
//! (with `--postgres`) a fresh database on the PostgreSQL server at
//! `CERTDESK_TEST_POSTGRES`, which `scripts/bench --postgres` starts where
//! none answers. Also that database's own ceiling: small commits per second.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use certdesk::domain::order::Order;
use certdesk::store::{PgStore, SqliteStore};
use sqlx::Connection;

const DATABASE: &str = "certdesk_bench";

pub enum Database {
    Sqlite,
    Postgres { server: String, url: String },
}

impl Database {
    /// SQLite, or an empty `certdesk_bench` database (dropped and created
    /// again) on the PostgreSQL server.
    pub async fn create(postgres: bool) -> Result<Database> {
        if !postgres {
            return Ok(Database::Sqlite);
        }
        let server = std::env::var("CERTDESK_TEST_POSTGRES").context(
            "--postgres needs CERTDESK_TEST_POSTGRES=postgres://USER@HOST:PORT/DB \
             (scripts/bench --postgres starts a server where none answers)",
        )?;
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {server}"))?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
            .execute(&mut admin)
            .await?;
        sqlx::query(&format!("CREATE DATABASE {DATABASE}"))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let mut url = url::Url::parse(&server)?;
        url.set_path(DATABASE);
        Ok(Database::Postgres {
            server,
            url: url.to_string(),
        })
    }

    pub fn label(&self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres { .. } => "PostgreSQL",
        }
    }

    /// For the desk's `--database-url`.
    pub fn url(&self) -> Option<&str> {
        match self {
            Database::Sqlite => None,
            Database::Postgres { url, .. } => Some(url),
        }
    }

    /// Small transactions committed per second: on SQLite by one connection
    /// with the desk's settings, on the desk's disk (the most its single
    /// writer can commit one by one); on PostgreSQL by 16 connections at once
    /// (the desk's pool), each committing one row at a time.
    pub async fn commits_per_second(&self, dir: &Path, duration: Duration) -> Result<f64> {
        match self {
            Database::Sqlite => crate::ceilings::sqlite_commits_per_second(dir, duration).await,
            Database::Postgres { url, .. } => postgres_commits_per_second(url, duration).await,
        }
    }

    /// On PostgreSQL, what the server's autovacuum does in the minutes
    /// after a bulk load: `VACUUM (ANALYZE)` of the benchmark's database, so
    /// that the lists run with the statistics and visibility map a
    /// database that has grown over months has. This machine's server runs
    /// with autovacuum off (its CI configuration), where nothing would
    /// ever do it: the domain filter's index-only scan then read every
    /// order's row to check it was visible, 0.9–1.9 ms of the server's time
    /// per page where 0.4–0.6 ms after a vacuum (docs/PERFORMANCE.md).
    /// Nothing to do on SQLite, which has neither.
    pub async fn settle(&self) -> Result<()> {
        if let Database::Postgres { url, .. } = self {
            let mut c = sqlx::PgConnection::connect(url).await?;
            sqlx::query("VACUUM (ANALYZE)").execute(&mut c).await?;
            c.close().await?;
        }
        Ok(())
    }

    /// Writes orders straight through the desk's own store code.
    pub async fn importer(&self, data: &Path) -> Result<Importer> {
        Ok(match self {
            Database::Sqlite => {
                Importer::Sqlite(SqliteStore::open(&data.join("certdesk.db")).await?)
            }
            Database::Postgres { url, .. } => Importer::Postgres(PgStore::connect(url).await?),
        })
    }

    /// Drops the benchmark's PostgreSQL database (1M orders are gigabytes).
    pub async fn remove(&self) -> Result<()> {
        if let Database::Postgres { server, .. } = self {
            let mut admin = sqlx::PgConnection::connect(server).await?;
            sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
                .execute(&mut admin)
                .await?;
            admin.close().await?;
        }
        Ok(())
    }
}

pub enum Importer {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Importer {
    pub async fn import_orders(&self, orders: Vec<(Order, Vec<Option<String>>)>) -> Result<()> {
        match self {
            Importer::Sqlite(s) => s.import_orders(orders).await?,
            Importer::Postgres(s) => s.import_orders(orders).await?,
        }
        Ok(())
    }

    pub async fn close(&self) {
        match self {
            Importer::Sqlite(s) => s.close().await,
            Importer::Postgres(s) => s.close().await,
        }
    }
}

async fn postgres_commits_per_second(url: &str, duration: Duration) -> Result<f64> {
    const CLIENTS: usize = 16;
    let mut c = sqlx::PgConnection::connect(url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS commit_probe (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, payload TEXT NOT NULL)",
    )
    .execute(&mut c)
    .await?;
    let mut tasks = Vec::new();
    let t0 = Instant::now();
    for _ in 0..CLIENTS {
        let url = url.to_string();
        tasks.push(tokio::spawn(async move {
            let mut c = sqlx::PgConnection::connect(&url).await?;
            let mut commits = 0u64;
            while t0.elapsed() < duration {
                sqlx::query("INSERT INTO commit_probe (payload) VALUES ($1)")
                    .bind("a job row of about this size, with a key and a payload")
                    .execute(&mut c)
                    .await?;
                commits += 1;
            }
            anyhow::Ok(commits)
        }));
    }
    let mut commits = 0;
    for t in tasks {
        commits += t.await??;
    }
    let rate = commits as f64 / t0.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE commit_probe")
        .execute(&mut c)
        .await?;
    c.close().await?;
    Ok(rate)
}
