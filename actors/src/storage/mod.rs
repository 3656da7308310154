//! Our own object storage (`object_store`): uploads, input images and results live here under
//! deterministic keys, so a retried write lands on the same object. The local filesystem under
//! `ATELIER_DATA_DIR` by default, or any S3 API (`[storage]`, `config.rs`); `links.rs` makes
//! the URLs that reach objects.
pub mod config;
pub mod links;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::signer::{Method, Signer};
use object_store::{
    Attribute, Attributes, ClientOptions, ObjectStore, ObjectStoreExt, PutMode,
    PutMultipartOptions, PutOptions, PutPayload, RetryConfig, WriteMultipart,
};

pub use bytes::Bytes;
pub use config::StorageConfig;
pub use links::Links;

use config::Backend;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage key {0:?}")]
    InvalidKey(String),
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("cannot prepare {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// What a conditional create found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// The object is ours, just written.
    New,
    /// An object was already under the key; it was left as it was.
    AlreadyThere,
}

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    /// The S3 client again, as the presigner; `None` on the local filesystem.
    s3: Option<Arc<AmazonS3>>,
    /// Prepended to every key (`storage.prefix`), with its trailing `/`.
    prefix: String,
    /// Object stores that keep a `Content-Type` (S3 does; the local filesystem cannot).
    typed: bool,
    multipart_threshold: usize,
    part_size: usize,
}

/// The kinds of image we accept as input and as a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
}

impl ImageKind {
    /// What the bytes are, judged by their content, never by a declared type.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        match image::guess_format(bytes).ok()? {
            image::ImageFormat::Png => Some(ImageKind::Png),
            image::ImageFormat::Jpeg => Some(ImageKind::Jpeg),
            image::ImageFormat::WebP => Some(ImageKind::Webp),
            _ => None,
        }
    }

    pub fn from_mime(mime: &str) -> Option<Self> {
        match mime {
            "image/png" => Some(ImageKind::Png),
            "image/jpeg" => Some(ImageKind::Jpeg),
            "image/webp" => Some(ImageKind::Webp),
            _ => None,
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Webp => "image/webp",
        }
    }
}

impl Storage {
    /// The store `[storage]` names: files below `data_dir`, or an S3 bucket.
    pub fn open(config: &StorageConfig, data_dir: &Path) -> Result<Self, StorageError> {
        match config.backend {
            Backend::Local => Self::local(data_dir),
            Backend::S3 => Self::s3(config),
        }
    }

    /// Objects as files below `dir`, which is created if missing.
    pub fn local(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
        let defaults = StorageConfig::default();
        Ok(Self {
            store: Arc::new(store),
            s3: None,
            prefix: String::new(),
            typed: false,
            multipart_threshold: defaults.multipart_threshold_bytes,
            part_size: defaults.part_size_bytes,
        })
    }

    /// A bucket on an S3 API. Credentials come from the configuration, else from the usual
    /// `AWS_*` variables. Requests are bounded in time and retried only briefly: an outage
    /// fails the step, whose own backoff (persisted) decides when to try again.
    pub fn s3(config: &StorageConfig) -> Result<Self, StorageError> {
        let request_timeout = Duration::from_secs(config.request_timeout_secs);
        let options = ClientOptions::new()
            .with_timeout(request_timeout)
            .with_connect_timeout(Duration::from_secs(config.connect_timeout_secs))
            .with_allow_http(config.endpoint.starts_with("http://"));
        let retry = RetryConfig {
            max_retries: 2,
            retry_timeout: request_timeout,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(options)
            .with_retry(retry);
        if !config.endpoint.is_empty() {
            builder = builder.with_endpoint(config.endpoint.trim_end_matches('/'));
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id.expose())
                .with_secret_access_key(secret.expose());
        }
        let s3 = Arc::new(builder.build()?);
        let prefix = match config.prefix.as_str() {
            "" => String::new(),
            prefix => format!("{prefix}/"),
        };
        Ok(Self {
            store: s3.clone(),
            s3: Some(s3),
            prefix,
            typed: true,
            multipart_threshold: config.multipart_threshold_bytes,
            part_size: config.part_size_bytes,
        })
    }

