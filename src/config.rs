//! Layered configuration: built-in defaults, then `atelier.toml` (or the file `ATELIER_CONFIG`
//! names), then environment variables. Every key is documented in `atelier.example.toml`.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use atelier_actors::cluster::ClusterConfig;
use atelier_actors::config_check::{
    MAX_BATCH, MAX_BODY_BYTES, MAX_SECS, MIN_BODY_BYTES, check_base_url, check_range,
};
use atelier_actors::engine::EngineConfig;
use atelier_actors::images::ImageLimits;
use atelier_actors::providers::config::ProviderConfig;
use atelier_actors::retention::RetentionConfig;
use atelier_actors::secret::SecretString;
use atelier_actors::storage::StorageConfig;
use atelier_actors::webhooks_out::WebhooksConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `ATELIER_BIND`
    pub bind: SocketAddr,
    /// `DATABASE_URL`: `sqlite://...` or `postgres://...`. It may hold a password.
    pub database_url: SecretString,
    /// `ATELIER_ADMIN_TOKEN`; generated and printed at start when absent.
    pub admin_token: Option<SecretString>,
    /// `ATELIER_OPS_READ_TOKEN`: a read-only operator token, which sees everything under
    /// `/v1/ops` and `/ops` and may change nothing. None when absent.
    pub ops_read_token: Option<SecretString>,
    /// `ATELIER_DATA_DIR`: local object storage.
    pub data_dir: PathBuf,
    /// `ATELIER_PUBLIC_URL`: base URL providers call back to; `http://` + bind when absent.
    pub public_url: Option<String>,
    /// `ATELIER_DEFAULT_PROVIDER`
    pub default_provider: String,
    /// `ATELIER_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// Secret for signed download URLs; when absent one is generated and kept in
    /// `data_dir/signing.key`, so that URLs stay valid across restarts.
    pub signing_secret: Option<SecretString>,
    pub http: HttpSettings,
    pub api_keys: ApiKeySettings,
    pub database: DatabaseSettings,
    pub ledger: LedgerSettings,
    /// `[workflow]`: owned by the engine, which documents and checks its keys.
    pub workflow: EngineConfig,
    /// `[storage]`: owned by `storage::config`, which documents and checks its keys.
    pub storage: StorageConfig,
    pub inputs: InputSettings,
    pub outbound: OutboundSettings,
    pub images: ImageSettings,
    /// Configured providers by name (a generation may only name one of these) and the
    /// failover chain.
    pub providers: ProvidersSettings,
    pub simulator: SimulatorSettings,
    /// `[webhooks]`: completion webhooks to customers, owned by `atelier_actors::webhooks_out`.
    pub webhooks: WebhooksConfig,
    /// `[cluster]`: how engine processes on one PostgreSQL database share the shards, owned
    /// by `atelier_actors::cluster`; the same in every process of a deployment.
    pub cluster: ClusterConfig,
    /// `[retention]`: how long ended generations' events, callbacks, keys and results are
    /// kept, owned by `atelier_actors::retention`.
    pub retention: RetentionConfig,
    /// `[ops]`: the operators' dashboard.
    pub ops: OpsSettings,
}

/// The operators' dashboard at `/ops`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsSettings {
    /// How long a dashboard session lasts after signing in, in seconds (1 minute to 7 days).
    pub session_ttl_secs: u64,
}

/// The built-in simulator's behaviour, including the misbehaviour tests and demos ask for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatorSettings {
    /// Milliseconds between accepting a task and calling back.
    pub delay_ms: u64,
    /// Share of tasks that fail, 0.0 to 1.0.
    pub failure_rate: f64,
    /// Never call the webhook: the engine must poll.
    pub never_callback: bool,
    /// Deliver every callback twice.
    pub duplicate_callbacks: bool,
    /// Answer every submission with 429.
    pub rate_limited: bool,
    /// Refuse every submission as invalid (422): the provider rejects the task.
    pub reject_submissions: bool,
    /// Milliseconds before a result download starts sending: a slow provider CDN.
    pub result_delay_ms: u64,
    /// Serve result URLs that have already expired.
    pub expired_results: bool,
    /// Serve results far larger than Atelier accepts.
    pub oversized_results: bool,
    /// How long result URLs stay valid, in seconds.
    pub result_ttl_secs: i64,
    /// The key Atelier's simulator adapter sends and the simulator's task routes want; when
    /// absent, a random one is made at every start (both live in this process).
    pub api_key: Option<SecretString>,
    /// Most tasks the simulator holds; a submission past that gets 429.
    pub max_tasks: usize,
    /// Seconds after its submission a task (and its result) is forgotten.
    pub task_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSettings {
    /// An alias of `outbound.allowed_hosts` (both lists count).
    pub allowed_hosts: Vec<String>,
    /// Largest image the engine fetches from an input URL, in bytes.
    pub max_bytes: usize,
}

