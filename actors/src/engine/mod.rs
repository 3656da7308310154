//! The engine: drives every live workflow through the state machine. The database is the
//! truth; actors are a cache of it.
//!
//! - `config`: `EngineConfig`, the `[workflow]` section with its defaults and bounds;
//! - `steps`: what to do in each state, as plain async functions over the database;
//! - `registry`: the `Engine` actor, which starts one `GenerationActor` per workflow that has
//!   work to do, routes wake-ups to it, notices actors that died (also by panic) and restarts
//!   them, and passivates workflows that only wait.
pub mod config;
pub mod fetch;
pub mod registry;
pub mod steps;

use std::collections::HashMap;
use std::sync::Arc;

use sea_orm::DatabaseConnection;

pub use config::EngineConfig;

use crate::Clock;
use crate::cluster::{Claim, Ownership};
use crate::images::ImageLimits;
use crate::providers::Providers;
use crate::storage::Storage;

/// Called at the start of every step with the workflow and its state: a seam for fault
/// injection in tests (a hook that panics proves the engine rebuilds dead actors).
pub type StepHook = Arc<dyn Fn(uuid::Uuid, crate::workflow::WorkflowState) + Send + Sync>;

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
    /// The URLs providers fetch our inputs from (`storage::Links`).
    pub links: crate::storage::Links,
    /// `[workflow]`.
    pub config: EngineConfig,
    /// `ATELIER_PUBLIC_URL`: where providers reach our webhooks.
    pub public_url: String,
    /// Largest input image we fetch from a client's URL (`inputs.max_bytes`).
    pub max_input_bytes: usize,
    /// The largest input image we accept (judged from its header).
    pub image_limits: ImageLimits,
    /// Failover order (`providers.chain`); empty: no failover.
    pub chain: Vec<String>,
    /// What each provider costs, in credits: a failover only moves to providers the hold
    /// covers, and charges the new provider's price.
    pub prices: HashMap<String, i64>,
    /// Providers an operator paused: they take no new work.
    pub pauses: crate::providers::pauses::Pauses,
    pub step_hook: Option<StepHook>,
    /// Set when the process stops: each actor finishes the step it is in and takes no other.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// The shards this process holds: which workflows it may drive.
    pub ownership: Arc<Ownership>,
}

/// What one generation actor's steps see: the shared `Deps`, with the workflow writer fenced
/// by the actor's claim on the workflow's shard (`workflows` here shadows `Deps::workflows`,
/// so no step can write unfenced by mistake).
pub struct Turn {
    deps: Arc<Deps>,
    pub workflows: crate::workflow::Workflows,
    pub claim: Claim,
}

impl Turn {
    pub fn new(deps: Arc<Deps>, claim: Claim) -> Self {
        let workflows = deps.workflows.fenced(claim.fence());
        Self {
            deps,
            workflows,
            claim,
        }
    }
}

impl std::ops::Deref for Turn {
    type Target = Deps;

    fn deref(&self) -> &Deps {
        &self.deps
    }
}

/// The fetch policy's clients: inputs may reach the hosts the operator allows; results also
/// the providers' own configured hosts (a self-hosted Cog on a private network).
#[derive(Clone)]
pub struct FetchClients {
    pub inputs: crate::outbound::Fetcher,
    pub results: crate::outbound::Fetcher,
}
