//! The certificate store: certificates users import by hand, with their
//! private keys encrypted at rest (envelope encryption under the master key).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::*;
use crate::crypto::{envelope_open, envelope_seal};
use crate::pki::import::{self, ImportError, ImportInput, ValidatedBundle};
use crate::store::{CertificateFilter, Cursor, SealedKey, StoredCertificate};

/// Certificates expiring sooner than this are flagged in lists.
pub const EXPIRY_WARNING_DAYS: i64 = 30;

/// The shortest password accepted for a PKCS#12 export. The file leaves the
/// desk with the private key in it and can be attacked offline, where only
/// the password and the KDF's iterations slow guessing down. 8 is NIST SP
/// 800-63B's floor for a password a person chooses, and meets Java keytool's
/// own minimum of 6, so the file opens wherever it is installed.
pub const MIN_EXPORT_PASSWORD_CHARS: usize = 8;

/// What a user hands over to import a certificate (PEM text, or a PKCS#12
/// file in base64).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub certificate: Option<String>,
    pub fullchain: Option<String>,
    pub private_key: Option<String>,
    pub key_password: Option<String>,
    pub chain: Option<String>,
    /// Base64 of the PKCS#12 file.
    pub pkcs12: Option<String>,
    pub pkcs12_password: Option<String>,
    pub csr: Option<String>,
    pub notes: Option<String>,
    #[serde(default)]
    pub allow_expired: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    pub subject: String,
    pub issuer: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificateView {
    pub id: String,
    pub common_name: Option<String>,
    pub names: Vec<String>,
    pub issuer: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub days_left: i64,
    pub expiring_soon: bool,
    pub expired: bool,
    pub sha256_fingerprint: String,
    pub key_type: String,
    pub notes: String,
    pub warnings: serde_json::Value,
    pub chain: Vec<ChainLink>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(Debug, Clone, Serialize)]
pub struct CertificatePage {
    pub certificates: Vec<CertificateView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct CertificateQuery {
    pub name: Option<String>,
    pub expiring_within_days: Option<u32>,
    pub cursor: Option<String>,
    pub limit: Option<u32>,
}

/// The certificate's files as PEM.
pub struct CertificateFiles {
    pub certificate: String,
    pub chain: String,
    pub fullchain: String,
}

fn import_invalid(e: ImportError) -> ServiceError {
    ServiceError::invalid(e.field(), e.code(), e.to_string())
}

fn view(c: &StoredCertificate) -> CertificateView {
    let now = OffsetDateTime::now_utc();
    let days_left = (c.not_after - now).whole_days();
    let chain = crate::pki::cert::parse_pem_certs(&c.chain_pem)
        .unwrap_or_default()
        .iter()
        .filter_map(|der| crate::pki::cert::inspect_der(der).ok())
        .map(|i| ChainLink {
            subject: i.subject,
            issuer: i.issuer,
            not_after: i.not_after,
        })
        .collect();
    CertificateView {
        id: c.id.clone(),
        common_name: c.common_name.clone(),
        names: c.names.clone(),
        issuer: c.issuer.clone(),
        serial: c.serial.clone(),
        not_before: c.not_before,
        not_after: c.not_after,
        days_left,
        expiring_soon: c.not_after > now && days_left < EXPIRY_WARNING_DAYS,
        expired: c.not_after <= now,
        sha256_fingerprint: c.fingerprint.clone(),
        key_type: c.key_type.clone(),
        notes: c.notes.clone(),
        warnings: c.warnings.clone(),
        chain,
        created_at: c.created_at,
        updated_at: c.updated_at,
    }
}

fn check_notes(notes: &str) -> ServiceResult<String> {
    if notes.chars().count() > 2000 {
        return Err(ServiceError::invalid(
            "notes",
            "too_long",
            "notes hold at most 2000 characters",
        ));
    }
    Ok(notes.trim().to_string())
}

/// Parsing, key derivation from passwords and signature checks take real
/// CPU time (a hostile PKCS#12 can ask for many KDF rounds): off the async
/// threads.
async fn validate_off_runtime(req: &ImportRequest) -> ServiceResult<ValidatedBundle> {
    let req = req.clone();
    tokio::task::spawn_blocking(move || validate(&req))
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
}

fn validate(req: &ImportRequest) -> ServiceResult<ValidatedBundle> {
    let p12 = match req.pkcs12.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(b64) => Some(STANDARD.decode(b64.trim()).map_err(|_| {
            ServiceError::invalid(
                "pkcs12",
                "import_pkcs12_not_base64",
                "the PKCS#12 file must be sent as base64",
            )
        })?),
        None => None,
    };
    fn bytes(s: &Option<String>) -> Option<&[u8]> {
        s.as_deref()
            .filter(|s| !s.trim().is_empty())
            .map(str::as_bytes)
    }
    let input = ImportInput {
        certificate: bytes(&req.certificate),
        fullchain: bytes(&req.fullchain),
        private_key: bytes(&req.private_key),
        key_password: req.key_password.as_deref().filter(|p| !p.is_empty()),
        chain: bytes(&req.chain),
        pkcs12: p12.as_deref(),
        pkcs12_password: req.pkcs12_password.as_deref(),
        allow_expired: req.allow_expired,
    };
    import::validate_import(&input, OffsetDateTime::now_utc()).map_err(import_invalid)
}

