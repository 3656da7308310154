//! Our own object storage (`object_store`): input images and results live here under
//! deterministic keys, so a retried write lands on the same object. The local filesystem under
//! `ATELIER_DATA_DIR` by default.
use std::path::Path;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

pub use bytes::Bytes;

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

#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
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
    /// Objects as files below `dir`, which is created if missing.
    pub fn local(dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|source| StorageError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
        Ok(Self::new(Arc::new(store)))
    }

    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store }
    }

    /// Writes the whole object at once: readers see the old object or the new one, never part.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), StorageError> {
        self.store
            .put(&parse_key(key)?, PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// The object, or `None` when there is none under `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        match self.store.get(&parse_key(key)?).await {
            Ok(result) => Ok(Some(result.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StorageError> {
        match self.store.head(&parse_key(key)?).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(error) => Err(error.into()),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        match self.store.delete(&parse_key(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
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
