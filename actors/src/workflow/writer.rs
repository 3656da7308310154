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
use crate::batcher::{self, BatchError, BatchLimits, BatchStore, Batcher, WriterHealth};

/// Most workflow writes one transaction carries.
pub const DEFAULT_MAX_BATCH: usize = 256;

/// Fault injection for tests: called with each command of a batch; `true` makes that command
/// fail as a crash before its commit would: the commands before it in the batch commit on
/// their own (as if in an earlier transaction), the rest of the batch does not.
pub type BatchFault = Arc<dyn Fn(&WriteCommand) -> bool + Send + Sync>;

#[derive(Clone)]
pub struct WorkflowStore {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
    fault: Option<BatchFault>,
}

#[async_trait::async_trait]
impl BatchStore for WorkflowStore {
    type Command = WriteCommand;
    type Outcome = WriteOutcome;
    const NAME: &'static str = "workflow";

    async fn apply(&self, commands: &[WriteCommand]) -> Result<Vec<WriteOutcome>, DbErr> {
        let now = self.clock.now();
        if let Some(fault) = &self.fault
            && let Some(at) = commands.iter().position(|command| fault(command))
        {
            if at > 0 {
                batch::apply(&self.db, &commands[..at], now).await?;
            }
            return Err(DbErr::Custom(format!(
                "injected fault at {:?}",
                commands[at]
            )));
        }
        batch::apply(&self.db, commands, now).await
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
    health: Arc<WriterHealth>,
}

impl Workflows {
    pub fn start(db: DatabaseConnection, clock: Arc<dyn Clock>, max_batch: usize) -> Self {
        Self::start_with(db, clock, BatchLimits::new(max_batch), None)
    }

    pub fn start_with(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        limits: BatchLimits,
        fault: Option<BatchFault>,
    ) -> Self {
        let (actor, health) = Batcher::start(WorkflowStore { db, clock, fault }, limits);
        Self { actor, health }
    }

    /// Whether the workflow writer runs and is not stuck.
    pub fn health(&self) -> &WriterHealth {
        &self.health
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
        self.transition_consuming(id, expected_version, event, next_attempt_at, Vec::new())
            .await
    }

    /// As `transition`, marking the callbacks it acts on processed in the same transaction
    /// (when it applies).
    pub async fn transition_consuming(
        &self,
        id: Uuid,
        expected_version: Option<i64>,
        event: Event,
        next_attempt_at: Option<DateTime<Utc>>,
        consumes: Vec<i64>,
    ) -> Result<TransitionOutcome, BatchError> {
        let command = WriteCommand::Transition {
            id,
            expected_version,
            event,
            next_attempt_at,
            consumes,
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
