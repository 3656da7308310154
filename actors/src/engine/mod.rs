//! The engine: drives every live workflow through the state machine. The database is the
//! truth; actors are a cache of it.
//!
//! - `steps`: what to do in each state, as plain async functions over the database;
//! - `registry`: the `Engine` actor, which starts one `GenerationActor` per workflow that has
//!   work to do, routes wake-ups to it, notices actors that died (also by panic) and restarts
//!   them, and passivates workflows that only wait.
pub mod fetch;
pub mod registry;
pub mod steps;

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::Clock;
use crate::providers::Providers;
use crate::storage::Storage;

/// Signs a storage key into a URL a provider can fetch.
pub type UrlForKey = Arc<dyn Fn(&str) -> String + Send + Sync>;

/// Called at the start of every step with the workflow and its state: a seam for fault
/// injection in tests (a hook that panics proves the engine rebuilds dead actors).
pub type StepHook = Arc<dyn Fn(uuid::Uuid, crate::workflow::WorkflowState) + Send + Sync>;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// `ATELIER_PUBLIC_URL`: where providers reach our webhooks.
    pub public_url: String,
    pub submit_deadline: Duration,
    pub callback_deadline: Duration,
    /// Largest result we download.
    pub max_result_bytes: usize,
    /// Largest input image we fetch from a client's URL.
    pub max_input_bytes: usize,
    pub download_timeout: Duration,
    /// Longest a step may take (always cut at the workflow's next deadline too).
    pub step_timeout: Duration,
    /// The largest input image we accept (judged from its header).
    pub image_limits: crate::images::ImageLimits,
    /// How often the registry looks for due workflows.
    pub tick: Duration,
    /// Failover order (`providers.chain`); empty: no failover.
    pub chain: Vec<String>,
    /// What each provider costs, in credits: a failover only moves to providers the hold
    /// covers, and charges the new provider's price.
    pub prices: std::collections::HashMap<String, i64>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".into(),
            submit_deadline: Duration::from_secs(60),
            callback_deadline: Duration::from_secs(120),
            max_result_bytes: 50 * 1024 * 1024,
            max_input_bytes: 20 * 1024 * 1024,
            download_timeout: Duration::from_secs(60),
            step_timeout: Duration::from_secs(120),
            image_limits: crate::images::ImageLimits::default(),
            tick: Duration::from_millis(200),
            chain: Vec::new(),
            prices: std::collections::HashMap::new(),
        }
    }
}

/// What a step needs.
#[derive(Clone)]
pub struct Deps {
    pub db: DatabaseConnection,
    /// Creates and moves workflows, batching concurrent writes.
    pub workflows: crate::workflow::Workflows,
    pub storage: Storage,
    pub providers: Providers,
    pub clock: Arc<dyn Clock>,
    /// Everything fetched from a URL goes through these (`crate::outbound`).
    pub fetch: FetchClients,
    pub url_for_key: UrlForKey,
    pub config: EngineConfig,
    pub step_hook: Option<StepHook>,
    /// Set when the process stops: each actor finishes the step it is in and takes no other.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
}

/// The fetch policy's clients: inputs may reach the hosts the operator allows; results also
/// the providers' own configured hosts (a self-hosted Cog on a private network).
#[derive(Clone)]
pub struct FetchClients {
    pub inputs: crate::outbound::Fetcher,
    pub results: crate::outbound::Fetcher,
}
