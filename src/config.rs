//! Settings for `certdesk serve` and for the client commands: flags, then
//! `CERTDESK_*` environment variables (clap reads both), then the TOML file
//! given with `--config`, then defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ca::builtin::Validation;
use crate::domain::order::MAX_VALIDITY_DAYS;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub admin_email: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub resend_limit_per_hour: Option<u32>,
    pub default_days: Option<u32>,
    #[serde(default)]
    pub builtin_ca: BuiltinFileConfig,
    /// For the client commands: the desk's URL and an API token.
    pub url: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinFileConfig {
    pub validation: Option<Validation>,
    pub max_days: Option<u32>,
    pub allow_ed25519: Option<bool>,
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {message}")]
    File { path: String, message: String },
    #[error("{setting}: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

impl FileConfig {
    pub fn load(path: Option<&Path>) -> Result<FileConfig, ConfigError> {
        let Some(path) = path else {
            return Ok(FileConfig::default());
        };
        let err = |message: String| ConfigError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| err(e.to_string()))
    }

    /// The client's own config file, when no `--config` was given.
    pub fn default_client_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        let path = base.join("certdesk").join("config.toml");
        path.exists().then_some(path)
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the embedded SQLite file.
    pub database_url: Option<String>,
    pub listen: SocketAddr,
    pub public_url: String,
    pub admin_email: String,
    pub smtp_url: Option<String>,
    pub mail_from: String,
    pub resend_limit_per_hour: u32,
    pub default_days: u32,
    pub validation: Validation,
    pub max_days: u32,
    pub allow_ed25519: bool,
    pub ca_name: String,
}

/// Overrides given on the command line or in the environment.
#[derive(Debug, Default, Clone)]
pub struct ServeOverrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub listen: Option<String>,
    pub public_url: Option<String>,
    pub admin_email: Option<String>,
    pub smtp_url: Option<String>,
    pub mail_from: Option<String>,
    pub resend_limit_per_hour: Option<u32>,
    pub validation: Option<Validation>,
    pub max_days: Option<u32>,
}

pub const DEFAULT_DATA_DIR: &str = "./certdesk-data";

impl ServeSettings {
    pub fn resolve(o: ServeOverrides, f: FileConfig) -> Result<ServeSettings, ConfigError> {
        let listen_text = o
            .listen
            .or(f.listen)
            .unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            setting: "listen",
            message: format!("{listen_text:?} is not ADDRESS:PORT, e.g. 127.0.0.1:8080"),
        })?;
        let public_url = o
            .public_url
            .or(f.public_url)
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_string();
        url::Url::parse(&public_url).map_err(|e| ConfigError::Invalid {
            setting: "public_url",
            message: format!("{public_url:?}: {e}"),
        })?;
        let max_days = o.max_days.or(f.builtin_ca.max_days).unwrap_or(90);
        if max_days == 0 || max_days > MAX_VALIDITY_DAYS {
            return Err(ConfigError::Invalid {
                setting: "builtin_ca.max_days",
                message: format!(
                    "must be between 1 and {MAX_VALIDITY_DAYS} (CA/Browser Forum limit)"
                ),
            });
        }
        let resend_limit_per_hour = o
            .resend_limit_per_hour
            .or(f.resend_limit_per_hour)
            .unwrap_or(5);
        if resend_limit_per_hour == 0 {
            return Err(ConfigError::Invalid {
                setting: "resend_limit_per_hour",
                message: "must be at least 1".into(),
            });
        }
        let database_url = database_url(o.database_url.or(f.database_url))?;
        Ok(ServeSettings {
            data_dir: o
                .data_dir
                .or(f.data_dir)
                .unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
            database_url,
            listen,
            public_url,
            admin_email: o
                .admin_email
                .or(f.admin_email)
                .unwrap_or_else(|| "admin@localhost".into()),
            smtp_url: o.smtp_url.or(f.smtp_url).filter(|s| !s.is_empty()),
            mail_from: o
                .mail_from
                .or(f.mail_from)
                .unwrap_or_else(|| "certdesk <certdesk@localhost>".into()),
            resend_limit_per_hour,
            default_days: f.default_days.unwrap_or(max_days).min(max_days),
            validation: o.validation.or(f.builtin_ca.validation).unwrap_or_default(),
            max_days,
            allow_ed25519: f.builtin_ca.allow_ed25519.unwrap_or(false),
            ca_name: f
                .builtin_ca
                .name
                .unwrap_or_else(|| "certdesk built-in CA".into()),
        })
    }
}

/// Checks a `database_url` setting: unset or blank means the embedded SQLite
/// file; otherwise it must be a PostgreSQL URL.
pub fn database_url(value: Option<String>) -> Result<Option<String>, ConfigError> {
    let Some(value) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    let invalid = |message: String| ConfigError::Invalid {
        setting: "database_url",
        message,
    };
    let parsed = url::Url::parse(value.trim()).map_err(|e| {
        invalid(format!(
            "{}: {e}; expected postgres://USER@HOST:5432/DATABASE",
            redact_url(&value)
        ))
    })?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(invalid(format!(
            "{}: only PostgreSQL is supported (postgres://USER@HOST:5432/DATABASE); \
             leave it unset for the embedded SQLite database in the data folder",
            redact_url(&value)
        )));
    }
    Ok(Some(value.trim().to_string()))
}

/// A URL fit for logs and error messages: any password replaced.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(the configured URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_database_url_means_the_embedded_sqlite_file() {
        assert_eq!(database_url(None).unwrap(), None);
        assert_eq!(database_url(Some("  ".into())).unwrap(), None);
    }

    #[test]
    fn a_postgres_database_url_is_kept_and_others_are_refused_naming_the_setting() {
        for ok in [
            "postgres://desk@db.internal:5432/certdesk",
            "postgresql://desk:pw@127.0.0.1/certdesk?sslmode=require",
        ] {
            assert_eq!(database_url(Some(ok.into())).unwrap().as_deref(), Some(ok));
        }
        for (bad, reason) in [
            ("sqlite://./desk.db", "only PostgreSQL"),
            ("certdesk.db", "expected postgres://"),
        ] {
            let e = database_url(Some(bad.into())).unwrap_err().to_string();
            assert!(e.starts_with("database_url: "), "{e}");
            assert!(e.contains(reason), "{bad}: {e}");
        }
    }

    #[test]
    fn a_database_password_never_shows_in_messages() {
        assert_eq!(
            redact_url("postgres://desk:s3cret@db:5432/certdesk"),
            "postgres://desk:***@db:5432/certdesk"
        );
        assert_eq!(
            redact_url("postgres://desk@db/certdesk"),
            "postgres://desk@db/certdesk"
        );
        let e = database_url(Some("mysql://root:s3cret@db/x".into()))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cret"), "{e}");
        // Unparseable: nothing of it is repeated.
        assert_eq!(
            redact_url("postgres://desk:s3cret@[bad"),
            "(the configured URL)"
        );
    }
}
