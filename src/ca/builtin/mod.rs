//! The desk's own CA: a root and an issuing intermediate (ECDSA P-256), its
//! private keys sealed under the master key, and its own ledger database.
//!
//! Validation is the CA/Browser Forum's constructed-email method (3.2.2.4.4):
//! the CA mails the approver a single-use link, and issues when the approver
//! approves. `validation = "none"` issues at once, for trusted internal use.

mod ledger;
mod web;

use std::path::Path;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use super::*;
use crate::crypto::{random_token, sha256, Keyring};
use crate::domain::order::IssuedMetadata;
use crate::i18n::Lang;
use crate::mail::{self, templates, MailError, Mailer};
use crate::pki::cert::{inspect_der, pem_encode_cert, CertificateInfo};
use crate::pki::csr::{decode_csr, CsrPolicy};
use crate::pki::signer::{generate_ca, CaKeyMaterial, LeafRequest, Signer};
use ledger::{Ledger, LedgerOrder, LedgerState};

pub const ID: &str = "builtin";
/// How long an approval link stays valid.
const APPROVAL_LINK_DAYS: i64 = 30;
/// Leaves are backdated a little so a client whose clock runs slightly behind
/// accepts them at once; validity is counted from this backdated start.
const BACKDATE: Duration = Duration::minutes(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Validation {
    /// Approval by email to a constructed address of the domain.
    #[default]
    Email,
    /// Issue at once: only for trusted internal use.
    None,
}

#[derive(Debug, Clone)]
pub struct BuiltinConfig {
    pub validation: Validation,
    pub max_days: u32,
    pub allow_ed25519: bool,
    /// Base URL of the desk, for approval links and the AIA extension.
    pub public_url: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BuiltinCaError {
    #[error("CA files in {dir}: {message}")]
    Files { dir: String, message: String },
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error("CA ledger: {0}")]
    Ledger(#[from] ledger::LedgerError),
    #[error("CA ledger migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("CA keys: {0}")]
    Signer(String),
}

pub struct BuiltinCa {
    config: BuiltinConfig,
    ledger: Ledger,
    signer: Signer,
    root_der: Vec<u8>,
    intermediate_der: Vec<u8>,
    mailer: Arc<Mailer>,
    keys: Arc<Keyring>,
    notifier: OnceLock<Arc<dyn CaNotifier>>,
    crl_cache: std::sync::Mutex<Option<(OffsetDateTime, Vec<u8>)>>,
    just_issued: JustIssued,
}

/// Certificates issued a moment ago, kept for their first fulfillment email.
/// The worker asks for that email right after the submission that issued
/// the certificate; without this the CA would read back from its ledger,
/// and parse again, what it signed and parsed a moment before (5 % of the
/// desk's CPU per certificate in a profile of the benchmark's issuance, see
/// docs/PERFORMANCE.md). Each is taken once, by that first email; a later
/// email (a resend, a retry) reads the ledger, which stays the record.
/// Memory only, and bounded: the oldest is dropped first, so an email that
/// comes late reads the ledger too.
#[derive(Default)]
struct JustIssued {
    entries: std::sync::Mutex<std::collections::VecDeque<(String, IssuedCopy)>>,
}

/// Certificates kept in [`JustIssued`] at most: more than the worker runs at
/// once, so the first email of every certificate finds its own.
const JUST_ISSUED: usize = 64;

impl JustIssued {
    fn put(&self, reference: String, copy: IssuedCopy) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= JUST_ISSUED {
            entries.pop_front();
        }
        entries.push_back((reference, copy));
    }

    fn take(&self, reference: &str) -> Option<IssuedCopy> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let at = entries.iter().position(|(r, _)| r == reference)?;
        entries.remove(at).map(|(_, copy)| copy)
    }
}

/// What a fulfillment email says: the order's recipient and language, and
/// the certificate issued for it.
struct IssuedCopy {
    desk_order_id: String,
    admin_name: String,
    admin_email: EmailAddress,
    /// The order's first name, for a certificate without a common name.
    first_name: String,
    language: String,
    der: Vec<u8>,
    info: CertificateInfo,
}

struct KeyFiles {
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
}

