//! `Workflows`: the handle through which the API, the webhook ingress and the engine write
//! workflows, their timelines and their callbacks. A `Batcher` over `WorkflowStore` puts
//! concurrent writes into shared transactions (see `batch`).
use std::sync::Arc;

use actix::Addr;
use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use super::batch::{BatchFault, WorkflowStore};
use super::command::{NewCallback, NewWorkflow, WriteCommand};
use super::feed::Feed;
use super::machine::Event;
use super::outcome::{
    CallbackStored, CallbacksProcessed, CreateOutcome, Rescheduled, TransitionOutcome, WriteOutcome,
};
use crate::Clock;
use crate::batcher::{self, BatchError, BatchLimits, Batcher, WriterHealth, WrongOutcome};
use crate::cluster::Fence;

/// Most workflow writes one transaction carries.
pub const DEFAULT_MAX_BATCH: usize = 256;

#[derive(Clone)]
pub struct Workflows {
    actor: Addr<Batcher<WorkflowStore>>,
    health: Arc<WriterHealth>,
    feed: Arc<Feed>,
    /// Carried by this handle's transitions, reschedules and processed callbacks (the
    /// engine's handle for one workflow's actor); `None`: unfenced.
    fence: Option<Fence>,
}

impl Workflows {
    pub fn start_with(
        db: DatabaseConnection,
        clock: Arc<dyn Clock>,
        limits: BatchLimits,
        fault: Option<BatchFault>,
    ) -> Self {
        let feed = Feed::start(db.clone());
        let store = WorkflowStore::new(db, clock, fault, feed.clone());
        let (actor, health) = Batcher::start(store, limits);
        Self {
            actor,
            health,
            feed,
            fence: None,
        }
    }

    /// This handle, with every write that changes a workflow fenced by `fence`: refused
    /// (`BatchError::Fenced`) unless the lease still says so when it commits.
    pub fn fenced(&self, fence: Option<Fence>) -> Self {
        Self {
            fence,
            ..self.clone()
        }
    }

    /// The committed transitions, for live status streams.
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// Whether the workflow writer runs and is not stuck.
    pub fn health(&self) -> &WriterHealth {
        &self.health
    }

    pub async fn create(&self, new: NewWorkflow) -> Result<CreateOutcome, BatchError> {
        batcher::execute_as(&self.actor, WriteCommand::Create(new)).await
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
            fence: self.fence,
        };
        self.execute_fenced(command).await
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
            fence: self.fence,
        };
        let Rescheduled(done) = self.execute_fenced(command).await?;
        Ok(done)
    }

    /// Keeps a callback in the inbox; false when the same callback is already there.
    pub async fn store_callback(&self, callback: NewCallback) -> Result<bool, BatchError> {
        let command = WriteCommand::StoreCallback(callback);
        let CallbackStored(new) = batcher::execute_as(&self.actor, command).await?;
        Ok(new)
    }

    pub async fn callbacks_processed(&self, inbox_ids: Vec<i64>) -> Result<(), BatchError> {
        let command = WriteCommand::CallbacksProcessed {
            inbox_ids,
            fence: self.fence,
        };
        let CallbacksProcessed = self.execute_fenced(command).await?;
        Ok(())
    }

    /// A fenced command's outcome, its refusal as `BatchError::Fenced`.
    async fn execute_fenced<T>(&self, command: WriteCommand) -> Result<T, BatchError>
    where
        T: TryFrom<WriteOutcome, Error = WrongOutcome>,
    {
        match batcher::execute(&self.actor, command).await? {
            WriteOutcome::Fenced => {
                crate::metrics::fenced_write();
                Err(BatchError::Fenced)
            }
            outcome => Ok(T::try_from(outcome)?),
        }
    }
}
