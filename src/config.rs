//! Layered configuration: built-in defaults, then `atelier.toml` (or the file `ATELIER_CONFIG`
//! names), then environment variables. Every key is documented in `atelier.example.toml`.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use atelier_actors::credits::MAX_CREDITS;
use atelier_actors::images::ImageLimits;
use atelier_actors::providers::config::ProviderConfig;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `ATELIER_BIND`
    pub bind: SocketAddr,
    /// `DATABASE_URL`: `sqlite://...` or `postgres://...`.
    pub database_url: String,
    /// `ATELIER_ADMIN_TOKEN`; generated and printed at start when absent.
    pub admin_token: Option<String>,
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
    pub signing_secret: Option<String>,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub ledger: LedgerSettings,
    pub workflow: WorkflowSettings,
    pub inputs: InputSettings,
    pub outbound: OutboundSettings,
    pub images: ImageSettings,
    /// Configured providers by name (a generation may only name one of these) and the
    /// failover chain.
    pub providers: ProvidersSettings,
    pub simulator: SimulatorSettings,
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
    pub api_key: Option<String>,
    /// Most tasks the simulator holds; a submission past that gets 429.
    pub max_tasks: usize,
    /// Seconds after its submission a task (and its result) is forgotten.
    pub task_ttl_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSettings {
    /// Past this many seconds after creation a generation is released with `timeout`.
    pub overall_deadline_secs: u64,
    /// Seconds a provider has to accept a task before the submission counts as failed.
    pub submit_deadline_secs: u64,
    /// Seconds to wait for a callback before asking the provider.
    pub callback_deadline_secs: u64,
    /// How long signed URLs for results and inputs stay valid, in seconds.
    pub url_ttl_secs: u64,
    /// Seconds a result download may take.
    pub download_timeout_secs: u64,
    /// Seconds one step of a workflow (a submission, a poll, an upload) may take; a step is
    /// also always cut at the workflow's next deadline.
    pub step_timeout_secs: u64,
    /// Whether this process drives workflows (off: it only serves the API).
    pub run_engine: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSettings {
    /// An alias of `outbound.allowed_hosts` (both lists count).
    pub allowed_hosts: Vec<String>,
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://atelier.sqlite?mode=rwc".into(),
            admin_token: None,
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
            },
            database: DatabaseSettings {
                statement_timeout_ms: 30_000,
                lock_timeout_ms: 5_000,
                sqlite_busy_timeout_ms: 10_000,
                batch_deadline_ms: 15_000,
            },
            ledger: LedgerSettings {
                max_batch: atelier_actors::ledger::actor::DEFAULT_MAX_BATCH,
                expiry_sweep_interval_secs: 60,
            },
            workflow: WorkflowSettings {
                overall_deadline_secs: 900,
                submit_deadline_secs: 60,
                callback_deadline_secs: 120,
                url_ttl_secs: 3600,
                download_timeout_secs: 60,
                step_timeout_secs: 120,
                run_engine: true,
            },
            inputs: InputSettings {
                allowed_hosts: Vec::new(),
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
            simulator: SimulatorSettings {
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
            },
        }
    }
}