    /// Writes the whole object at once: readers see the old object or the new one, never part.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        let location = self.location(key)?;
        if bytes.len() > self.multipart_threshold {
            return self.put_in_parts(&location, bytes).await;
        }
        let options = PutOptions {
            attributes: self.attributes(&bytes),
            ..PutOptions::default()
        };
        self.store
            .put_opts(&location, PutPayload::from_bytes(bytes), options)
            .await?;
        Ok(())
    }

    /// Writes the object only if none is under `key` yet, so that a stale writer (a step
    /// retried elsewhere) cannot replace one. A single PUT is conditional at the store
    /// (`If-None-Match: *`); an object too large for one is checked first, then written in
    /// parts, since `object_store` completes multipart uploads unconditionally.
    pub async fn create(&self, key: &str, bytes: Bytes) -> Result<Created, StorageError> {
        let location = self.location(key)?;
        if bytes.len() > self.multipart_threshold {
            if self.exists(key).await? {
                return Ok(Created::AlreadyThere);
            }
            self.put_in_parts(&location, bytes).await?;
            return Ok(Created::New);
        }
        let options = PutOptions {
            mode: PutMode::Create,
            attributes: self.attributes(&bytes),
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from_bytes(bytes), options)
            .await
        {
            Ok(_) => Ok(Created::New),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::AlreadyThere),
            Err(error) => Err(error.into()),
        }
    }

    /// A multipart upload in parts of exactly `part_size` bytes but the last (R2 refuses
    /// unequal ones), aborted on failure so that no parts linger in the bucket.
    async fn put_in_parts(&self, location: &Key, bytes: Bytes) -> Result<(), StorageError> {
        let options = PutMultipartOptions {
            attributes: self.attributes(&bytes),
            ..PutMultipartOptions::default()
        };
        let upload = self.store.put_multipart_opts(location, options).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        writer.put(bytes);
        match writer.finish().await {
            Ok(_) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The object's `Content-Type`, judged by its bytes (we store images only), where the
    /// store keeps one.
    fn attributes(&self, bytes: &[u8]) -> Attributes {
        let mut attributes = Attributes::new();
        if self.typed {
            let mime = ImageKind::sniff(bytes).map_or("application/octet-stream", ImageKind::mime);
            attributes.insert(Attribute::ContentType, mime.into());
        }
        attributes
    }

    /// The object, or `None` when there is none under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&self.location(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Whether an object is under `key` (a HEAD request on S3).
    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&self.location(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&self.location(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// A presigned GET URL for the object, valid for `ttl`; `None` where the store cannot
    /// presign (the local filesystem: our own signed URLs serve it).
    pub async fn presigned_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<Option<String>, StorageError> {
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        let url = s3
            .signed_url(Method::GET, &self.location(key)?, ttl)
            .await?;
        Ok(Some(url.to_string()))
    }

    /// The object's path in the bucket: the prefix, then the key.
    pub fn full_key(&self, key: &str) -> Result<String, StorageError> {
        parse_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn location(&self, key: &str) -> Result<Key, StorageError> {
        parse_key(&self.full_key(key)?)
    }
}

/// Keys are `/`-separated segments of letters, digits, `-`, `_` and `.`, none empty or a dot
/// segment: what we generate, and all a signed URL can name.
fn parse_key(key: &str) -> Result<Key, StorageError> {
    let valid = !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !valid {
        return Err(StorageError::InvalidKey(key.to_owned()));
    }
    Key::parse(key).map_err(|_| StorageError::InvalidKey(key.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn objects_round_trip_and_keys_stay_inside_the_store() {
        let dir = std::env::temp_dir().join(format!("atelier-storage-{}", uuid::Uuid::new_v4()));
        let storage = Storage::local(&dir).unwrap();
        storage
            .put("results/abc", Bytes::from_static(b"png"))
            .await
            .unwrap();
        // A second create leaves the first object as it was.
        let created = storage.create("results/abc", Bytes::from_static(b"jpg"));
        assert_eq!(created.await.unwrap(), Created::AlreadyThere);
        assert_eq!(
            storage.get("results/abc").await.unwrap(),
            Some(Bytes::from_static(b"png"))
        );
        assert!(storage.exists("results/abc").await.unwrap());
        assert_eq!(storage.get("results/none").await.unwrap(), None);
        for bad in ["", "../etc/passwd", "a//b", "a/./b", "a b", "/abs"] {
            assert!(storage.get(bad).await.is_err(), "{bad:?} accepted");
        }
        storage.delete("results/abc").await.unwrap();
        assert!(!storage.exists("results/abc").await.unwrap());
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn images_are_judged_by_their_bytes() {
        assert_eq!(
            ImageKind::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(ImageKind::Png)
        );
        assert_eq!(
            ImageKind::sniff(b"\xff\xd8\xff\xe0...."),
            Some(ImageKind::Jpeg)
        );
        assert_eq!(
            ImageKind::sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageKind::Webp)
        );
        assert_eq!(ImageKind::sniff(b"GIF89a......"), None);
        assert_eq!(ImageKind::sniff(b"<html>"), None);
    }
}
