//! Records expired credits in the ledger. Reads never count expired credits as available, so
//! the sweep is bookkeeping, not a correctness requirement; it runs as one plain task.
use std::time::Duration;

use futures::future::join_all;

use super::handle::{Ledger, LedgerError};
use super::read;

/// Expires what is due on every account; returns the credits recorded as expired.
pub async fn sweep_once(ledger: &Ledger) -> Result<i64, LedgerError> {
    let now = ledger.now();
    let accounts = read::accounts_with_due_expiry(ledger.store().db(), now)
        .await
        .map_err(|error| LedgerError::Database(std::sync::Arc::new(error)))?;
    let outcomes = join_all(
        accounts
            .into_iter()
            .map(|account_id| ledger.expire_due(account_id)),
    )
    .await;
    let mut expired = 0;
    for outcome in outcomes {
        expired += outcome?.expired;
    }
    Ok(expired)
}

/// Runs `sweep_once` every `interval` on the current arbiter until the system stops.
pub fn spawn(ledger: Ledger, interval: Duration) {
    actix::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match sweep_once(&ledger).await {
                Ok(0) => {}
                Ok(expired) => tracing::info!(expired, "expired credits recorded"),
                Err(error) => tracing::warn!(%error, "expiry sweep failed; will retry"),
            }
        }
    });
}