/// `[outbound]`: the policy for everything Atelier fetches (inputs, results), and the
/// timeouts of every call Atelier makes to other hosts (providers, downloads).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Hosts (names or IP addresses) that may be fetched even when they are not public, and
    /// that image URLs may name with `http://`. A provider's own `base_url` host is allowed
    /// for its results without being listed.
    pub allowed_hosts: Vec<String>,
    /// Seconds to establish a connection.
    pub connect_timeout_secs: u64,
    /// Seconds a connection may stay silent while we wait for an answer.
    pub read_timeout_secs: u64,
    /// Seconds one request to a provider may take in all.
    pub request_timeout_secs: u64,
}

/// `[images]`: the largest image accepted anywhere, and how many are worked on at once.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSettings {
    /// Widest and tallest image accepted, in pixels, judged from its header.
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes one decode may allocate.
    pub max_alloc_bytes: u64,
    /// Images decoded or encoded at once (the simulator's compositing); 0: one per core.
    pub workers: usize,
}

impl ImageSettings {
    pub fn limits(&self) -> ImageLimits {
        ImageLimits {
            max_width: self.max_width,
            max_height: self.max_height,
            max_alloc_bytes: self.max_alloc_bytes,
        }
    }
}

/// `[providers]`: one table per provider a generation may use, and the failover chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProvidersSettings {
    /// Providers in failover order: a task no provider has accepted yet moves from one to the
    /// next when a provider fails, throttles or has its circuit open. Empty: no failover.
    #[serde(default)]
    pub chain: Vec<String>,
    #[serde(flatten)]
    pub by_name: BTreeMap<String, ProviderConfig>,
}

impl std::ops::Deref for ProvidersSettings {
    type Target = BTreeMap<String, ProviderConfig>;

