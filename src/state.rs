//! What every request handler can reach.
use std::collections::BTreeMap;
use std::sync::Arc;

use actix::Addr;
use atelier_actors::Clock;
use atelier_actors::engine::registry::Engine;
use atelier_actors::ledger::Ledger;
use atelier_actors::outbound::Fetcher;
use atelier_actors::providers::Providers;
use atelier_actors::providers::actor::ProviderHandle;
use atelier_actors::providers::pauses::Pauses;
use atelier_actors::storage::{Links, Storage, StorageError};

use atelier_actors::webhooks_out::sender::SenderHandle;
use atelier_actors::workflow::Workflows;
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::signing::UrlSigner;

pub struct AppState {
    pub db: DatabaseConnection,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
    pub admin_token: String,
    pub storage: Storage,
    /// The URLs handed out for stored objects (`[storage]`).
    pub links: Links,
    /// Signs and checks our own `/v1/files` URLs.
    pub signer: UrlSigner,
    pub settings: Arc<Settings>,
    pub providers: Providers,
    /// The same providers' actors, for their health (`GET /v1/ops/providers`).
    pub provider_handles: BTreeMap<String, ProviderHandle>,
    /// The providers an operator paused, as this process knows them (shared with the engine).
    pub pauses: Pauses,
    /// The workflow engine; `None` where a process serves HTTP without running workflows.
    pub engine: Option<Addr<Engine>>,
    /// The shards the engine holds, and what keeps them (where the engine runs).
    pub shards: Option<crate::cluster::EngineShards>,
    pub workflows: Workflows,
    /// Wakes a workflow's owner in another process (PostgreSQL; a no-op on SQLite).
    pub wakeups: atelier_actors::cluster::wakeups::Wakeups,
    pub webhooks: Webhooks,
    /// The pruner (`[retention]`), where the engine runs; it stops when this is dropped.
    pub pruner: Option<atelier_actors::retention::PrunerHandle>,
    /// Tests stop bulk jobs midway through this (`Seams::bulk_page_hook`).
    pub bulk_hook: Option<PageHook>,
    /// Open status streams, bounded by `http.max_streams`.
    pub streams: crate::api::stream_slots::StreamSlots,
}

/// Completion webhooks: the outgoing-fetch policy for customers' endpoints (`[webhooks]`),
/// which registration checks a URL against, and the sender (where the engine runs), which
/// stops when this is dropped.
pub struct Webhooks {
    pub policy: Fetcher,
    pub sender: Option<SenderHandle>,
}

impl AppState {
    /// A URL that reads the object under `key`: signed or presigned for
    /// `workflow.url_ttl_secs`, or a public link (`[storage]`).
    pub async fn object_url(&self, key: &str) -> Result<String, StorageError> {
        self.links.url(key).await
    }
}

/// Called by a bulk job with the number of pages done after each page is saved; `false` stops
/// the runner there, as a process ending would (tests).
pub type PageHook = Arc<dyn Fn(u64) -> bool + Send + Sync>;
