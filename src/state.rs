//! What every request handler can reach.
use std::sync::Arc;

use atelier_actors::Clock;
use atelier_actors::ledger::Ledger;
use sea_orm::DatabaseConnection;

pub struct AppState {
    pub db: DatabaseConnection,
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
    pub admin_token: String,
}