impl KeyFiles {
    fn new(dir: &Path, name: &str) -> KeyFiles {
        KeyFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key.sealed")),
        }
    }
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(data)?;
    f.sync_all()
}

impl BuiltinCa {
    /// Opens the CA in `dir`, creating its keys and ledger on first use.
    pub async fn open(
        dir: &Path,
        keys: Arc<Keyring>,
        config: BuiltinConfig,
        mailer: Arc<Mailer>,
    ) -> Result<Arc<BuiltinCa>, BuiltinCaError> {
        let files_err = |message: String| BuiltinCaError::Files {
            dir: dir.display().to_string(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| files_err(e.to_string()))?;
        let root_files = KeyFiles::new(dir, "root");
        let int_files = KeyFiles::new(dir, "intermediate");
        let present = [
            &root_files.cert,
            &root_files.key,
            &int_files.cert,
            &int_files.key,
        ]
        .iter()
        .filter(|p| p.exists())
        .count();
        let (root, intermediate) = match present {
            0 => {
                let (root, intermediate) =
                    generate_ca(&config.name).map_err(|e| BuiltinCaError::Signer(e.to_string()))?;
                for (files, material, context) in [
                    (&root_files, &root, "ca-key:root"),
                    (&int_files, &intermediate, "ca-key:intermediate"),
                ] {
                    write_private(&files.key, &keys.seal(&material.key_pkcs8_der, context))
                        .and_then(|_| {
                            std::fs::write(&files.cert, pem_encode_cert(&material.cert_der))
                        })
                        .map_err(|e| files_err(e.to_string()))?;
                }
                tracing::info!(dir = %dir.display(), "created the built-in CA (root and intermediate, ECDSA P-256)");
                (root, intermediate)
            }
            4 => {
                let load = |files: &KeyFiles, context: &str| -> Result<CaKeyMaterial, BuiltinCaError> {
                    let pem = std::fs::read_to_string(&files.cert).map_err(|e| files_err(e.to_string()))?;
                    let cert_der = crate::pki::cert::parse_pem_certs(&pem)
                        .ok()
                        .and_then(|mut v| (!v.is_empty()).then(|| v.remove(0)))
                        .ok_or_else(|| files_err(format!("{} holds no certificate", files.cert.display())))?;
                    let sealed = std::fs::read(&files.key).map_err(|e| files_err(e.to_string()))?;
                    let key_pkcs8_der = keys.open(&sealed, context)?;
                    Ok(CaKeyMaterial { cert_der, key_pkcs8_der })
                };
                (load(&root_files, "ca-key:root")?, load(&int_files, "ca-key:intermediate")?)
            }
            _ => {
                return Err(files_err(
                    "some CA files are missing (need root.pem, root.key.sealed, intermediate.pem, intermediate.key.sealed); restore them from a backup".into(),
                ))
            }
        };
        let signer =
            Signer::new(&intermediate).map_err(|e| BuiltinCaError::Signer(e.to_string()))?;
        let ledger = Ledger::open(&dir.join("ledger.db")).await?;
        Ok(Arc::new(BuiltinCa {
            config,
            ledger,
            signer,
            root_der: root.cert_der,
            intermediate_der: intermediate.cert_der,
            mailer,
            keys,
            notifier: OnceLock::new(),
            crl_cache: std::sync::Mutex::new(None),
            just_issued: JustIssued::default(),
        }))
    }

    /// Seals the CA's private keys and pending approval links again under
    /// `new` (master-key rotation); works on the files, with or without a
    /// running desk. Returns how many secrets were re-sealed.
    pub async fn reseal(
        dir: &Path,
        keys: &Keyring,
        new: &crate::crypto::MasterKey,
    ) -> Result<usize, BuiltinCaError> {
        let files_err = |message: String| BuiltinCaError::Files {
            dir: dir.display().to_string(),
            message,
        };
        let mut count = 0;
        for (name, context) in [
            ("root", "ca-key:root"),
            ("intermediate", "ca-key:intermediate"),
        ] {
            let path = KeyFiles::new(dir, name).key;
            let Ok(sealed) = std::fs::read(&path) else {
                continue;
            };
            if crate::crypto::sealed_key_id(&sealed) == Some(new.id()) {
                continue;
            }
            let key = keys.open(&sealed, context)?;
            let tmp = path.with_extension("sealed.tmp");
            let _ = std::fs::remove_file(&tmp);
            write_private(&tmp, &new.seal(&key, context))
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| files_err(e.to_string()))?;
            count += 1;
        }
        let ledger_path = dir.join("ledger.db");
        if ledger_path.exists() {
            let ledger = Ledger::open(&ledger_path).await?;
            for (reference, sealed) in ledger.sealed_tokens().await? {
                if crate::crypto::sealed_key_id(&sealed) == Some(new.id()) {
                    continue;
                }
                let context = format!("approval:{reference}");
                let token = keys.open(&sealed, &context)?;
                if ledger
                    .reseal_token(&reference, &sealed, &new.seal(&token, &context))
                    .await?
                {
                    count += 1;
                }
            }
        }
        Ok(count)
    }

