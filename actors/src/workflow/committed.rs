//! What a workflow batch did, told to the metrics only once its transaction committed: a
//! batch rolled back (a failure, a stall past its deadline, a panic) counts nothing, and its
//! commands retried one by one count once, when they commit.
use std::time::Duration;

use atelier_entities::workflow::{self, WorkflowState};
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::read;
use crate::ledger::Outcome;
use crate::metrics;

/// One committed move (a creation has no `from`).
struct Moved {
    from: Option<WorkflowState>,
    to: WorkflowState,
    provider: String,
    error_code: Option<String>,
}

#[derive(Default)]
pub(super) struct Committed {
    moves: Vec<Moved>,
    /// Settled workflows, with their provider: their webhook→settled time is measured.
    settled: Vec<(Uuid, String)>,
    pub(super) ledger: Vec<Outcome>,
}

impl Committed {
    pub(super) fn moved(&mut self, from: Option<WorkflowState>, to: &workflow::Model) {
        self.moves.push(Moved {
            from,
            to: to.state,
            provider: to.provider.clone(),
            error_code: to.error_code.clone(),
        });
        if to.state == WorkflowState::Settled {
            self.settled.push((to.id, to.provider.clone()));
        }
    }

    /// Counts what committed at `now`. The settled workflows' callbacks are read on a task of
    /// their own, so that the writer's next batch does not wait for that read.
    pub(super) fn record(self, db: &DatabaseConnection, now: DateTime<Utc>) {
        for moved in &self.moves {
            metrics::transition(
                moved.from,
                moved.to,
                &moved.provider,
                moved.error_code.as_deref(),
            );
        }
        crate::ledger::outcome::count_committed(&self.ledger);
        if self.settled.is_empty() || !metrics::enabled() {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            let ids: Vec<Uuid> = self.settled.iter().map(|(id, _)| *id).collect();
            let received = match read::first_callbacks(&db, &ids).await {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "cannot read the settled generations' callbacks");
                    return;
                }
            };
            for (id, provider) in &self.settled {
                if let Some(at) = received.get(id) {
                    let took = (now - *at).to_std().unwrap_or(Duration::ZERO);
                    metrics::webhook_to_settled(provider, took);
                }
            }
        });
    }
}
