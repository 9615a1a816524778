//! Master-key rotation: every secret sealed under the master key — the data
//! keys of stored certificates, the built-in CA's private keys and its
//! approval links — is sealed again under a new key.
//!
//! With the key file (the default), the new key becomes current at once and
//! the old one stays in `master.key.previous` until every value is re-sealed,
//! so a running desk keeps opening everything throughout: it notices the new
//! key file and loads both.

use std::path::Path;

use crate::crypto::{sealed_key_id, Keyring, MasterKey, MASTER_KEY_FILE, PREVIOUS_KEYS_FILE};
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Ca(#[from] crate::ca::builtin::BuiltinCaError),
    #[error("{0}")]
    Io(String),
    #[error(
        "the master key comes from CERTDESK_MASTER_KEY: put the new key in CERTDESK_NEW_MASTER_KEY \
         (32 bytes, hex or base64) to rotate, then restart the desk with it as CERTDESK_MASTER_KEY"
    )]
    NeedNewKey,
}

#[derive(Debug, Default)]
pub struct RotationReport {
    pub new_key_id: String,
    pub certificate_keys: usize,
    pub ca_secrets: usize,
}

fn write_key_file(path: &Path, text: &str) -> Result<(), RotationError> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let io = |e: std::io::Error| RotationError::Io(format!("{}: {e}", path.display()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(&tmp).map_err(io)?;
    f.write_all(text.as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Re-seals every data key not yet under `new`, until none is left (a desk
/// running meanwhile may add some under the old key).
async fn rewrap_certificate_keys(
    store: &dyn Store,
    ring: &Keyring,
    new: &MasterKey,
) -> Result<usize, RotationError> {
    let mut total = 0;
    loop {
        let mut changed = 0;
        for (id, wrapped) in store.wrapped_keys().await? {
            if sealed_key_id(&wrapped) == Some(new.id()) {
                continue;
            }
            let context = format!("data-key:certificate-key:{id}");
            let data_key = ring.open(&wrapped, &context)?;
            if store
                .rewrap_key(&id, &wrapped, &new.seal(&data_key, &context))
                .await?
            {
                changed += 1;
            }
        }
        total += changed;
        if changed == 0 {
            return Ok(total);
        }
    }
}

pub async fn rotate_master_key(
    store: &dyn Store,
    data_dir: &Path,
    env_key: Option<&str>,
    new_env_key: Option<&str>,
) -> Result<RotationReport, RotationError> {
    let env_key = env_key.filter(|k| !k.trim().is_empty());
    let (ring, new) = match env_key {
        Some(old) => {
            let new = MasterKey::parse(new_env_key.ok_or(RotationError::NeedNewKey)?)?;
            (
                Keyring::fixed(vec![new.clone(), MasterKey::parse(old)?]),
                new,
            )
        }
        None => {
            let ring = Keyring::load(None, data_dir)?;
            let old = ring.current();
            let new = MasterKey::generate();
            // Old key first into the previous file, then the new key in
            // place: at every moment both files together open everything.
            let previous = data_dir.join(PREVIOUS_KEYS_FILE);
            let mut kept = std::fs::read_to_string(&previous).unwrap_or_default();
            kept.push_str(&old.to_base64());
            kept.push('\n');
            write_key_file(&previous, &kept)?;
            write_key_file(&data_dir.join(MASTER_KEY_FILE), &new.to_base64())?;
            (Keyring::load(None, data_dir)?, new)
        }
    };
    let certificate_keys = rewrap_certificate_keys(store, &ring, &new).await?;
    let ca_secrets =
        crate::ca::builtin::BuiltinCa::reseal(&data_dir.join("ca"), &ring, &new).await?;
    if env_key.is_none() {
        let _ = std::fs::remove_file(data_dir.join(PREVIOUS_KEYS_FILE));
    }
    Ok(RotationReport {
        new_key_id: new.id_hex(),
        certificate_keys,
        ca_secrets,
    })
}