    pub fn set_notifier(&self, notifier: Arc<dyn CaNotifier>) {
        let _ = self.notifier.set(notifier);
    }

    /// The CA's public pages: approval links and its certificates.
    pub fn router(self: &Arc<Self>) -> axum::Router {
        web::router(self.clone())
    }

    pub fn root_pem(&self) -> String {
        pem_encode_cert(&self.root_der)
    }

    pub fn intermediate_pem(&self) -> String {
        pem_encode_cert(&self.intermediate_der)
    }

    /// An issued order's certificate and recipient, from the ledger: the
    /// desk holds no copy, so every email but a certificate's first (see
    /// [`JustIssued`]) is rebuilt from here.
    async fn issued_copy(&self, reference: &str) -> Result<IssuedCopy, CaError> {
        let (order, der) = self
            .ledger
            .get_with_certificate(reference)
            .await
            .map_err(ledger_err)?
            .ok_or_else(|| CaError::UnknownReference(reference.to_string()))?;
        if order.state != LedgerState::Issued {
            return Err(CaError::Conflict(
                "the certificate has not been issued".into(),
            ));
        }
        let der = der.ok_or_else(|| {
            CaError::Transient(format!("ledger lacks the certificate of {reference}"))
        })?;
        let info = inspect_issued(&der)?;
        Ok(IssuedCopy {
            desk_order_id: order.desk_order_id,
            admin_name: order.admin_name,
            admin_email: order.admin_email,
            first_name: order.names.into_iter().next().unwrap_or_default(),
            language: order.language,
            der,
            info,
        })
    }

    fn intermediate_url(&self) -> String {
        format!(
            "{}/ca/{ID}/intermediate.crt",
            self.config.public_url.trim_end_matches('/')
        )
    }

    fn crl_url(&self) -> String {
        format!(
            "{}/ca/{ID}/intermediate.crl",
            self.config.public_url.trim_end_matches('/')
        )
    }

    /// The intermediate's CRL, re-signed every hour. Nothing is revoked yet:
    /// revocation comes with its own feature, and the CRL already tells
    /// relying parties where to look.
    pub fn crl(&self) -> Result<Vec<u8>, CaError> {
        let now = OffsetDateTime::now_utc();
        let mut cache = self.crl_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((made, der)) = cache.as_ref() {
            if now - *made < Duration::hours(1) {
                return Ok(der.clone());
            }
        }
        let der = self
            .signer
            .sign_crl(
                now.unix_timestamp() as u64,
                now - BACKDATE,
                now + Duration::days(7),
                &[],
            )
            .map_err(|e| CaError::Transient(format!("cannot sign the CRL: {e}")))?;
        *cache = Some((now, der.clone()));
        Ok(der)
    }

    fn approval_link(&self, token: &str) -> String {
        format!(
            "{}/ca/{ID}/approve/{token}",
            self.config.public_url.trim_end_matches('/')
        )
    }

    fn csr_policy(&self) -> CsrPolicy {
        CsrPolicy {
            allow_ed25519: self.config.allow_ed25519,
            ..CsrPolicy::default()
        }
    }

