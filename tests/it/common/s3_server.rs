//! A real S3 server for the storage tests: `s3s-fs` (which checks SigV4 signatures and
//! presigned URLs) on a free loopback port, over a scratch directory, with one bucket. The
//! binary is `ATELIER_TEST_S3S_FS` (`.ci/run` installs it and sets that).
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atelier_actors::storage::StorageConfig;
use atelier_actors::storage::config::{Backend, Links};

use super::{KillOnDrop, free_port, service_var};

pub const S3S_FS_VAR: &str = "ATELIER_TEST_S3S_FS";
pub const BUCKET: &str = "atelier-test";
const ACCESS_KEY: &str = "AKIATESTATELIER";
const SECRET_KEY: &str = "test-secret-key-for-s3s-fs-only";

pub struct S3Server {
    binary: String,
    pub port: u16,
    pub root: PathBuf,
    process: Arc<Mutex<Option<KillOnDrop>>>,
}

impl S3Server {
    /// A running server with an empty bucket; `None` (skipped) without `ATELIER_TEST_S3S_FS`,
    /// a failure when services are required.
    pub async fn start() -> Option<Self> {
        let binary = service_var(S3S_FS_VAR, "s3s-fs")?;
        let root = std::env::temp_dir().join(format!("atelier-s3-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        let server = Self {
            binary,
            port: free_port(),
            root,
            process: Arc::default(),
        };
        server.resume().await;
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `[storage]` for this server: path-style, presigned links.
    pub fn storage_config(&self) -> StorageConfig {
        StorageConfig {
            backend: Backend::S3,
            bucket: BUCKET.to_owned(),
            endpoint: self.endpoint(),
            region: "us-east-1".to_owned(),
            path_style: true,
            access_key_id: Some(ACCESS_KEY.into()),
            secret_access_key: Some(SECRET_KEY.into()),
            links: Links::Presigned,
            request_timeout_secs: 5,
            connect_timeout_secs: 1,
            ..StorageConfig::default()
        }
    }

    /// The same configuration as `ATELIER_STORAGE__*` variables, for the real binary.
    pub fn storage_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ATELIER_STORAGE__BACKEND", "s3".to_owned()),
            ("ATELIER_STORAGE__BUCKET", BUCKET.to_owned()),
            ("ATELIER_STORAGE__ENDPOINT", self.endpoint()),
            ("ATELIER_STORAGE__ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("ATELIER_STORAGE__SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ]
    }

    /// Where the object under the bucket key `key` lies on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// Kills the server: every request fails until `resume`.
    pub fn stop(&self) {
        self.process.lock().unwrap().take();
    }

    /// `stop`, as a function another thread (a step hook) may call.
    pub fn stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let process = self.process.clone();
        move || drop(process.lock().unwrap().take())
    }

    /// Starts it again on the same port and directory, and waits until it answers.
    pub async fn resume(&self) {
        let child = Command::new(&self.binary)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(&self.root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", self.binary));
        *self.process.lock().unwrap() = Some(KillOnDrop(child));
        let address = format!("127.0.0.1:{}", self.port);
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(&address).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("s3s-fs did not start listening on {address}");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