fn stored(
    actor: &Actor,
    id: &str,
    b: &ValidatedBundle,
    csr: Option<String>,
    notes: String,
) -> StoredCertificate {
    let now = OffsetDateTime::now_utc();
    StoredCertificate {
        id: id.to_string(),
        account_id: actor.account_id.clone(),
        common_name: b.info.common_name.clone(),
        names: b.info.names.clone(),
        issuer: b.info.issuer.clone(),
        serial: b.info.serial_hex.clone(),
        not_before: b.info.not_before,
        not_after: b.info.not_after,
        fingerprint: b.info.sha256_fingerprint.clone(),
        key_type: b.info.key_type.clone(),
        certificate_pem: crate::pki::cert::pem_encode_cert(&b.certificate_der),
        chain_pem: import::chain_pem(&b.chain_der),
        csr_pem: csr,
        notes,
        warnings: serde_json::to_value(&b.warnings).unwrap_or_default(),
        expired_on_import: b.expired,
        created_by: actor.user_id.clone(),
        created_at: now,
        updated_at: now,
    }
}

fn key_context(id: &str) -> String {
    format!("certificate-key:{id}")
}

impl Desk {
    fn seal_key(&self, id: &str, pkcs8: &[u8]) -> SealedKey {
        let (ciphertext, wrapped_key) = envelope_seal(&self.keys, pkcs8, &key_context(id));
        SealedKey {
            ciphertext,
            wrapped_key,
        }
    }