    /// Signs the order's certificate and records it in the ledger, if the
    /// order is still pending (None when another decision came first).
    async fn issue(&self, order: &LedgerOrder) -> Result<Option<IssuedMetadata>, CaError> {
        let (der, info) = self.sign(&order.csr_der, order.days)?;
        let meta = issued_metadata(&info);
        let recorded = self
            .ledger
            .record_issued(&order.reference, &meta, &der)
            .await
            .map_err(ledger_err)?;
        if !recorded {
            return Ok(None);
        }
        tracing::info!(reference = %order.reference, serial = %meta.serial, "built-in CA issued a certificate");
        self.just_issued.put(
            order.reference.clone(),
            IssuedCopy {
                desk_order_id: order.desk_order_id.clone(),
                admin_name: order.admin_name.clone(),
                admin_email: order.admin_email.clone(),
                first_name: order.names.first().cloned().unwrap_or_default(),
                language: order.language.clone(),
                der,
                info,
            },
        );
        Ok(Some(meta))
    }

    /// The certificate for a CSR, checked again here: the CA takes nothing
    /// on the desk's word; with what it says, read back from its DER.
    fn sign(&self, csr_der: &[u8], days: u32) -> Result<(Vec<u8>, CertificateInfo), CaError> {
        let csr = decode_csr(csr_der, &self.csr_policy())
            .map_err(|e| CaError::Refused(format!("the CSR is not acceptable: {e}")))?;
        let days = days.min(self.config.max_days).max(1);
        let not_before = OffsetDateTime::now_utc() - BACKDATE;
        let not_after = not_before + Duration::days(days as i64);
        let aia = self.intermediate_url();
        let der = self
            .signer
            .sign_leaf(&LeafRequest {
                spki_der: &csr.spki_der,
                names: &csr.names,
                not_before,
                not_after,
                ca_issuers_url: &aia,
                crl_url: &self.crl_url(),
            })
            .map_err(|e| CaError::Refused(format!("signing failed: {e}")))?;
        let info = inspect_issued(&der)?;
        Ok((der, info))
    }

    /// The approver's decision, from the approval page.
    async fn decide(&self, token: &str, approve: bool) -> Result<Decision, CaError> {
        let Some(order) = self
            .ledger
            .find_by_token_hash(&sha256(token.as_bytes()))
            .await
            .map_err(ledger_err)?
        else {
            return Ok(Decision::UnknownLink);
        };
        if order.state != LedgerState::Pending {
            return Ok(Decision::AlreadyDecided(order.state));
        }
        if order
            .approval_expires_at
            .is_some_and(|t| t < OffsetDateTime::now_utc())
        {
            return Ok(Decision::Expired);
        }
        let decided = if approve {
            self.issue(&order).await?.map(Decision::Approved)
        } else {
            self.ledger
                .decide(&order.reference, LedgerState::Declined)
                .await
                .map_err(ledger_err)?
                .then_some(Decision::Declined)
        };
        let Some(decision) = decided else {
            // A concurrent decision won; report what it was.
            let now = self.order(&order.reference).await?;
            return Ok(Decision::AlreadyDecided(now.state));
        };
        if let Some(n) = self.notifier.get() {
            n.order_changed(&order.desk_order_id).await;
        }
        Ok(decision)
    }

    async fn order(&self, reference: &str) -> Result<LedgerOrder, CaError> {
        self.ledger
            .get(reference)
            .await
            .map_err(ledger_err)?
            .ok_or_else(|| CaError::UnknownReference(reference.to_string()))
    }
}

enum Decision {
    Approved(IssuedMetadata),
    Declined,
    AlreadyDecided(LedgerState),
    Expired,
    UnknownLink,
}

fn ledger_err(e: ledger::LedgerError) -> CaError {
    CaError::Transient(format!("CA ledger: {e}"))
}

fn mail_err(e: MailError) -> CaError {
    match e {
        MailError::Transient(m) => CaError::Transient(m),
        MailError::Permanent(m) | MailError::Config(m) => CaError::Refused(m),
    }
}

fn metadata(der: &[u8]) -> Result<IssuedMetadata, CaError> {
    Ok(issued_metadata(&inspect_issued(der)?))
}

fn inspect_issued(der: &[u8]) -> Result<CertificateInfo, CaError> {
    inspect_der(der).map_err(|e| CaError::Refused(format!("issued certificate unreadable: {e}")))
}

