//! Secrets at rest: the master key and authenticated encryption under it.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per message, so nonces never
//! need coordinating between processes. Sealed values are `nonce || ciphertext`.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

const NONCE_LEN: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// The master key given in the environment is malformed.
    #[error("CERTDESK_MASTER_KEY must be 32 bytes, as 64 hex digits or base64")]
    BadMasterKey,
    /// A sealed value does not open under this key: wrong key or tampered data.
    #[error("cannot decrypt {0}: wrong master key or damaged data")]
    Open(String),
    /// Sealed under a master key this desk does not have.
    #[error("cannot decrypt {0}: it was sealed with a master key this desk does not have")]
    UnknownKey(String),
    #[error("master key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
}

/// The key that protects every other secret the desk keeps on disk.
#[derive(Clone)]
pub struct MasterKey([u8; 32]);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// Parse a key given as 64 hex digits or as base64 of 32 bytes.
    pub fn parse(text: &str) -> Result<MasterKey, CryptoError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .ok()
            .or_else(|| STANDARD.decode(text).ok())
            .or_else(|| URL_SAFE_NO_PAD.decode(text).ok())
            .ok_or(CryptoError::BadMasterKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::BadMasterKey)?;
        Ok(MasterKey(key))
    }

    /// The key from `env_value` when set, else from `key_file`, which is
    /// created (mode 0600) with a fresh random key on first use.
    pub fn load_or_create(
        env_value: Option<&str>,
        key_file: &Path,
    ) -> Result<MasterKey, CryptoError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return MasterKey::parse(v);
        }
        let io_err = |source| CryptoError::KeyFile {
            path: key_file.display().to_string(),
            source,
        };
        match fs::read_to_string(key_file) {
            Ok(text) => MasterKey::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                let mut options = fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(key_file).map_err(io_err)?;
                file.write_all(STANDARD.encode(key).as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(io_err)?;
                Ok(MasterKey(key))
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Names the key in sealed values (the first 8 bytes of its SHA-256),
    /// so a keyring knows which key opens what.
    pub fn id(&self) -> [u8; 8] {
        let d = Sha256::digest(self.0);
        d[..8].try_into().expect("8 bytes")
    }

    pub fn id_hex(&self) -> String {
        hex::encode(self.id())
    }

    pub fn generate() -> MasterKey {
        let mut key = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        MasterKey(key)
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Encrypt `plaintext`; `context` is bound to the ciphertext so a value
    /// sealed for one purpose cannot be swapped in for another. The result
    /// is `1 || key id || nonce || ciphertext`.
    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        let cipher = XChaCha20Poly1305::new((&self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = vec![FORMAT_V1];
        out.extend_from_slice(&self.id());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let err = || CryptoError::Open(context.to_string());
        let body = match sealed_key_id(sealed) {
            Some(id) if id == self.id() => &sealed[1 + 8..],
            _ => return Err(err()),
        };
        if body.len() < NONCE_LEN {
            return Err(err());
        }
        let (nonce, ct) = body.split_at(NONCE_LEN);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| err())
    }
}

const FORMAT_V1: u8 = 1;

/// The id of the key a value was sealed with.
pub fn sealed_key_id(sealed: &[u8]) -> Option<[u8; 8]> {
    (sealed.len() > 9 && sealed[0] == FORMAT_V1).then(|| sealed[1..9].try_into().expect("8 bytes"))
}

/// Encrypts with a fresh data key, itself sealed by the master key
/// (envelope encryption): rotating the master key re-seals only data keys.
pub fn envelope_seal(keyring: &Keyring, plaintext: &[u8], context: &str) -> (Vec<u8>, Vec<u8>) {
    let data_key = MasterKey::generate();
    let ciphertext = data_key.seal(plaintext, context);
    let wrapped = keyring.seal(&data_key.0, &format!("data-key:{context}"));
    (ciphertext, wrapped)
}

pub fn envelope_open(
    keyring: &Keyring,
    ciphertext: &[u8],
    wrapped: &[u8],
    context: &str,
) -> Result<Vec<u8>, CryptoError> {
    let dk = keyring.open(wrapped, &format!("data-key:{context}"))?;
    let data_key = MasterKey(
        dk.try_into()
            .map_err(|_| CryptoError::Open(context.to_string()))?,
    );
    data_key.open(ciphertext, context)
}

/// The current master key and, during a rotation, the previous ones. A
/// keyring loaded from files notices a rotation done by another process
/// (`certdesk admin rotate-master-key`) and picks up the new key, so the
/// desk keeps running through it.
pub struct Keyring {
    keys: RwLock<Vec<MasterKey>>,
    files: Option<(PathBuf, PathBuf)>,
    seen: Mutex<Option<std::time::SystemTime>>,
}

impl Keyring {
    pub fn fixed(keys: Vec<MasterKey>) -> Keyring {
        Keyring {
            keys: RwLock::new(keys),
            files: None,
            seen: Mutex::new(None),
        }
    }

    /// From `CERTDESK_MASTER_KEY` when set, else from `<dir>/master.key`
    /// (created on first use) plus `<dir>/master.key.previous` while a
    /// rotation runs.
    pub fn load(env_value: Option<&str>, dir: &Path) -> Result<Keyring, CryptoError> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok(Keyring::fixed(vec![MasterKey::parse(v)?]));
        }
        let current = dir.join(MASTER_KEY_FILE);
        let previous = dir.join(PREVIOUS_KEYS_FILE);
        MasterKey::load_or_create(None, &current)?;
        let ring = Keyring {
            keys: RwLock::new(vec![]),
            files: Some((current, previous)),
            seen: Mutex::new(None),
        };
        ring.reload()?;
        Ok(ring)
    }

    fn reload(&self) -> Result<(), CryptoError> {
        let Some((current, previous)) = &self.files else {
            return Ok(());
        };
        let io_err = |path: &Path| {
            let path = path.display().to_string();
            move |source| CryptoError::KeyFile { path, source }
        };
        let mtime = std::fs::metadata(current)
            .and_then(|m| m.modified())
            .map_err(io_err(current))?;
        let mut keys = vec![MasterKey::parse(
            &std::fs::read_to_string(current).map_err(io_err(current))?,
        )?];
        match std::fs::read_to_string(previous) {
            Ok(text) => {
                for line in text.lines().filter(|l| !l.trim().is_empty()) {
                    keys.push(MasterKey::parse(line)?);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(previous)(e)),
        }
        // Keys this process knew stay usable until it ends: a value it
        // sealed just before a rotation still opens.
        let mut held = self.keys.write().unwrap_or_else(|e| e.into_inner());
        for k in held.iter() {
            if !keys.iter().any(|n| n.id() == k.id()) {
                keys.push(k.clone());
            }
        }
        *held = keys;
        *self.seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(mtime);
        Ok(())
    }

    /// Reloads when the key file changed since we last read it.
    fn refresh(&self) {
        let Some((current, _)) = &self.files else {
            return;
        };
        let mtime = std::fs::metadata(current).and_then(|m| m.modified()).ok();
        let seen = *self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if mtime.is_some() && mtime != seen {
            if let Err(e) = self.reload() {
                tracing::error!(error = %e, "cannot reload the master key");
            }
        }
    }

    pub fn current(&self) -> MasterKey {
        self.refresh();
        self.keys.read().unwrap_or_else(|e| e.into_inner())[0].clone()
    }

    pub fn seal(&self, plaintext: &[u8], context: &str) -> Vec<u8> {
        self.current().seal(plaintext, context)
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        let id = sealed_key_id(sealed).ok_or_else(|| CryptoError::Open(context.to_string()))?;
        let find = |keys: &[MasterKey]| keys.iter().find(|k| k.id() == id).cloned();
        let key = find(&self.keys.read().unwrap_or_else(|e| e.into_inner()));
        let key = match key {
            Some(k) => k,
            None => {
                self.reload()?;
                find(&self.keys.read().unwrap_or_else(|e| e.into_inner()))
                    .ok_or_else(|| CryptoError::UnknownKey(context.to_string()))?
            }
        };
        key.open(sealed, context)
    }
}

pub const MASTER_KEY_FILE: &str = "master.key";
pub const PREVIOUS_KEYS_FILE: &str = "master.key.previous";

/// A random value of `bytes` bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_value_opens_only_with_the_same_key_and_context() {
        let key = MasterKey::parse(&hex::encode([7u8; 32])).unwrap();
        let sealed = key.seal(b"secret", "ca-key:root");
        assert_eq!(key.open(&sealed, "ca-key:root").unwrap(), b"secret");
        assert!(key.open(&sealed, "ca-key:intermediate").is_err());
        let other = MasterKey::parse(&hex::encode([8u8; 32])).unwrap();
        assert!(other.open(&sealed, "ca-key:root").is_err());
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let a = MasterKey::load_or_create(None, &path).unwrap();
        let b = MasterKey::load_or_create(None, &path).unwrap();
        assert_eq!(a.0, b.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }

    #[test]
    fn a_keyring_opens_values_of_every_key_it_holds_and_seals_with_the_first() {
        let old = MasterKey::generate();
        let new = MasterKey::generate();
        let by_old = old.seal(b"data key", "ctx");
        let ring = Keyring::fixed(vec![new.clone(), old.clone()]);
        assert_eq!(ring.open(&by_old, "ctx").unwrap(), b"data key");
        assert_eq!(sealed_key_id(&ring.seal(b"x", "ctx")), Some(new.id()));
        let stranger = Keyring::fixed(vec![MasterKey::generate()]);
        assert!(matches!(
            stranger.open(&by_old, "ctx"),
            Err(CryptoError::UnknownKey(_))
        ));
    }

    #[test]
    fn a_keyring_on_files_picks_up_a_rotated_key() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::load(None, dir.path()).unwrap();
        let before = ring.current();
        let sealed = ring.seal(b"secret", "ctx");
        // Another process rotates: old key to the previous file, new key in place.
        let new = MasterKey::generate();
        fs::write(
            dir.path().join(PREVIOUS_KEYS_FILE),
            format!("{}\n", before.to_base64()),
        )
        .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        fs::write(dir.path().join(MASTER_KEY_FILE), new.to_base64()).unwrap();
        assert_eq!(
            ring.current().id(),
            new.id(),
            "the new key seals from now on"
        );
        assert_eq!(ring.open(&sealed, "ctx").unwrap(), b"secret");
        assert_eq!(ring.open(&new.seal(b"n", "ctx"), "ctx").unwrap(), b"n");
    }

    #[test]
    fn envelope_encryption_round_trips_and_binds_the_context() {
        let ring = Keyring::fixed(vec![MasterKey::generate()]);
        let (ct, wrapped) = envelope_seal(&ring, b"private key", "certificate-key:1");
        assert_eq!(
            envelope_open(&ring, &ct, &wrapped, "certificate-key:1").unwrap(),
            b"private key"
        );
        assert!(envelope_open(&ring, &ct, &wrapped, "certificate-key:2").is_err());
    }

    #[test]
    fn malformed_master_key_is_refused() {
        assert!(matches!(
            MasterKey::parse("short"),
            Err(CryptoError::BadMasterKey)
        ));
    }
}
