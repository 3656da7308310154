//! Workflow rows in the database. Every change is one transaction: creation writes the row,
//! its hold and its first event together; a transition is a compare-and-set on the version
//! read, appends its event and, for a terminal state, settles or releases the hold — all or
//! nothing. No transaction here waits on anything but the database.
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::{idempotency_key, workflow_event};
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::machine::{self, Event};
use crate::Credits;
use crate::db;
use crate::ledger::store::apply_in;
use crate::ledger::{Command, HoldOutcome, Outcome, ReleaseOutcome, SettleOutcome};

const IDEMPOTENCY_SCOPE: &str = "generation";

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

pub async fn create(
    db: &DatabaseConnection,
    new: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<CreateOutcome, DbErr> {
    db::with_retries("workflow creation", || create_once(db, new, now)).await
}

async fn create_once(
    db: &DatabaseConnection,
    new: &NewWorkflow,
    now: DateTime<Utc>,
) -> Result<CreateOutcome, DbErr> {
    let txn = db::begin_write(db).await?;
    if let Some((key, request_hash)) = &new.idempotency {
        let existing = idempotency_key::Entity::find_by_id((
            new.account_id,
            IDEMPOTENCY_SCOPE.into(),
            key.clone(),
        ))
        .one(&txn)
        .await?;
        if let Some(existing) = existing {
            if &existing.request_hash != request_hash {
                return Ok(CreateOutcome::KeyConflict);
            }
            let workflow = workflow::Entity::find_by_id(existing.resource_id)
                .one(&txn)
                .await?
                .ok_or_else(|| DbErr::RecordNotFound("idempotent workflow".into()))?;
            return Ok(CreateOutcome::Replayed(workflow));
        }
    }

    let hold_id = Uuid::now_v7();
    let hold = Command::Hold {
        hold_id,
        account_id: new.account_id,
        credits: new.cost,
        generation_id: Some(new.id),
    };
    match apply_in(&txn, &[hold], now).await?.pop() {
        Some(Outcome::Hold(HoldOutcome::Held(_))) => {}
        Some(Outcome::Hold(HoldOutcome::InsufficientCredits {
            available,
            requested,
        })) => {
            // Nothing was written; dropping the transaction rolls back the (empty) rest.
            return Ok(CreateOutcome::InsufficientCredits {
                available,
                requested,
            });
        }
        other => {
            return Err(DbErr::Custom(format!(
                "hold for a new workflow answered {other:?}"
            )));
        }
    }

    let row = workflow::ActiveModel {
        id: Set(new.id),
        account_id: Set(new.account_id),
        state: Set(WorkflowState::Reserved),
        version: Set(0),
        provider: Set(new.provider.clone()),
        cost: Set(new.cost.get()),
        hold_id: Set(hold_id),
        inputs: Set(new.inputs.clone()),
        callback_token: Set(new.callback_token.clone()),
        provider_task_id: Set(None),
        result_source: Set(None),
        result_key: Set(None),
        attempt: Set(0),
        next_attempt_at: Set(Some(now)),
        deadline_at: Set(new.deadline_at),
        error_code: Set(None),
        error_message: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(&txn)
    .await?;
    append_event(
        &txn,
        new.id,
        None,
        WorkflowState::Reserved,
        "credits held",
        0,
        now,
    )
    .await?;
    if let Some((key, request_hash)) = &new.idempotency {
        idempotency_key::ActiveModel {
            account_id: Set(new.account_id),
            scope: Set(IDEMPOTENCY_SCOPE.into()),
            key: Set(key.clone()),
            request_hash: Set(request_hash.clone()),
            resource_id: Set(new.id),
            created_at: Set(now),
        }
        .insert(&txn)
        .await?;
    }
    txn.commit().await?;
    Ok(CreateOutcome::Created(row))
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
/// `None`) and the event is a transition from its state. `next_attempt_at` is when the engine
/// should look at it again (ignored for terminal states).
pub async fn transition(
    db: &DatabaseConnection,
    workflow_id: Uuid,
    expected_version: Option<i64>,
    event: &Event,
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<TransitionOutcome, DbErr> {
    db::with_retries("workflow transition", || {
        transition_once(
            db,
            workflow_id,
            expected_version,
            event,
            next_attempt_at,
            now,
        )
    })
    .await
}

async fn transition_once(
    db: &DatabaseConnection,
    workflow_id: Uuid,
    expected_version: Option<i64>,
    event: &Event,
    next_attempt_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<TransitionOutcome, DbErr> {
    let txn = db::begin_write(db).await?;
    let Some(row) = workflow::Entity::find_by_id(workflow_id).one(&txn).await? else {
        return Ok(TransitionOutcome::NotFound);
    };
    let Some(to) = machine::next(row.state, event)
        .filter(|_| expected_version.is_none_or(|version| version == row.version))
    else {
        return Ok(TransitionOutcome::Stale(row));
    };

    let mut change = workflow::ActiveModel {
        state: Set(to),
        version: Set(row.version + 1),
        attempt: Set(0),
        next_attempt_at: Set(if to.is_terminal() {
            None
        } else {
            next_attempt_at
        }),
        updated_at: Set(now),
        ..Default::default()
    };
    match event {
        Event::Accepted { task_id } => change.provider_task_id = Set(Some(task_id.clone())),
        Event::Waiting => {}
        Event::ResultReady { source } => change.result_source = Set(Some(source.clone())),
        Event::Stored { key, .. } => change.result_key = Set(Some(key.clone())),
        Event::Failed { code, message } => {
            change.error_code = Set(Some(code.as_str().to_owned()));
            change.error_message = Set(Some(message.clone()));
        }
    }
    // The compare-and-set: on PostgreSQL this also locks the row until commit.
    let updated = workflow::Entity::update_many()
        .set(change)
        .filter(workflow::Column::Id.eq(workflow_id))
        .filter(workflow::Column::Version.eq(row.version))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        drop(txn);
        let current = workflow::Entity::find_by_id(workflow_id).one(db).await?;
        return Ok(current.map_or(TransitionOutcome::NotFound, TransitionOutcome::Stale));
    }

    match event {
        Event::Stored { charge, .. } => {
            let settle = Command::Settle {
                hold_id: row.hold_id,
                amount: *charge,
            };
            match apply_in(&txn, &[settle], now).await?.pop() {
                Some(Outcome::Settle(SettleOutcome::Settled { .. })) => {}
                other => return Err(hold_mismatch(&row, other)),
            }
        }
        Event::Failed { .. } => {
            let release = Command::Release {
                hold_id: row.hold_id,
            };
            match apply_in(&txn, &[release], now).await?.pop() {
                Some(Outcome::Release(ReleaseOutcome::Released { .. })) => {}
                other => return Err(hold_mismatch(&row, other)),
            }
        }
        _ => {}
    }
    append_event(
        &txn,
        workflow_id,
        Some(row.state),
        to,
        &event.reason(),
        row.attempt,
        now,
    )
    .await?;
    let applied = workflow::Entity::find_by_id(workflow_id)
        .one(&txn)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("workflow vanished".into()))?;
    txn.commit().await?;
    Ok(TransitionOutcome::Applied(applied))
}

/// A non-terminal workflow whose hold is already resolved breaks invariant 4: refuse to go on.
fn hold_mismatch(row: &workflow::Model, outcome: Option<Outcome>) -> DbErr {
    DbErr::Custom(format!(
        "workflow {} in {} has hold {} that answered {outcome:?}",
        row.id,
        row.state.as_str(),
        row.hold_id
    ))
}

/// Records another attempt in the current state and when to look again, if the row is still at
/// `expected_version`. Returns whether it was.
pub async fn reschedule(
    db: &DatabaseConnection,
    workflow_id: Uuid,
    expected_version: i64,
    attempt: i32,
    next_attempt_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let change = workflow::ActiveModel {
        attempt: Set(attempt),
        next_attempt_at: Set(Some(next_attempt_at)),
        updated_at: Set(now),
        ..Default::default()
    };
    let updated = workflow::Entity::update_many()
        .set(change)
        .filter(workflow::Column::Id.eq(workflow_id))
        .filter(workflow::Column::Version.eq(expected_version))
        .exec(db)
        .await?;
    Ok(updated.rows_affected == 1)
}

async fn append_event<C: ConnectionTrait>(
    db: &C,
    workflow_id: Uuid,
    from: Option<WorkflowState>,
    to: WorkflowState,
    reason: &str,
    attempt: i32,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    workflow_event::ActiveModel {
        id: NotSet,
        workflow_id: Set(workflow_id),
        from_state: Set(from),
        to_state: Set(to),
        reason: Set(reason.chars().take(255).collect()),
        attempt: Set(attempt),
        at: Set(at),
    }
    .insert(db)
    .await
    .map(drop)
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