fn issued_metadata(info: &CertificateInfo) -> IssuedMetadata {
    IssuedMetadata {
        serial: info.serial_hex.clone(),
        not_before: info.not_before,
        not_after: info.not_after,
        sha256_fingerprint: info.sha256_fingerprint.clone(),
        issuer: info.issuer.clone(),
    }
}

#[async_trait]
impl CertificateAuthority for BuiltinCa {
    fn id(&self) -> &str {
        ID
    }

    fn name(&self) -> &str {
        &self.config.name
    }

    fn policy(&self) -> CaPolicy {
        CaPolicy {
            csr: self.csr_policy(),
            max_days: self.config.max_days,
            needs_approver: self.config.validation == Validation::Email,
        }
    }

    async fn submit(&self, request: &CaOrderRequest) -> Result<CaSubmission, CaError> {
        // The same desk order submitted twice (a retried job) is one order.
        let order = match self
            .ledger
            .find_by_desk_order(&request.desk_order_id)
            .await
            .map_err(ledger_err)?
        {
            Some(existing) => existing,
            None if self.config.validation == Validation::None => {
                // Nothing to wait for: signed first, then the order and its
                // certificate recorded in one commit.
                let reference = uuid::Uuid::now_v7().to_string();
                let (der, info) = self.sign(&request.csr_der, request.days)?;
                let meta = issued_metadata(&info);
                if self
                    .ledger
                    .insert_issued(request, &reference, &meta, &der)
                    .await
                    .map_err(ledger_err)?
                {
                    tracing::info!(%reference, serial = %meta.serial, "built-in CA issued a certificate");
                    self.just_issued.put(
                        reference.clone(),
                        IssuedCopy {
                            desk_order_id: request.desk_order_id.clone(),
                            admin_name: request.admin_name.clone(),
                            admin_email: request.admin_email.clone(),
                            first_name: request
                                .names
                                .first()
                                .map(|n| n.as_str().to_string())
                                .unwrap_or_default(),
                            language: request.language.clone(),
                            der,
                            info,
                        },
                    );
                    return Ok(CaSubmission {
                        reference,
                        status: CaOrderStatus::Issued(meta),
                    });
                }
                // The same desk order, recorded a moment ago by another
                // submission: that one stands.
                self.ledger
                    .find_by_desk_order(&request.desk_order_id)
                    .await
                    .map_err(ledger_err)?
                    .ok_or_else(|| CaError::Transient("CA ledger: order vanished".into()))?
            }
            None => {
                let reference = uuid::Uuid::now_v7().to_string();
                let token = random_token(32);
                let expires = OffsetDateTime::now_utc() + Duration::days(APPROVAL_LINK_DAYS);
                self.ledger
                    .insert(
                        request,
                        &reference,
                        &sha256(token.as_bytes()),
                        &self
                            .keys
                            .seal(token.as_bytes(), &format!("approval:{reference}")),
                        expires,
                    )
                    .await
                    .map_err(ledger_err)?
                    .ok_or_else(|| CaError::Transient("CA ledger: order vanished".into()))?
            }
        };
        if order.state == LedgerState::Pending && self.config.validation == Validation::None {
            if let Some(meta) = self.issue(&order).await? {
                return Ok(CaSubmission {
                    reference: order.reference,
                    status: CaOrderStatus::Issued(meta),
                });
            }
        }
        let status = self.status(&order.reference).await?;
        Ok(CaSubmission {
            reference: order.reference,
            status,
        })
    }

    async fn status(&self, reference: &str) -> Result<CaOrderStatus, CaError> {
        let order = self.order(reference).await?;
        Ok(match order.state {
            LedgerState::Pending => CaOrderStatus::PendingApproval,
            LedgerState::Declined => CaOrderStatus::Declined,
            LedgerState::Cancelled => CaOrderStatus::Cancelled,
            LedgerState::Issued => {
                let der = self
                    .ledger
                    .certificate(reference)
                    .await
                    .map_err(ledger_err)?
                    .ok_or_else(|| {
                        CaError::Transient(format!("ledger lacks the certificate of {reference}"))
                    })?;
                CaOrderStatus::Issued(metadata(&der)?)
            }
        })
    }

