//! Workflow rows in the database: a single transition in its own transaction (through
//! `batch`), and reads. No transaction here waits on anything but
//! the database.
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::workflow_event;
use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::batch::{self, WriteCommand, WriteOutcome};
use super::machine::Event;
use crate::Credits;

/// Everything a new workflow is made of.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    pub id: Uuid,
    pub account_id: Uuid,
    pub provider: String,
    pub cost: Credits,
    pub inputs: String,
    pub callback_token: String,
    pub deadline_at: DateTime<Utc>,
    /// The client's `Idempotency-Key` and a hash of what it sent with it.
    pub idempotency: Option<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    Created(workflow::Model),
    /// The same idempotency key with the same request: the workflow it created.
    Replayed(workflow::Model),
    /// The same idempotency key with a different request.
    KeyConflict,
    InsufficientCredits {
        available: i64,
        requested: i64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionOutcome {
    Applied(workflow::Model),
    /// Not applied: the row is at another version than expected, or the event is no
    /// transition from its state (a duplicate or late message). The row as it is.
    Stale(workflow::Model),
    NotFound,
}

/// Applies `event` to the workflow if it is still at `expected_version` (any version when
/// `None`) and the event is a transition from its state, in its own transaction.
/// `next_attempt_at` is when the engine should look at it again (ignored for terminal states).
pub async fn transition(
    db: &DatabaseConnection,
    workflow_id: Uuid,
    expected_version: Option<i64>,
    event: &Event,
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<TransitionOutcome, DbErr> {
    let command = WriteCommand::Transition {
        id: workflow_id,
        expected_version,
        event: event.clone(),
        next_attempt_at,
        consumes: Vec::new(),
    };
    match batch::apply(db, &[command], now).await?.pop() {
        Some(WriteOutcome::Transition(outcome)) => Ok(outcome),
        other => Err(DbErr::Custom(format!("a transition answered {other:?}"))),
    }
}

/// A workflow the account owns.
pub async fn find_owned<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    workflow_id: Uuid,
) -> Result<Option<workflow::Model>, DbErr> {
    workflow::Entity::find_by_id(workflow_id)
        .filter(workflow::Column::AccountId.eq(account_id))
        .one(db)
        .await
}

/// One page of an account's workflows, newest first; ids are UUIDv7, so id order is creation
/// order. `before` is the last id of the previous page.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    state: Option<WorkflowState>,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<workflow::Model>, Option<Uuid>), DbErr> {
    let mut query = workflow::Entity::find()
        .filter(workflow::Column::AccountId.eq(account_id))
        .order_by_desc(workflow::Column::Id)
        .limit(limit + 1);
    if let Some(state) = state {
        query = query.filter(workflow::Column::State.eq(state));
    }
    if let Some(before) = before {
        query = query.filter(workflow::Column::Id.lt(before));
    }
    let mut rows = query.all(db).await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.id)
    } else {
        None
    };
    Ok((rows, next))
}

pub async fn events<C: ConnectionTrait>(
    db: &C,
    workflow_id: Uuid,
) -> Result<Vec<workflow_event::Model>, DbErr> {
    workflow_event::Entity::find()
        .filter(workflow_event::Column::WorkflowId.eq(workflow_id))
        .order_by_asc(workflow_event::Column::Id)
        .all(db)
        .await
}