    async fn open_key(&self, actor: &Actor, id: &str) -> ServiceResult<Vec<u8>> {
        let sealed = self
            .store
            .certificate_key(&actor.account_id, id)
            .await?
            .ok_or(ServiceError::NotFound("certificate"))?;
        envelope_open(
            &self.keys,
            &sealed.ciphertext,
            &sealed.wrapped_key,
            &key_context(id),
        )
        .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    async fn scoped_certificate(
        &self,
        actor: &Actor,
        id: &str,
    ) -> ServiceResult<StoredCertificate> {
        self.store
            .get_certificate(&actor.account_id, id)
            .await?
            .ok_or(ServiceError::NotFound("certificate"))
    }

    pub async fn import_certificate(
        &self,
        actor: &Actor,
        req: ImportRequest,
    ) -> ServiceResult<CertificateView> {
        require_ordering_role(actor)?;
        let notes = check_notes(req.notes.as_deref().unwrap_or(""))?;
        let bundle = validate_off_runtime(&req).await?;
        let id = uuid::Uuid::now_v7().to_string();
        let cert = stored(
            actor,
            &id,
            &bundle,
            req.csr.clone().filter(|c| !c.trim().is_empty()),
            notes,
        );
        let key = self.seal_key(&id, &bundle.key_pkcs8_der);
        let event = audit(
            actor,
            "certificate.imported",
            &id,
            serde_json::json!({"names": cert.names, "serial": cert.serial, "warnings": cert.warnings}),
        );
        self.store.insert_certificate(&cert, &key, &event).await?;
        Ok(view(&cert))
    }

    pub async fn certificate(&self, actor: &Actor, id: &str) -> ServiceResult<CertificateView> {
        Ok(view(&self.scoped_certificate(actor, id).await?))
    }

    pub async fn list_certificates(
        &self,
        actor: &Actor,
        q: &CertificateQuery,
    ) -> ServiceResult<CertificatePage> {
        let limit = q.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(ServiceError::invalid(
                "limit",
                "invalid_limit",
                "limit must be between 1 and 200",
            ));
        }
        let after = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
            Some(c) => Some(super::orders::decode_cursor(c)?),
            None => None,
        };
        let filter = CertificateFilter {
            name: q
                .name
                .clone()
                .filter(|n| !n.trim().is_empty())
                .map(|n| n.trim().to_lowercase()),
            expiring_before: q
                .expiring_within_days
                .map(|d| OffsetDateTime::now_utc() + time::Duration::days(d as i64)),
        };
        let mut rows = self
            .store
            .list_certificates(&actor.account_id, &filter, after.as_ref(), limit + 1)
            .await?;
        let next_cursor = if rows.len() > limit as usize {
            rows.truncate(limit as usize);
            rows.last().map(|c| {
                super::orders::encode_cursor(&Cursor {
                    created_at_ms: crate::store::to_ms(c.created_at),
                    id: c.id.clone(),
                })
            })
        } else {
            None
        };
        Ok(CertificatePage {
            certificates: rows.iter().map(view).collect(),
            next_cursor,
        })
    }

    pub async fn certificate_files(
        &self,
        actor: &Actor,
        id: &str,
    ) -> ServiceResult<CertificateFiles> {
        let c = self.scoped_certificate(actor, id).await?;
        Ok(CertificateFiles {
            fullchain: format!("{}{}", c.certificate_pem, c.chain_pem),
            certificate: c.certificate_pem,
            chain: c.chain_pem,
        })
    }

    pub async fn update_certificate_notes(
        &self,
        actor: &Actor,
        id: &str,
        notes: &str,
    ) -> ServiceResult<CertificateView> {
        require_ordering_role(actor)?;
        let mut c = self.scoped_certificate(actor, id).await?;
        c.notes = check_notes(notes)?;
        let event = audit(
            actor,
            "certificate.notes_changed",
            id,
            serde_json::json!({}),
        );
        if !self.store.update_certificate(&c, None, &event).await? {
            return Err(ServiceError::NotFound("certificate"));
        }
        self.certificate(actor, id).await
    }

    /// Renewal: a new certificate for the same entry, with the stored key
    /// (it must match) or a new one.
    pub async fn replace_certificate(
        &self,
        actor: &Actor,
        id: &str,
        mut req: ImportRequest,
    ) -> ServiceResult<CertificateView> {
        require_ordering_role(actor)?;
        let old = self.scoped_certificate(actor, id).await?;
        let given = |v: &Option<String>| v.as_deref().is_some_and(|k| !k.trim().is_empty());
        let new_key = given(&req.private_key) || given(&req.pkcs12);
        if !new_key {
            let pkcs8 = self.open_key(actor, id).await?;
            req.private_key = Some(import::key_pem(&pkcs8));
            req.key_password = None;
        }
        let bundle = validate_off_runtime(&req).await.map_err(|e| match e {
            // Without a new key the stored one was tried: what does not fit
            // is the certificate the caller sent, not a key they never sent.
            ServiceError::Invalid { code, .. } if !new_key && code == "import_key_mismatch" => {
                ServiceError::invalid(
                    "certificate",
                    "import_key_mismatch",
                    "this certificate is not for the private key stored with this entry; to \
                     replace both, send the new certificate's private key too (private_key or \
                     pkcs12)",
                )
            }
            e => e,
        })?;
        let notes = match &req.notes {
            Some(n) => check_notes(n)?,
            None => old.notes.clone(),
        };
        let mut cert = stored(
            actor,
            id,
            &bundle,
            req.csr.clone().or(old.csr_pem.clone()),
            notes,
        );
        cert.created_at = old.created_at;
        cert.created_by = old.created_by.clone();
        let key = new_key.then(|| self.seal_key(id, &bundle.key_pkcs8_der));
        let event = audit(
            actor,
            "certificate.replaced",
            id,
            serde_json::json!({"old_serial": old.serial, "serial": cert.serial, "new_key": new_key}),
        );
        if !self
            .store
            .update_certificate(&cert, key.as_ref(), &event)
            .await?
        {
            return Err(ServiceError::NotFound("certificate"));
        }
        self.certificate(actor, id).await
    }

    pub async fn delete_certificate(&self, actor: &Actor, id: &str) -> ServiceResult<()> {
        require_ordering_role(actor)?;
        let c = self.scoped_certificate(actor, id).await?;
        let event = audit(
            actor,
            "certificate.deleted",
            id,
            serde_json::json!({"names": c.names, "serial": c.serial}),
        );
        if self
            .store
            .delete_certificate(&actor.account_id, id, &event)
            .await?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("certificate"))
        }
    }

    /// The user types their password again before a private key leaves the
    /// desk; every download is in the audit log.
    async fn reauthenticate(&self, actor: &Actor, password: &str) -> ServiceResult<()> {
        require_ordering_role(actor)?;
        match accounts::verify_password(self.store.as_ref(), actor.email.as_str(), password).await?
        {
            Some(u) if u.id == actor.user_id => Ok(()),
            _ => Err(ServiceError::invalid(
                "password",
                "wrong_password",
                "your password is needed to download a private key, and this one is not correct",
            )),
        }
    }

    pub async fn private_key_pem(
        &self,
        actor: &Actor,
        id: &str,
        password: &str,
    ) -> ServiceResult<String> {
        self.scoped_certificate(actor, id).await?;
        self.reauthenticate(actor, password).await?;
        let pkcs8 = self.open_key(actor, id).await?;
        self.store
            .record_audit(&audit(
                actor,
                "certificate.key_downloaded",
                id,
                serde_json::json!({"format": "pem"}),
            ))
            .await?;
        Ok(import::key_pem(&pkcs8))
    }

    pub async fn pkcs12(
        &self,
        actor: &Actor,
        id: &str,
        password: &str,
        export_password: &str,
    ) -> ServiceResult<Vec<u8>> {
        let c = self.scoped_certificate(actor, id).await?;
        if export_password.chars().count() < MIN_EXPORT_PASSWORD_CHARS {
            return Err(ServiceError::invalid(
                "export_password",
                "too_short",
                format!(
                    "the PKCS#12 password needs at least {MIN_EXPORT_PASSWORD_CHARS} characters"
                ),
            ));
        }
        self.reauthenticate(actor, password).await?;
        let pkcs8 = self.open_key(actor, id).await?;
        let cert_der = pem::parse(&c.certificate_pem)
            .map_err(|e| ServiceError::Internal(e.to_string()))?
            .into_contents();
        let chain = crate::pki::cert::parse_pem_certs(&c.chain_pem).unwrap_or_default();
        let name = c
            .common_name
            .clone()
            .unwrap_or_else(|| c.names.first().cloned().unwrap_or_default());
        let p12 = import::export_pkcs12(&cert_der, &chain, &pkcs8, export_password, &name)
            .map_err(import_invalid)?;
        self.store
            .record_audit(&audit(
                actor,
                "certificate.key_downloaded",
                id,
                serde_json::json!({"format": "pkcs12"}),
            ))
            .await?;
        Ok(p12)
    }
}
