//! `Workflows`: the handle through which the API and the engine create and move workflows. A
//! `Batcher` puts concurrent writes into shared transactions (see `batch`).
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};
use uuid::Uuid;

use super::batch::{self, WriteCommand, WriteOutcome};
use super::machine::Event;
use super::store::{CreateOutcome, NewWorkflow, TransitionOutcome};
use crate::Clock;
use crate::batcher::{self, BatchError, BatchStore, Batcher};

/// Most workflow writes one transaction carries.
pub const DEFAULT_MAX_BATCH: usize = 256;

#[derive(Clone)]
pub struct WorkflowStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

#[async_trait::async_trait]
impl BatchStore for WorkflowStore {
    type Command = WriteCommand;
    type Outcome = WriteOutcome;
    const NAME: &'static str = "workflow";

    async fn apply(&self, commands: &[WriteCommand]) -> Result<Vec<WriteOutcome>, DbErr> {
        batch::apply(&self.db, commands, self.clock.now()).await
    }

    /// Two creates under one idempotency key go to separate batches, so that the second one
    /// finds the first one's key.
    fn fits(batch: &[WriteCommand], next: &WriteCommand) -> bool {
        match next.claimed_key() {
            None => true,
            Some(key) => !batch.iter().any(|queued| queued.claimed_key() == Some(key)),
        }
    }
}

#[derive(Clone)]
pub struct Workflows {
    actor: Addr<Batcher<WorkflowStore>>,
}

impl Workflows {
    pub fn start(db: DatabaseConnection, clock: Arc<dyn Clock>, max_batch: usize) -> Self {
        Self {
            actor: Batcher::start(WorkflowStore { db, clock }, max_batch),
        }
    }

    pub async fn create(&self, new: NewWorkflow) -> Result<CreateOutcome, BatchError> {
        match batcher::execute(&self.actor, WriteCommand::Create(new)).await? {
            WriteOutcome::Create(outcome) => Ok(outcome),
            other => unreachable!("create answered {other:?}"),
        }
    }

    pub async fn transition(
        &self,
        id: Uuid,
        expected_version: Option<i64>,
        event: Event,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<TransitionOutcome, BatchError> {
        let command = WriteCommand::Transition {
            id,
            expected_version,
            event,
            next_attempt_at,
        };
        match batcher::execute(&self.actor, command).await? {
            WriteOutcome::Transition(outcome) => Ok(outcome),
            other => unreachable!("transition answered {other:?}"),
        }
    }

    /// Records another attempt and when to look again; false when the row has moved on.
    pub async fn reschedule(
        &self,
        id: Uuid,
        expected_version: i64,
        attempt: i32,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<bool, BatchError> {
        let command = WriteCommand::Reschedule {
            id,
            expected_version,
            attempt,
            next_attempt_at,
        };
        match batcher::execute(&self.actor, command).await? {
            WriteOutcome::Rescheduled(done) => Ok(done),
            other => unreachable!("reschedule answered {other:?}"),
        }
    }

    pub async fn callbacks_processed(&self, inbox_ids: Vec<i64>) -> Result<(), BatchError> {
        let command = WriteCommand::CallbacksProcessed { inbox_ids };
        batcher::execute(&self.actor, command).await.map(drop)
    }
}
