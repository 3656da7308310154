//! What every request handler can reach.
use std::sync::Arc;

use actix::Addr;
use atelier_actors::Clock;
use atelier_actors::clock::saturating_after;
use atelier_actors::engine::registry::Engine;
use atelier_actors::ledger::Ledger;
use atelier_actors::outbound::Fetcher;
use atelier_actors::providers::Providers;
use atelier_actors::storage::Storage;
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
    pub signer: UrlSigner,
    pub settings: Arc<Settings>,
    pub providers: Providers,
    /// The workflow engine; `None` where a process serves HTTP without running workflows.
    pub engine: Option<Addr<Engine>>,
    pub workflows: Workflows,
    pub webhooks: Webhooks,
}

/// Completion webhooks: the outgoing-fetch policy for customers' endpoints (`[webhooks]`),
/// which registration checks a URL against, and the sender (where the engine runs), which
/// stops when this is dropped.
pub struct Webhooks {
    pub policy: Fetcher,
    pub sender: Option<SenderHandle>,
}

impl AppState {
    /// A signed URL for the object under `key`, valid for `workflow.url_ttl_secs`.
    pub fn signed_url(&self, key: &str) -> String {
        let ttl = self.settings.workflow.url_ttl_secs;
        self.signer.url(
            &self.settings.public_url(),
            key,
            saturating_after(self.clock.now(), ttl),
        )
    }
}