    fn deref(&self) -> &Self::Target {
        &self.by_name
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Largest JSON body accepted, in bytes; larger ones get 413.
    pub json_limit_bytes: usize,
    /// Largest generation request (it may carry `data:` images), in bytes.
    pub generation_limit_bytes: usize,
    /// Largest image upload, in bytes.
    pub upload_limit_bytes: usize,
    /// Largest provider callback, in bytes: Cog inlines its result as a `data:` URI.
    pub callback_limit_bytes: usize,
    /// Most status streams (SSE) open at once in this process; more get 503.
    pub max_streams: usize,
    /// Seconds between keep-alive comments on an idle status stream: also how soon a stream
    /// whose client went away is noticed and its slot freed (within about twice this).
    pub stream_keep_alive_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// How long an account's other keys keep working after it rotates its key, in seconds
    /// (0 to 30 days; 0 revokes them at once).
    pub rotation_grace_secs: u64,
}

/// How long the database may make us wait (see `atelier_actors::db::DbTimeouts`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// PostgreSQL `statement_timeout`, in milliseconds.
    pub statement_timeout_ms: u64,
    /// PostgreSQL `lock_timeout`, in milliseconds.
    pub lock_timeout_ms: u64,
    /// SQLite busy timeout (waiting for another process's write lock), in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// Longest one batch of writes may take before it is rolled back and its callers retry,
    /// in milliseconds.
    pub batch_deadline_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerSettings {
    /// Most commands one ledger transaction carries.
    pub max_batch: usize,
    /// How often expired credits are recorded in the ledger, in seconds. Reads never count
    /// expired credits as available in between.
    pub expiry_sweep_interval_secs: u64,
}

impl Default for SimulatorSettings {
    fn default() -> Self {
        Self {
            delay_ms: 500,
            failure_rate: 0.0,
            never_callback: false,
            duplicate_callbacks: false,
            rate_limited: false,
            reject_submissions: false,
            result_delay_ms: 0,
            expired_results: false,
            oversized_results: false,
            result_ttl_secs: 600,
            api_key: None,
            max_tasks: 10_000,
            task_ttl_secs: 3600,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://atelier.sqlite?mode=rwc".into(),
            admin_token: None,
            ops_read_token: None,
            data_dir: PathBuf::from("./data"),
            public_url: None,
            default_provider: "simulator".into(),
            log_format: LogFormat::Text,
            signing_secret: None,
            http: HttpSettings {
                workers: 0,
                json_limit_bytes: 64 * 1024,
                generation_limit_bytes: 25 * 1024 * 1024,
                upload_limit_bytes: 20 * 1024 * 1024,
                callback_limit_bytes: 16 * 1024 * 1024,
                max_streams: 10_000,
                stream_keep_alive_secs: 15,
            },
            api_keys: ApiKeySettings {
                rotation_grace_secs: 24 * 3600,
            },
            database: DatabaseSettings {
                statement_timeout_ms: 30_000,
                lock_timeout_ms: 5_000,
                sqlite_busy_timeout_ms: 10_000,
                batch_deadline_ms: 15_000,
            },
            ledger: LedgerSettings {
                max_batch: atelier_actors::ledger::DEFAULT_MAX_BATCH,
                expiry_sweep_interval_secs: 60,
            },
            workflow: EngineConfig::default(),
            storage: StorageConfig::default(),
            inputs: InputSettings {
                allowed_hosts: Vec::new(),
                max_bytes: 20 * 1024 * 1024,
            },
            outbound: OutboundSettings {
                allowed_hosts: Vec::new(),
                connect_timeout_secs: 5,
                read_timeout_secs: 30,
                request_timeout_secs: 60,
            },
            images: {
                let limits = ImageLimits::default();
                ImageSettings {
                    max_width: limits.max_width,
                    max_height: limits.max_height,
                    max_alloc_bytes: limits.max_alloc_bytes,
                    workers: 0,
                }
            },
            providers: ProvidersSettings {
                chain: Vec::new(),
                by_name: BTreeMap::from([("simulator".to_owned(), ProviderConfig::costing(1))]),
            },
            simulator: SimulatorSettings::default(),
            webhooks: WebhooksConfig::default(),
            cluster: ClusterConfig::default(),
            retention: RetentionConfig::default(),
            ops: OpsSettings {
                session_ttl_secs: 8 * 3600,
            },
        }
    }
}

/// Top-level keys an `ATELIER_*` variable may set. Other `ATELIER_*` variables (the test
/// harness's, `ATELIER_CONFIG` itself) are not configuration and are left alone.
const ENV_KEYS: &[&str] = &[
    "bind",
    "admin_token",
    "ops_read_token",
    "data_dir",
    "public_url",
    "default_provider",
    "log_format",
    "signing_secret",
    "http",
    "storage",
    "api_keys",
    "database",
    "ledger",
    "workflow",
    "inputs",
    "outbound",
    "images",
    "providers",
    "simulator",
    "webhooks",
    "cluster",
    "retention",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid configuration: ATELIER_CONFIG names {0}, which does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Settings {
    /// Defaults → `atelier.toml` (or `ATELIER_CONFIG`) → environment.
    pub fn load() -> Result<Self, ConfigError> {
        let file = match std::env::var_os("ATELIER_CONFIG") {
            Some(path) => {
                let path = PathBuf::from(path);
                if !path.exists() {
                    return Err(ConfigError::MissingFile(path));
                }
                path
            }
            None => PathBuf::from("atelier.toml"),
        };
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file(file))
            .merge(Env::prefixed("ATELIER_").split("__").filter(|key| {
                let top = key.as_str().split('.').next().unwrap_or_default();
                ENV_KEYS.iter().any(|known| known.eq_ignore_ascii_case(top))
            }))
            .merge(Env::raw().only(&["DATABASE_URL"]));
        let settings: Settings = figment
            .extract()
            .map_err(|error| ConfigError::Invalid(error.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.check().map_err(ConfigError::Invalid)
    }

    fn check(&self) -> Result<(), String> {
        let url = self.database_url.expose();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(format!(
                "DATABASE_URL must start with sqlite:, postgres:// or postgresql://, got {url:?}"
            ));
        }
        check_len("ATELIER_ADMIN_TOKEN", self.admin_token.as_deref(), 16)?;
        check_len("ATELIER_OPS_READ_TOKEN", self.ops_read_token.as_deref(), 16)?;
        if self.ops_read_token.is_some() && self.ops_read_token == self.admin_token {
            return Err("ATELIER_OPS_READ_TOKEN must differ from ATELIER_ADMIN_TOKEN".into());
        }
        check_len("signing_secret", self.signing_secret.as_deref(), 32)?;
        if let Some(public_url) = &self.public_url {
            check_base_url("public_url", public_url)?;
        }
        if !self.providers.contains_key(&self.default_provider) {
            return Err(format!(
                "default_provider {:?} is not among the configured providers",
                self.default_provider
            ));
        }
        if let Some(name) = self.providers.chain.iter().find(|name| {
            name.as_str() == "chain" || !self.providers.by_name.contains_key(name.as_str())
        }) {
            return Err(format!(
                "providers.chain names {name:?}, which is not a configured provider"
            ));
        }
        for (name, provider) in self.providers.iter() {
            provider.validate(name)?;
        }
        self.http.check()?;
        check_range(
            "ops.session_ttl_secs",
            self.ops.session_ttl_secs,
            60,
            7 * 24 * 3600,
        )?;
        check_range(
            "api_keys.rotation_grace_secs",
            self.api_keys.rotation_grace_secs,
            0,
            MAX_SECS,
        )?;
        self.workflow.validate()?;
        self.storage.validate(self.workflow.url_ttl_secs)?;
        self.webhooks.validate()?;
        self.cluster.validate()?;
        self.retention.validate()?;
        check_range(
            "inputs.max_bytes",
            self.inputs.max_bytes,
            MIN_BODY_BYTES,
            MAX_BODY_BYTES,
        )?;
        self.simulator.check()?;
        self.database.check()?;
        self.outbound.check()?;
        self.images.check()?;
        check_range("ledger.max_batch", self.ledger.max_batch, 1, MAX_BATCH)?;
        check_range(
            "ledger.expiry_sweep_interval_secs",
            self.ledger.expiry_sweep_interval_secs,
            1,
            MAX_SECS,
        )
    }

    /// The database timeouts, for `db::connect_with`.
    pub fn db_timeouts(&self) -> atelier_actors::db::DbTimeouts {
        use std::time::Duration;
        atelier_actors::db::DbTimeouts {
            statement: Duration::from_millis(self.database.statement_timeout_ms),
            lock: Duration::from_millis(self.database.lock_timeout_ms),
            sqlite_busy: Duration::from_millis(self.database.sqlite_busy_timeout_ms),
        }
    }

    /// The hosts exempt from the outgoing-fetch policy: `outbound.allowed_hosts` and its
    /// alias `inputs.allowed_hosts`.
    pub fn allowed_hosts(&self) -> Vec<String> {
        let mut hosts = self.outbound.allowed_hosts.clone();
        for host in &self.inputs.allowed_hosts {
            if !hosts.iter().any(|known| known.eq_ignore_ascii_case(host)) {
                hosts.push(host.clone());
            }
        }
        hosts
    }

    /// The base URL providers call back to, without a trailing slash (so that paths appended
    /// to it have one slash).
    pub fn public_url(&self) -> String {
        self.public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_owned())
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }
}

/// Longest a simulator delay may be, in milliseconds (an hour).
const MAX_DELAY_MS: u64 = 3600 * 1000;
const MAX_WORKERS: usize = 1024;
/// Most status streams a process may be set to hold open (each holds a socket).
const MAX_STREAMS: usize = 100_000;
/// Longest secret accepted, in characters: a bound, not a policy.
const MAX_SECRET_LEN: usize = 1024;

impl HttpSettings {
    fn check(&self) -> Result<(), String> {
        check_range("http.workers", self.workers, 0, MAX_WORKERS)?;
        check_range("http.max_streams", self.max_streams, 1, MAX_STREAMS)?;
        check_range(
            "http.stream_keep_alive_secs",
            self.stream_keep_alive_secs,
            1,
            300,
        )?;
        for (key, value) in [
            ("http.json_limit_bytes", self.json_limit_bytes),
            ("http.generation_limit_bytes", self.generation_limit_bytes),
            ("http.upload_limit_bytes", self.upload_limit_bytes),
            ("http.callback_limit_bytes", self.callback_limit_bytes),
        ] {
            check_range(key, value, MIN_BODY_BYTES, MAX_BODY_BYTES)?;
        }
        Ok(())
    }
}

impl SimulatorSettings {
    fn check(&self) -> Result<(), String> {
        check_len("simulator.api_key", self.api_key.as_deref(), 16)?;
        check_range("simulator.max_tasks", self.max_tasks, 1, 1_000_000)?;
        check_range("simulator.task_ttl_secs", self.task_ttl_secs, 1, MAX_SECS)?;
        check_range("simulator.delay_ms", self.delay_ms, 0, MAX_DELAY_MS)?;
        check_range(
            "simulator.result_delay_ms",
            self.result_delay_ms,
            0,
            MAX_DELAY_MS,
        )?;
        check_range(
            "simulator.result_ttl_secs",
            self.result_ttl_secs,
            1,
            MAX_SECS as i64,
        )?;
        if !(0.0..=1.0).contains(&self.failure_rate) {
            return Err(format!(
                "simulator.failure_rate must be between 0.0 and 1.0, got {}",
                self.failure_rate
            ));
        }
        Ok(())
    }
}

impl DatabaseSettings {
    /// Each database wait between 1 ms and an hour: none may wedge the service.
    fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("database.statement_timeout_ms", self.statement_timeout_ms),
            ("database.lock_timeout_ms", self.lock_timeout_ms),
            (
                "database.sqlite_busy_timeout_ms",
                self.sqlite_busy_timeout_ms,
            ),
            ("database.batch_deadline_ms", self.batch_deadline_ms),
        ] {
            check_range(key, value, 1, MAX_DELAY_MS)?;
        }
        Ok(())
    }
}

