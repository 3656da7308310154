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
    /// by its owner only).
    pub fn load_or_create(secret: Option<&str>, data_dir: &Path) -> anyhow::Result<Self> {
        if let Some(secret) = secret {
            return Ok(Self::new(secret));
        }
        let path = data_dir.join(KEY_FILE);
        if let Ok(secret) = std::fs::read_to_string(&path) {
            return Ok(Self::new(secret.trim()));
        }
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create {}", data_dir.display()))?;
        let secret = random_token("sig_");
        write_private(&path, &secret)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self::new(&secret))
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

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
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
}
