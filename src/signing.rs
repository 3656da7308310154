//! Signed, expiring URLs for objects in our storage: `/v1/files/{key}?expires=&signature=`,
//! where the signature is HMAC-SHA256 over the key and the expiry. Handed to clients as
//! `result_url` and to providers for input images; nobody needs an API key to follow one.
use std::path::Path;

use anyhow::Context;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::accounts::{hex, random_token};

const KEY_FILE: &str = "signing.key";

/// Shortest key accepted, in bytes: 256 bits, the HMAC-SHA256 output size.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Clone)]
pub struct UrlSigner {
    secret: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Invalid,
    Expired,
}

impl UrlSigner {
    pub fn new(secret: &str) -> Self {
        Self {
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// The configured secret, else the one kept in `data_dir` (created on first use, readable
    /// by its owner only). A kept key shorter than `MIN_SECRET_LEN` is refused: an empty file
    /// would make every signed URL forgeable.
    pub fn load_or_create(secret: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(secret) = secret {
            return Ok(Self::new(secret));
        }
        let path = data_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(secret) => return Self::kept(&path, secret.trim()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let secret = random_token("sig_");
        match write_new_private(&path, &secret) {
            Ok(()) => Ok(Self::new(&secret)),
            // Another process starting on the same data dir wrote it first: use that one.
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                let kept = std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                Self::kept(&path, kept.trim())
            }
            Err(error) => Err(error).with_context(|| format!("cannot write {}", path.display())),
        }
    }

    /// The key read from `path`, when it is long enough to be one.
    fn kept(path: &Path, secret: &str) -> anyhow::Result<Self> {
        if secret.len() < MIN_SECRET_LEN {
            anyhow::bail!(
                "{} holds {} bytes; a signing key needs at least {MIN_SECRET_LEN}. Delete the \
                 file to have a new key generated (signed URLs handed out so far stop working), \
                 or set signing_secret",
                path.display(),
                secret.len()
            );
        }
        Ok(Self::new(secret))
    }

    fn mac(&self, key: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("any key length");
        mac.update(key.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// `{base}/v1/files/{key}?expires=..&signature=..`, valid until `expires_at`.
    pub fn url(&self, base: &str, key: &str, expires_at: DateTime<Utc>) -> String {
        let expires = expires_at.timestamp();
        let signature = hex(&self.mac(key, expires).finalize().into_bytes());
        format!(
            "{}/v1/files/{key}?expires={expires}&signature={signature}",
            base.trim_end_matches('/')
        )
    }

    /// The signature of `key` until `expires_at`, as `verify` checks it: for values other
    /// than file URLs (the dashboard's sessions), under keys no stored object has.
    pub fn sign(&self, key: &str, expires_at: DateTime<Utc>) -> String {
        hex(&self
            .mac(key, expires_at.timestamp())
            .finalize()
            .into_bytes())
    }

    pub fn verify(
        &self,
        key: &str,
        expires: i64,
        signature: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SignatureError> {
        let signature = decode_hex(signature).ok_or(SignatureError::Invalid)?;
        self.mac(key, expires)
            .verify_slice(&signature)
            .map_err(|_| SignatureError::Invalid)?;
        if now.timestamp() >= expires {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok())
        .collect()
}

/// Writes `contents` to `path` atomically and durably, failing with `AlreadyExists` when the
/// file is there: a temporary file is written and synced, then linked into place (a link,
/// unlike a rename, never replaces a key another process has just written), and the directory
/// is synced so that the name survives a crash.
fn write_new_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let temporary = dir.join(format!(".{KEY_FILE}.{}", uuid::Uuid::new_v4()));
    let written = (|| {
        let mut file = create_private(&temporary)?;
        file.write_all(contents.as_bytes())?;
        file.sync_all()?;
        std::fs::hard_link(&temporary, path)
    })();
    let _ = std::fs::remove_file(&temporary);
    written?;
    sync_dir(dir)
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_signed_url_verifies_until_it_expires_and_only_for_its_key() {
        let signer = UrlSigner::new("a-secret-of-sufficient-length-000");
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let expires_at = now + chrono::Duration::minutes(5);
        let url = signer.url("http://host/", "results/abc", expires_at);
        let signature = url.rsplit("signature=").next().unwrap();
        let expires = expires_at.timestamp();
        assert!(url.starts_with("http://host/v1/files/results/abc?expires="));
        assert_eq!(
            signer.verify("results/abc", expires, signature, now),
            Ok(())
        );
        assert_eq!(
            signer.verify("results/abd", expires, signature, now),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("results/abc", expires + 1, signature, now),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("results/abc", expires, "zz", now),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("results/abc", expires, signature, expires_at),
            Err(SignatureError::Expired)
        );
        let other = UrlSigner::new("another-secret-of-sufficient-length");
        assert_eq!(
            other.verify("results/abc", expires, signature, now),
            Err(SignatureError::Invalid)
        );
    }

    fn temp_dir() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("atelier-signing-{}", uuid::Uuid::new_v4()))
    }

    #[test]
    fn an_empty_or_short_key_file_is_refused() {
        for kept in ["", "\n", "short-key"] {
            let dir = temp_dir();
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(KEY_FILE), kept).unwrap();
            let error = UrlSigner::load_or_create(None, &dir)
                .err()
                .expect("a short key is refused")
                .to_string();
            assert!(error.contains("signing.key holds"), "{error}");
            assert!(error.contains("at least 32"), "{error}");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn a_fresh_data_dir_gets_a_long_private_key_that_is_kept() {
        let dir = temp_dir();
        let first = UrlSigner::load_or_create(None, &dir).unwrap();
        let path = dir.join(KEY_FILE);
        let kept = std::fs::read_to_string(&path).unwrap();
        assert!(kept.len() >= MIN_SECRET_LEN, "{kept:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = UrlSigner::load_or_create(None, &dir).unwrap();
        assert_eq!(again.secret, first.secret);
        let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only signing.key: {leftovers:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
