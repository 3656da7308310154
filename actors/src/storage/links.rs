//! The URLs we hand out for objects in our storage: `result_url` to clients, input URLs to
//! providers. One rule, chosen in `[storage]`: on the local filesystem our own signed
//! `/v1/files` URLs; on S3 presigned GET URLs, or links below `public_base_url`.
use std::sync::Arc;
use std::time::Duration;

use super::config::{Backend, Links as LinkKind, MAX_PRESIGNED_SECS, StorageConfig};
use super::{Storage, StorageError};

/// Signs a storage key into one of our own `/v1/files` URLs (the service holds the key).
pub type LocalSigner = Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Clone)]
pub struct Links {
    storage: Storage,
    how: How,
}

#[derive(Clone)]
enum How {
    Local(LocalSigner),
    Presigned(Duration),
    Public(String),
}

impl Links {
    /// `ttl`: how long a signed or presigned URL lives (`workflow.url_ttl_secs`; presigned
    /// URLs at most 7 days, which the configuration's check already enforces).
    pub fn new(
        storage: Storage,
        config: &StorageConfig,
        ttl: Duration,
        local: LocalSigner,
    ) -> Self {
        let how = match (config.backend, config.links, &config.public_base_url) {
            (Backend::Local, _, _) => How::Local(local),
            (Backend::S3, LinkKind::Public, Some(base)) => {
                How::Public(base.trim_end_matches('/').to_owned())
            }
            (Backend::S3, _, _) => How::Presigned(ttl.min(Duration::from_secs(MAX_PRESIGNED_SECS))),
        };
        Self { storage, how }
    }

    /// A URL that reads the object under `key`.
    pub async fn url(&self, key: &str) -> Result<String, StorageError> {
        match &self.how {
            How::Local(sign) => Ok(sign(key)),
            How::Public(base) => Ok(format!("{base}/{}", self.storage.full_key(key)?)),
            How::Presigned(ttl) => {
                let url = self.storage.presigned_get(key, *ttl).await?;
                // An S3 store always presigns; a local one never gets here.
                Ok(url.expect("an S3 store presigns"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_links_are_ours_and_public_ones_sit_below_the_base() {
        let dir = std::env::temp_dir().join(format!("atelier-links-{}", uuid::Uuid::new_v4()));
        let storage = Storage::local(&dir).unwrap();
        let local: LocalSigner = Arc::new(|key| format!("signed:{key}"));
        let links = Links::new(
            storage,
            &StorageConfig::default(),
            Duration::from_secs(60),
            local.clone(),
        );
        assert_eq!(links.url("results/a").await.unwrap(), "signed:results/a");

        let config = StorageConfig {
            backend: Backend::S3,
            bucket: "results".to_owned(),
            endpoint: "http://127.0.0.1:9".to_owned(),
            prefix: "prod/v1".to_owned(),
            access_key_id: Some("id".into()),
            secret_access_key: Some("secret".into()),
            links: LinkKind::Public,
            public_base_url: Some("https://cdn.example.com/".to_owned()),
            ..StorageConfig::default()
        };
        let s3 = Storage::s3(&config).unwrap();
        let links = Links::new(s3, &config, Duration::from_secs(60), local);
        assert_eq!(
            links.url("results/a").await.unwrap(),
            "https://cdn.example.com/prod/v1/results/a"
        );
        assert!(links.url("../etc").await.is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