/// Top-level keys an `ATELIER_*` variable may set. Other `ATELIER_*` variables (the test
/// harness's, `ATELIER_CONFIG` itself) are not configuration and are left alone.
const ENV_KEYS: &[&str] = &[
    "bind",
    "admin_token",
    "data_dir",
    "public_url",
    "default_provider",
    "log_format",
    "signing_secret",
    "http",
    "database",
    "ledger",
    "workflow",
    "inputs",
    "outbound",
    "images",
    "providers",
    "simulator",
];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
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
        let url = self.database_url.as_str();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "DATABASE_URL must start with sqlite:, postgres:// or postgresql://, got {url:?}"
            )));
        }
        if self
            .admin_token
            .as_deref()
            .is_some_and(|token| token.len() < 16)
        {
            return Err(ConfigError::Invalid(
                "ATELIER_ADMIN_TOKEN must be at least 16 characters".into(),
            ));
        }
        if self.ledger.max_batch == 0 || self.ledger.expiry_sweep_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "ledger.max_batch and ledger.expiry_sweep_interval_secs must be positive".into(),
            ));
        }
        if !self.providers.contains_key(&self.default_provider) {
            return Err(ConfigError::Invalid(format!(
                "default_provider {:?} is not among the configured providers",
                self.default_provider
            )));
        }
        if let Some((name, _)) = self
            .providers
            .iter()
            .find(|(_, provider)| provider.cost <= 0 || provider.cost > MAX_CREDITS)
        {
            return Err(ConfigError::Invalid(format!(
                "providers.{name}.cost must be between 1 and {MAX_CREDITS}"
            )));
        }
        if let Some(name) = self.providers.chain.iter().find(|name| {
            name.as_str() == "chain" || !self.providers.by_name.contains_key(name.as_str())
        }) {
            return Err(ConfigError::Invalid(format!(
                "providers.chain names {name:?}, which is not a configured provider"
            )));
        }
        if let Some((name, _)) = self.providers.iter().find(|(_, provider)| {
            provider.max_concurrency == 0
                || provider.breaker_threshold == 0
                || provider.requests_per_second == Some(0)
                || provider
                    .credits_per_second
                    .is_some_and(|rate| !rate.is_finite() || rate < 0.0)
        }) {
            return Err(ConfigError::Invalid(format!(
                "providers.{name}: max_concurrency, breaker_threshold and requests_per_second \
                 must be positive, credits_per_second not negative"
            )));
        }
        let workflow = &self.workflow;
        if [
            workflow.overall_deadline_secs,
            workflow.submit_deadline_secs,
            workflow.callback_deadline_secs,
            workflow.url_ttl_secs,
            workflow.download_timeout_secs,
            workflow.step_timeout_secs,
        ]
        .contains(&0)
        {
            return Err(ConfigError::Invalid(
                "workflow deadlines, url_ttl_secs, download_timeout_secs and step_timeout_secs \
                 must be positive"
                    .into(),
            ));
        }
        self.validate_timeouts()?;
        if self
            .signing_secret
            .as_deref()
            .is_some_and(|secret| secret.len() < 32)
        {
            return Err(ConfigError::Invalid(
                "signing_secret must be at least 32 characters".into(),
            ));
        }
        let simulator = &self.simulator;
        if simulator.max_tasks == 0 || simulator.task_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "simulator.max_tasks and simulator.task_ttl_secs must be positive".into(),
            ));
        }
        if simulator
            .api_key
            .as_deref()
            .is_some_and(|key| key.len() < 16)
        {
            return Err(ConfigError::Invalid(
                "simulator.api_key must be at least 16 characters".into(),
            ));
        }
        let images = &self.images;
        if images.max_width == 0 || images.max_height == 0 || images.max_alloc_bytes == 0 {
            return Err(ConfigError::Invalid(
                "images.max_width, max_height and max_alloc_bytes must be positive".into(),
            ));
        }
        if self.http.json_limit_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "http.json_limit_bytes must be at least 1024".into(),
            ));
        }
        Ok(())
    }

    /// Timeouts on the database and on outgoing calls: each positive and at most a day (an
    /// hour for the database's), so that none can wedge the service or overflow a clock.
    fn validate_timeouts(&self) -> Result<(), ConfigError> {
        const HOUR_MS: u64 = 3_600_000;
        const DAY_SECS: u64 = 86_400;
        let database = &self.database;
        let in_range = |value: u64, max: u64| (1..=max).contains(&value);
        if ![
            database.statement_timeout_ms,
            database.lock_timeout_ms,
            database.sqlite_busy_timeout_ms,
            database.batch_deadline_ms,
        ]
        .iter()
        .all(|value| in_range(*value, HOUR_MS))
        {
            return Err(ConfigError::Invalid(format!(
                "database timeouts must be between 1 and {HOUR_MS} ms"
            )));
        }
        let outbound = &self.outbound;
        if ![
            outbound.connect_timeout_secs,
            outbound.read_timeout_secs,
            outbound.request_timeout_secs,
            self.workflow.step_timeout_secs,
        ]
        .iter()
        .all(|value| in_range(*value, DAY_SECS))
        {
            return Err(ConfigError::Invalid(format!(
                "outbound timeouts and workflow.step_timeout_secs must be between 1 and {DAY_SECS} s"
            )));
        }
        Ok(())
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

    pub fn public_url(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", self.bind))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `toml` block in the README's provider sections is a working configuration.
    #[test]
    fn the_readme_provider_examples_are_valid() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
        let section = &readme[readme.find("## Providers").unwrap()..];
        let section = &section[..section.find("\n## ").unwrap()];
        let blocks: Vec<&str> = section
            .split("```toml\n")
            .skip(1)
            .map(|rest| &rest[..rest.find("```").unwrap()])
            .collect();
        assert_eq!(blocks.len(), 3, "one per real provider");
        for block in blocks {
            let settings: Settings = Figment::from(Serialized::defaults(Settings::default()))
                .merge(Toml::string(block))
                .extract()
                .unwrap_or_else(|error| panic!("{error}\n{block}"));
            settings
                .validate()
                .unwrap_or_else(|error| panic!("{error}\n{block}"));
            assert_ne!(settings.default_provider, "simulator");
        }
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
        for key in keys(as_json(&Settings::default())) {
            assert!(
                text.contains(&key),
                "atelier.example.toml does not mention {key}"
            );
        }
    }
}