impl OutboundSettings {
    /// Each outgoing call's timeout between 1 s and a day.
    fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("outbound.connect_timeout_secs", self.connect_timeout_secs),
            ("outbound.read_timeout_secs", self.read_timeout_secs),
            ("outbound.request_timeout_secs", self.request_timeout_secs),
        ] {
            check_range(key, value, 1, 86_400)?;
        }
        Ok(())
    }
}

impl ImageSettings {
    fn check(&self) -> Result<(), String> {
        check_range("images.max_width", self.max_width, 1, 1 << 16)?;
        check_range("images.max_height", self.max_height, 1, 1 << 16)?;
        check_range("images.max_alloc_bytes", self.max_alloc_bytes, 1, 1 << 36)?;
        check_range("images.workers", self.workers, 0, MAX_WORKERS)
    }
}

/// A secret, when set, of `min` to `MAX_SECRET_LEN` characters.
fn check_len(key: &str, secret: Option<&str>, min: usize) -> Result<(), String> {
    match secret.map(|secret| secret.chars().count()) {
        Some(len) if len < min || len > MAX_SECRET_LEN => Err(format!(
            "{key} must be {min} to {MAX_SECRET_LEN} characters"
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The `toml` blocks of the README's provider sections, one per real provider.
    pub(crate) fn readme_provider_examples() -> Vec<String> {
        readme_examples("## Providers")
    }

    /// The `toml` blocks of the README's section headed `heading`.
    fn readme_examples(heading: &str) -> Vec<String> {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = &readme[readme.find(heading).unwrap()..];
        let section = &section[..section.find("\n## ").unwrap()];
        section
            .split("```toml\n")
            .skip(1)
            .map(|rest| rest[..rest.find("```").unwrap()].to_owned())
            .collect()
    }

    /// Every `toml` block in the README's provider sections is a working configuration.
    #[test]
    fn the_readme_provider_examples_are_valid() {
        let blocks = readme_provider_examples();
        assert_eq!(blocks.len(), 5, "one per real provider");
        for block in blocks {
            let settings = from_toml(&block).unwrap_or_else(|error| panic!("{error}\n{block}"));
            assert_ne!(settings.default_provider, "simulator");
        }
    }

    /// The README's R2 example is a valid S3 configuration, and R2's the way R2 wants it.
    #[test]
    fn the_readme_r2_example_is_valid() {
        let blocks = readme_examples("## Storage");
        assert_eq!(blocks.len(), 1, "the R2 example");
        let settings = from_toml(&blocks[0]).unwrap_or_else(|error| panic!("{error}"));
        let storage = &settings.storage;
        assert_eq!(
            storage.backend,
            atelier_actors::storage::config::Backend::S3
        );
        assert_eq!(storage.region, "auto");
        assert!(storage.endpoint.ends_with(".r2.cloudflarestorage.com"));
        atelier_actors::storage::Storage::open(storage, std::path::Path::new("unused")).unwrap();
    }

    /// Making EvoLink the default is the one line `default_provider = "evolink"` beside its
    /// table: without that line the README's EvoLink example is the same configuration on the
    /// simulator, and no `adapter` key is needed (the table's name picks the adapter).
    #[test]
    fn default_provider_evolink_is_one_line() {
        let block = readme_provider_examples()
            .into_iter()
            .find(|block| block.contains("[providers.evolink]"))
            .expect("the README has an EvoLink example");
        let line = "default_provider = \"evolink\"";
        let lines: Vec<&str> = block
            .lines()
            .filter(|text| text.starts_with("default_provider"))
            .collect();
        assert_eq!(lines, [line]);
        let with = from_toml(&block).unwrap();
        let without = from_toml(&block.replace(line, "")).unwrap();
        assert_eq!(with.default_provider, "evolink");
        assert_eq!(without.default_provider, "simulator");
        assert_eq!(with.providers, without.providers);
        let evolink = &with.providers["evolink"];
        assert_eq!(
            (evolink.adapter_name("evolink"), &evolink.base_url),
            ("evolink", &None)
        );
    }

    /// The settings the defaults and `toml` make, or the validation's message.
    pub(crate) fn from_toml(toml: &str) -> Result<Settings, String> {
        let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::string(toml))
            .extract()
            .map_err(|error| error.to_string())?;
        settings.validate().map_err(|error| error.to_string())?;
        Ok(settings)
    }

    /// Settings that would panic a handler, kill an actor, refuse every request or build
    /// broken URLs are refused at start, naming the key.
    #[test]
    fn out_of_bounds_settings_are_refused_naming_the_key() {
        for toml in OUT_OF_BOUNDS {
            // The message names the key as it was set; the admin token as its variable.
            let key = match toml.split(" = ").next().unwrap() {
                "admin_token" => "ATELIER_ADMIN_TOKEN",
                key => key,
            };
            let error = from_toml(toml)
                .err()
                .unwrap_or_else(|| panic!("accepted: {toml}"));
            assert!(error.starts_with("invalid configuration: "), "{error}");
            assert!(error.contains(key), "{toml}: {error}");
        }
    }

    /// One setting out of its bounds per line.
    const OUT_OF_BOUNDS: &[&str] = &[
        "workflow.url_ttl_secs = 100000000000000",
        "workflow.overall_deadline_secs = 0",
        "workflow.download_timeout_secs = 9223372036854775807",
        "providers.simulator.breaker_cooldown_secs = 10000000000000",
        "providers.simulator.max_concurrency = 0",
        "providers.simulator.cost = 0",
        "providers.simulator.credits_per_second = -1.0",
        "providers.simulator.base_url = \"notaurl\"",
        "http.upload_limit_bytes = 0",
        "http.callback_limit_bytes = 0",
        "http.max_streams = 0",
        "ops.session_ttl_secs = 10",
        "http.stream_keep_alive_secs = 0",
        "http.generation_limit_bytes = 0",
        "http.json_limit_bytes = 100",
        "http.upload_limit_bytes = 100000000000",
        "http.workers = 100000",
        "api_keys.rotation_grace_secs = 2592001",
        "ledger.max_batch = 0",
        "ledger.expiry_sweep_interval_secs = 100000000000000",
        "simulator.failure_rate = 2.0",
        "simulator.delay_ms = 100000000000000",
        "simulator.result_ttl_secs = -5",
        "public_url = \"notaurl\"",
        "public_url = \"ftp://example.com\"",
        "admin_token = \"short\"",
        "signing_secret = \"short\"",
        "database.lock_timeout_ms = 0",
        "database.batch_deadline_ms = 100000000000",
        "outbound.request_timeout_secs = 0",
        "outbound.connect_timeout_secs = 100000000000",
        "workflow.step_timeout_secs = 0",
        "images.max_width = 0",
        "inputs.max_bytes = 0",
        "inputs.max_bytes = 100000000000",
        "workflow.max_result_bytes = 0",
        "workflow.max_attempts = 0",
        "workflow.backoff_min_ms = 0",
        "workflow.backoff_max_ms = 100000000000",
        "workflow.tick_ms = 0",
        "workflow.max_batch = 0",
        "simulator.max_tasks = 0",
        "simulator.api_key = \"short\"",
    ];

    /// The `[workflow]` section is the engine's own `EngineConfig`: what the file says reaches
    /// it, the rest keeps its defaults.
    #[test]
    fn the_workflow_section_is_the_engines_configuration() {
        let settings = from_toml(
            "inputs.max_bytes = 4096\n[workflow]\nmax_attempts = 3\ntick_ms = 50\n\
             backoff_min_ms = 10\nbackoff_max_ms = 20\nmax_result_bytes = 2048\n",
        )
        .unwrap();
        assert_eq!(
            settings.workflow,
            EngineConfig {
                max_attempts: 3,
                tick_ms: 50,
                backoff_min_ms: 10,
                backoff_max_ms: 20,
                max_result_bytes: 2048,
                ..EngineConfig::default()
            }
        );
        assert_eq!(settings.inputs.max_bytes, 4096);
        let unknown = from_toml("workflow.max_attempt = 3").unwrap_err();
        assert!(unknown.contains("max_attempt"), "{unknown}");
    }

    #[test]
    fn a_public_url_with_a_trailing_slash_is_used_without_it() {
        let settings = from_toml("public_url = \"https://atelier.example.com/\"").unwrap();
        assert_eq!(settings.public_url(), "https://atelier.example.com");
    }

    /// A debug log of the settings shows no secret: not the admin token, the signing secret,
    /// the database password, a provider's API token or its webhook secrets.
    #[test]
    fn debug_output_holds_no_secret() {
        let mut settings = Settings {
            admin_token: Some("admin-secret-0123456789".into()),
            signing_secret: Some("signing-secret-0123456789-0123456789".into()),
            database_url: "postgres://atelier:db-password-123@db:5432/atelier".into(),
            ..Settings::default()
        };
        settings.simulator.api_key = Some("simulator-key-0123456789".into());
        let mut replicate = ProviderConfig::costing(2);
        replicate.api_token = Some("r8_api-token-123".into());
        replicate.webhook_secrets = vec!["whsec_webhook-secret-123".into()];
        settings
            .providers
            .by_name
            .insert("replicate".into(), replicate);
        let debug = format!("{settings:?} {settings:#?}");
        for secret in [
            "admin-secret",
            "signing-secret",
            "db-password",
            "api-token",
            "webhook-secret",
            "simulator-key",
        ] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(
            debug.contains("breaker_cooldown_secs"),
            "the rest is shown: {debug}"
        );
    }

    /// `atelier.example.toml` documents every key with its default: it must parse, and say
    /// exactly what the defaults are.
    #[test]
    fn the_example_file_lists_the_defaults() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/atelier.example.toml");
        // Nothing but the file: a key it lacked would fail to extract (the commented-out ones
        // are `Option`s and read as unset).
        let from_file: Settings = Figment::from(Toml::file(example))
            .extract()
            .expect("example parses");
        let as_json = |settings: &Settings| serde_json::to_value(settings).unwrap();
        assert_eq!(as_json(&from_file), as_json(&Settings::default()));
        let keys = |value: serde_json::Value| -> Vec<String> {
            value.as_object().unwrap().keys().cloned().collect()
        };
        let text = std::fs::read_to_string(example).unwrap();
        let defaults = as_json(&Settings::default());
        for key in keys(defaults.clone()) {
            assert!(
                text.contains(&key),
                "atelier.example.toml does not mention {key}"
            );
        }
        // Each section's keys as set (or commented out) in the file: `[workflow]` takes its
        // defaults for keys a file leaves out, so parsing alone would not notice one missing.
        // `[providers]` is a table of tables, checked by its own example.
        let set = |key: &str| {
            text.lines().any(|line| {
                let line = line.trim_start_matches("# ");
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.starts_with(" ="))
            })
        };
        for section in keys(defaults.clone()) {
            if let (false, serde_json::Value::Object(fields)) =
                (section == "providers", &defaults[&section])
            {
                for key in fields.keys() {
                    assert!(
                        set(key),
                        "atelier.example.toml does not set {section}.{key}"
                    );
                }
            }
        }
    }
}
