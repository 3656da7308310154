//! `[storage]`: where objects live (the local filesystem, or any S3 API: R2, AWS S3, MinIO)
//! and how the URLs we hand out reach them. One shape with one set of defaults, deserialized
//! as it is written in TOML and in `ATELIER_STORAGE__*` variables, checked here.
use serde::{Deserialize, Serialize};

use crate::config_check::{MAX_BODY_BYTES, check_base_url, check_range};
use crate::secret::SecretString;

/// S3's smallest part (every part but the last) and its largest; R2 has the same bounds.
pub const MIN_PART_BYTES: usize = 5 * 1024 * 1024;
pub const MAX_PART_BYTES: usize = 1 << 30;
/// The longest a presigned URL may live: SigV4 (and R2) refuse more than 7 days.
pub const MAX_PRESIGNED_SECS: u64 = 7 * 24 * 3600;
/// Longest a storage request may take, in seconds: an outage must fail a step, not hang it.
const MAX_REQUEST_SECS: u64 = 600;
/// Longest a bucket name (S3's own limit) and a key prefix may be.
const MAX_BUCKET_LEN: usize = 63;
const MAX_PREFIX_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Files below `ATELIER_DATA_DIR`; links are our own signed `/v1/files` URLs.
    Local,
    /// An S3 API.
    S3,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Links {
    /// Presigned S3 GET URLs, valid for `workflow.url_ttl_secs` (at most 7 days).
    Presigned,
    /// `public_base_url` + the object's key: a public bucket or a custom domain.
    Public,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    pub backend: Backend,
    /// The bucket (S3 only).
    pub bucket: String,
    /// The S3 API's base URL, e.g. `https://<account>.r2.cloudflarestorage.com`; empty: AWS.
    pub endpoint: String,
    /// The region; R2 wants `auto`.
    pub region: String,
    /// Every key is stored below this prefix (no leading or trailing `/`); empty: none.
    pub prefix: String,
    /// Path-style addressing (`endpoint/bucket/key`), for MinIO and most self-hosted S3 APIs;
    /// off: virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Credentials; when empty, `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` are used.
    pub access_key_id: Option<SecretString>,
    pub secret_access_key: Option<SecretString>,
    /// How `result_url` and input URLs reach objects on S3.
    pub links: Links,
    /// With `links = "public"`: the URL the bucket's objects are public under.
    pub public_base_url: Option<String>,
    /// Objects up to this size go up in one PUT; larger ones in parts of `part_size_bytes`.
    pub multipart_threshold_bytes: usize,
    /// The size of every part but the last (R2 refuses parts of unequal size).
    pub part_size_bytes: usize,
    /// Seconds one storage request may take, and one connection attempt.
    pub request_timeout_secs: u64,
    pub connect_timeout_secs: u64,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Local,
            bucket: String::new(),
            endpoint: String::new(),
            region: "us-east-1".to_owned(),
            prefix: String::new(),
            path_style: true,
            access_key_id: None,
            secret_access_key: None,
            links: Links::Presigned,
            public_base_url: None,
            multipart_threshold_bytes: 32 * 1024 * 1024,
            part_size_bytes: 8 * 1024 * 1024,
            request_timeout_secs: 30,
            connect_timeout_secs: 5,
        }
    }
}

impl StorageConfig {
    /// Every setting within its bounds, or a message naming the first that is not.
    /// `url_ttl_secs` is how long handed-out URLs live (`workflow.url_ttl_secs`).
    pub fn validate(&self, url_ttl_secs: u64) -> Result<(), String> {
        check_range(
            "storage.request_timeout_secs",
            self.request_timeout_secs,
            1,
            MAX_REQUEST_SECS,
        )?;
        check_range(
            "storage.connect_timeout_secs",
            self.connect_timeout_secs,
            1,
            self.request_timeout_secs,
        )?;
        check_range(
            "storage.part_size_bytes",
            self.part_size_bytes,
            MIN_PART_BYTES,
            MAX_PART_BYTES,
        )?;
        check_range(
            "storage.multipart_threshold_bytes",
            self.multipart_threshold_bytes,
            MIN_PART_BYTES,
            MAX_BODY_BYTES,
        )?;
        if self.backend == Backend::Local {
            return Ok(());
        }
        self.validate_s3(url_ttl_secs)
    }

