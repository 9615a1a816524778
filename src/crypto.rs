//! Secrets at rest: the master key and authenticated encryption under it.
//!
//! XChaCha20-Poly1305 with a random 192-bit nonce per message, so nonces never
//! need coordinating between processes. Sealed values are `nonce || ciphertext`.

use std::fs;
use std::io::Write;
use std::path::Path;

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

    /// Encrypt `plaintext`; `context` is bound to the ciphertext so a value
    /// sealed for one purpose cannot be swapped in for another.
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
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &str) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN {
            return Err(CryptoError::Open(context.to_string()));
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        XChaCha20Poly1305::new((&self.0).into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open(context.to_string()))
    }
}

/// A random value of `bytes` bytes, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

pub fn sha256(data: &[u8]) -> Vec<u8> {
    Sha256::digest(data).to_vec()
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
    fn malformed_master_key_is_refused() {
        assert!(matches!(
            MasterKey::parse("short"),
            Err(CryptoError::BadMasterKey)
        ));
    }
}