    async fn cancel(&self, reference: &str) -> Result<(), CaError> {
        let order = self.order(reference).await?;
        match order.state {
            LedgerState::Pending => {
                if self
                    .ledger
                    .decide(reference, LedgerState::Cancelled)
                    .await
                    .map_err(ledger_err)?
                {
                    Ok(())
                } else {
                    Err(CaError::Conflict(
                        "the approver has just decided on this order".into(),
                    ))
                }
            }
            LedgerState::Cancelled => Ok(()),
            LedgerState::Issued => Err(CaError::Conflict(
                "the certificate has already been issued".into(),
            )),
            LedgerState::Declined => {
                Err(CaError::Conflict("the approver declined this order".into()))
            }
        }
    }

    async fn send_approval_email(
        &self,
        reference: &str,
        delivery: &EmailDelivery,
    ) -> Result<(), CaError> {
        let mut order = self.order(reference).await?;
        if order.state != LedgerState::Pending {
            return Err(CaError::Conflict(
                "the order is no longer waiting for approval".into(),
            ));
        }
        // Same link while it is valid; a new one once it has expired.
        let token = if order
            .approval_expires_at
            .is_some_and(|t| t > OffsetDateTime::now_utc())
        {
            let sealed = order.approval_token_sealed.as_deref().unwrap_or_default();
            let bytes = self
                .keys
                .open(sealed, &format!("approval:{reference}"))
                .map_err(|e| CaError::Refused(e.to_string()))?;
            String::from_utf8(bytes)
                .map_err(|_| CaError::Refused("approval link damaged".into()))?
        } else {
            let token = random_token(32);
            let expires = OffsetDateTime::now_utc() + Duration::days(APPROVAL_LINK_DAYS);
            self.ledger
                .renew_token(
                    reference,
                    &sha256(token.as_bytes()),
                    &self
                        .keys
                        .seal(token.as_bytes(), &format!("approval:{reference}")),
                    expires,
                )
                .await
                .map_err(ledger_err)?;
            order.approval_expires_at = Some(expires);
            token
        };
        let approver = order
            .approver_email
            .clone()
            .unwrap_or_else(|| delivery.recipient.clone());
        let link = self.approval_link(&token);
        let message = templates::approval_email(
            self.mailer.from(),
            mail::mailbox(None, &approver).map_err(mail_err)?,
            &delivery.message_id,
            &templates::ApprovalDetails {
                order_id: &order.desk_order_id,
                names: &order.names,
                requester: order.requester.as_str(),
                admin_email: order.admin_email.as_str(),
                link: &link,
                expires_at: order
                    .approval_expires_at
                    .unwrap_or_else(OffsetDateTime::now_utc),
                ca_name: &self.config.name,
            },
            Lang::parse(&order.language).unwrap_or_default(),
        )
        .map_err(mail_err)?;
        self.mailer.send(message).await.map_err(mail_err)
    }

    async fn send_fulfillment_email(
        &self,
        reference: &str,
        delivery: &EmailDelivery,
    ) -> Result<(), CaError> {
        let copy = match self.just_issued.take(reference) {
            Some(copy) => copy,
            None => self.issued_copy(reference).await?,
        };
        let cert_pem = pem_encode_cert(&copy.der);
        let chain_pem = self.intermediate_pem();
        let info = &copy.info;
        let message = templates::fulfillment_email(
            self.mailer.from(),
            mail::mailbox(Some(&copy.admin_name), &copy.admin_email).map_err(mail_err)?,
            &delivery.message_id,
            &templates::FulfillmentDetails {
                order_id: &copy.desk_order_id,
                admin_name: &copy.admin_name,
                common_name: info.common_name.as_deref().unwrap_or(&copy.first_name),
                names: &info.names,
                serial: &info.serial_hex,
                not_before: info.not_before,
                not_after: info.not_after,
                sha256_fingerprint: &info.sha256_fingerprint,
                issuer: &info.issuer,
                key_type: &info.key_type,
                ca_name: &self.config.name,
                certificate_pem: &cert_pem,
                chain_pem: &chain_pem,
            },
            Lang::parse(&copy.language).unwrap_or_default(),
        )
        .map_err(mail_err)?;
        self.mailer.send(message).await.map_err(mail_err)
    }
}