    fn validate_s3(&self, url_ttl_secs: u64) -> Result<(), String> {
        let bucket_ok = (3..=MAX_BUCKET_LEN).contains(&self.bucket.len())
            && self
                .bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(format!(
                "storage.bucket must be an S3 bucket name (3 to {MAX_BUCKET_LEN} lowercase \
                 letters, digits, '-' or '.'), got {:?}",
                self.bucket
            ));
        }
        if !self.endpoint.is_empty() {
            check_base_url("storage.endpoint", &self.endpoint)?;
        }
        if self.region.is_empty() || self.region.len() > 64 {
            return Err("storage.region must be set (R2: \"auto\")".to_owned());
        }
        self.validate_prefix()?;
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(
                "storage.access_key_id and storage.secret_access_key go together".to_owned(),
            );
        }
        match (self.links, &self.public_base_url) {
            (Links::Public, None) => Err(
                "storage.links = \"public\" needs storage.public_base_url, the URL the bucket \
                 is public under"
                    .to_owned(),
            ),
            (Links::Public, Some(base)) => check_base_url("storage.public_base_url", base),
            (Links::Presigned, _) if url_ttl_secs > MAX_PRESIGNED_SECS => Err(format!(
                "workflow.url_ttl_secs must be at most {MAX_PRESIGNED_SECS} (7 days) with \
                 presigned S3 links, got {url_ttl_secs}"
            )),
            (Links::Presigned, _) => Ok(()),
        }
    }

    /// `scheme://host[:port]` of the links handed out for S3 objects, where it is configured
    /// (a custom endpoint or `public_base_url`); `None` on the local filesystem and on AWS's
    /// own endpoints.
    pub fn link_origin(&self) -> Option<String> {
        let base = match (self.backend, self.links) {
            (Backend::Local, _) => return None,
            (Backend::S3, Links::Public) => self.public_base_url.as_deref()?,
            (Backend::S3, Links::Presigned) if self.endpoint.is_empty() => return None,
            (Backend::S3, Links::Presigned) => &self.endpoint,
        };
        let url = url::Url::parse(base).ok()?;
        Some(url.origin().ascii_serialization())
    }

    fn validate_prefix(&self) -> Result<(), String> {
        let prefix = &self.prefix;
        if prefix.is_empty() {
            return Ok(());
        }
        if prefix.len() > MAX_PREFIX_LEN || super::parse_key(prefix).is_err() {
            return Err(format!(
                "storage.prefix must be at most {MAX_PREFIX_LEN} bytes of '/'-separated \
                 segments of letters, digits, '-', '_' and '.', without a leading or trailing \
                 '/', got {prefix:?}"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3() -> StorageConfig {
        StorageConfig {
            backend: Backend::S3,
            bucket: "results".to_owned(),
            ..StorageConfig::default()
        }
    }

    #[test]
    fn the_defaults_and_a_plain_s3_setup_are_valid() {
        StorageConfig::default().validate(3600).unwrap();
        s3().validate(3600).unwrap();
    }

    #[test]
    fn each_bad_setting_is_refused_by_name() {
        type Spoil = fn(&mut StorageConfig);
        let cases: [(&str, Spoil); 9] = [
            ("storage.bucket", |c| c.bucket = "No_Such".to_owned()),
            ("storage.bucket", |c| c.bucket = String::new()),
            ("storage.endpoint", |c| c.endpoint = "ftp://x".to_owned()),
            ("storage.prefix", |c| c.prefix = "/lead".to_owned()),
            ("storage.prefix", |c| c.prefix = "a//b".to_owned()),
            ("storage.access_key_id", |c| {
                c.access_key_id = Some("AKIA".into())
            }),
            ("storage.public_base_url", |c| c.links = Links::Public),
            ("storage.part_size_bytes", |c| c.part_size_bytes = 1024),
            ("storage.request_timeout_secs", |c| {
                c.request_timeout_secs = 0
            }),
        ];
        for (key, spoil) in cases {
            let mut config = s3();
            spoil(&mut config);
            let error = config.validate(3600).unwrap_err();
            assert!(error.contains(key), "{key}: {error}");
        }
    }

    #[test]
    fn presigned_links_live_at_most_seven_days() {
        s3().validate(MAX_PRESIGNED_SECS).unwrap();
        let error = s3().validate(MAX_PRESIGNED_SECS + 1).unwrap_err();
        assert!(error.contains("workflow.url_ttl_secs"), "{error}");
        // Public links do not expire, and local ones are ours: no such cap.
        let public = StorageConfig {
            links: Links::Public,
            public_base_url: Some("https://cdn.example.com".to_owned()),
            ..s3()
        };
        public.validate(MAX_PRESIGNED_SECS + 1).unwrap();
        StorageConfig::default()
            .validate(MAX_PRESIGNED_SECS + 1)
            .unwrap();
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let config = StorageConfig {
            access_key_id: Some("AKIAEXAMPLEKEYID".into()),
            secret_access_key: Some("wJalrXUtnFEMI-example-secret".into()),
            ..s3()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("AKIAEXAMPLEKEYID"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
    }
}
