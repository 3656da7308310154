//! The one owner of `webhook_deliveries`, the outbox of completion webhooks. The workflow
//! writer calls `record` inside the transaction of every batch, with the rows its transitions
//! left: the deliveries of a terminal transition commit or vanish with it, so a crash can
//! neither lose an event nor invent one. The sender then claims what is due (`claim_due`),
//! and records each attempt's end (`finish`); both are compare-and-set on the row, so a claim
//! that lapsed (a crash mid-send) is taken over once, and a late answer to it changes nothing.
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use atelier_entities::webhook_delivery::{self, Model as Delivery};
use atelier_entities::webhook_endpoint::Model as Endpoint;
use atelier_entities::workflow::Model as Workflow;
use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use super::endpoints;
use super::event::{self, EventType};
use crate::db;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Most deliveries one INSERT writes (12 parameters each).
const INSERT_CHUNK: usize = 1_000;

/// Longest `last_error` kept, in characters (the column's size).
const MAX_ERROR_CHARS: usize = 255;

/// `wait` after `at` (waits here are bounded by the configuration, far from overflowing).
pub fn after(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    chrono::TimeDelta::from_std(wait)
        .ok()
        .and_then(|wait| at.checked_add_signed(wait))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The `webhook-id` of a delivery: the same on every attempt.
pub fn webhook_id(delivery: Uuid) -> String {
    format!("msg_{}", delivery.simple())
}

/// Writes the deliveries the transitions that left the rows `moved` imply: one per terminal
/// transition and endpoint of its account subscribed to its event. Called inside the
/// transitions' transaction, after the ledger locked the accounts.
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    moved: &[Workflow],
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    let ended: Vec<(&Workflow, EventType)> = moved
        .iter()
        .filter_map(|row| event::event_for(row).map(|event| (row, event)))
        .collect();
    if ended.is_empty() {
        return Ok(());
    }
    let accounts: BTreeSet<Uuid> = ended.iter().map(|(row, _)| row.account_id).collect();
    let subscribed = endpoints::subscribed(txn, accounts, now).await?;
    let rows: Vec<webhook_delivery::ActiveModel> = ended
        .iter()
        .flat_map(|(row, event)| {
            subscribed
                .iter()
                .filter(|endpoint| {
                    endpoint.account_id == row.account_id && endpoints::subscribes(endpoint, *event)
                })
                .map(|endpoint| new_delivery(endpoint.id, row, *event, now))
        })
        .collect();
    // A batch of terminal transitions times many endpoints could pass the databases' limit
    // on bound parameters (PostgreSQL: 65,535) in one statement.
    for chunk in rows.chunks(INSERT_CHUNK) {
        webhook_delivery::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(txn)
            .await?;
    }
    Ok(())
}

fn new_delivery(
    endpoint_id: Uuid,
    row: &Workflow,
    event: EventType,
    now: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        endpoint_id: Set(endpoint_id),
        workflow_id: Set(row.id),
        event_type: Set(event.as_str().to_owned()),
        payload: Set(event::payload(row, event, now)),
        state: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(Some(now)),
        last_status: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        delivered_at: Set(None),
    }
}

/// A delivery claimed for one attempt, with its endpoint. Not `Debug`: the endpoint carries
/// its secret, which no log may show.
#[derive(Clone)]
pub struct Claim {
    pub delivery: Delivery,
    pub endpoint: Endpoint,
}

/// Claims up to `limit` due deliveries for one attempt each: the attempt is counted and the
/// delivery put off by `lease`, so that nobody else sends it meanwhile.
pub async fn claim_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    limit: u64,
    lease: Duration,
) -> Result<Vec<Claim>, DbErr> {
    // Most looks find nothing due. Asking first keeps an idle sender from opening a write
    // transaction every look: on SQLite that would take the process's one writer turn.
    let nothing_due = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::State.eq(PENDING))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
        .one(db)
        .await?
        .is_none();
    if nothing_due {
        return Ok(Vec::new());
    }
    let until = after(now, lease);
    let claimed = db::with_retries("webhook claim", || async {
        let txn = db::begin_write(db).await?;
        let due = webhook_delivery::Entity::find()
            .filter(webhook_delivery::Column::State.eq(PENDING))
            .filter(webhook_delivery::Column::NextAttemptAt.lte(now))
            .order_by_asc(webhook_delivery::Column::NextAttemptAt)
            .limit(limit)
            .all(&*txn)
            .await?;
        let mut claimed = Vec::with_capacity(due.len());
        for mut delivery in due {
            let taken = webhook_delivery::Entity::update_many()
                .set(webhook_delivery::ActiveModel {
                    attempts: Set(delivery.attempts + 1),
                    next_attempt_at: Set(Some(until)),
                    ..Default::default()
                })
                .filter(webhook_delivery::Column::Id.eq(delivery.id))
                .filter(webhook_delivery::Column::State.eq(PENDING))
                .filter(webhook_delivery::Column::Attempts.eq(delivery.attempts))
                .exec(&*txn)
                .await?;
            if taken.rows_affected == 1 {
                delivery.attempts += 1;
                delivery.next_attempt_at = Some(until);
                claimed.push(delivery);
            }
        }
        txn.commit().await?;
        Ok(claimed)
    })
    .await?;
    if claimed.is_empty() {
        return Ok(Vec::new());
    }
    let ids: BTreeSet<Uuid> = claimed.iter().map(|d| d.endpoint_id).collect();
    let by_id: HashMap<Uuid, Endpoint> = endpoints::by_ids(db, ids)
        .await?
        .into_iter()
        .map(|endpoint| (endpoint.id, endpoint))
        .collect();
    Ok(claimed
        .into_iter()
        .filter_map(|delivery| {
            let endpoint = by_id.get(&delivery.endpoint_id)?.clone();
            Some(Claim { delivery, endpoint })
        })
        .collect())
}

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered 2xx.
    Accepted { status: u16 },
    /// Worth another attempt later: a non-2xx answer, a timeout, a refused connection.
    Failed { status: Option<u16>, error: String },
    /// Never worth another: the endpoint was deleted, or the delivery is past its age.
    Abandoned { error: String },
}

/// Records how the claimed attempt ended: `delivered`; or, after a failure, due again after
/// `retry` — unless that is past `give_up_at`, then `failed`. A claim that was taken over
/// since (its attempt number moved on) records nothing.
pub async fn finish(
    db: &DatabaseConnection,
    claim: &Delivery,
    attempt: &Attempt,
    now: DateTime<Utc>,
    retry: Duration,
    give_up_at: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let truncated = |error: &str| Some(error.chars().take(MAX_ERROR_CHARS).collect::<String>());
    let mut change = webhook_delivery::ActiveModel::default();
    match attempt {
        Attempt::Accepted { status } => {
            change.state = Set(DELIVERED.to_owned());
            change.next_attempt_at = Set(None);
            change.delivered_at = Set(Some(now));
            change.last_status = Set(Some(i32::from(*status)));
            change.last_error = Set(None);
        }
        Attempt::Failed { status, error } => {
            let next = after(now, retry);
            if next > give_up_at {
                change.state = Set(FAILED.to_owned());
                change.next_attempt_at = Set(None);
            } else {
                change.next_attempt_at = Set(Some(next));
            }
            change.last_status = Set(status.map(i32::from));
            change.last_error = Set(truncated(error));
        }
        Attempt::Abandoned { error } => {
            change.state = Set(FAILED.to_owned());
            change.next_attempt_at = Set(None);
            change.last_error = Set(truncated(error));
        }
    }
    db::with_retries("webhook attempt", || async {
        let txn = db::begin_write(db).await?;
        let updated = webhook_delivery::Entity::update_many()
            .set(change.clone())
            .filter(webhook_delivery::Column::Id.eq(claim.id))
            .filter(webhook_delivery::Column::State.eq(PENDING))
            .filter(webhook_delivery::Column::Attempts.eq(claim.attempts))
            .exec(&*txn)
            .await?;
        txn.commit().await?;
        Ok(updated.rows_affected == 1)
    })
    .await
}

/// An endpoint's deliveries, newest first, before the cursor `before`: the page and the
/// cursor of the next one.
pub async fn page_for_endpoint<C: ConnectionTrait>(
    db: &C,
    endpoint_id: Uuid,
    before: Option<Uuid>,
    limit: u64,
) -> Result<(Vec<Delivery>, Option<Uuid>), DbErr> {
    let mut query = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::EndpointId.eq(endpoint_id))
        .order_by_desc(webhook_delivery::Column::Id)
        .limit(limit + 1);
    if let Some(before) = before {
        query = query.filter(webhook_delivery::Column::Id.lt(before));
    }
    let mut rows = query.all(db).await?;
    let next = (rows.len() as u64 > limit).then(|| {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.id)
    });
    Ok((rows, next.flatten()))
}

/// Deliveries in id order after `after` (`verify`).
pub async fn page_all<C: ConnectionTrait>(
    db: &C,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    let mut query = webhook_delivery::Entity::find()
        .order_by_asc(webhook_delivery::Column::Id)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(webhook_delivery::Column::Id.gt(after));
    }
    query.all(db).await
}

/// The (workflow, endpoint) pairs that have a delivery, among `workflows` (`verify`).
pub async fn pairs_for<C: ConnectionTrait>(
    db: &C,
    workflows: impl IntoIterator<Item = Uuid>,
) -> Result<Vec<(Uuid, Uuid)>, DbErr> {
    webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::WorkflowId)
        .column(webhook_delivery::Column::EndpointId)
        .filter(webhook_delivery::Column::WorkflowId.is_in(workflows))
        .into_tuple()
        .all(db)
        .await
}

/// Deletes the finished (`delivered` or `failed`) deliveries of these workflows: retention,
/// inside the transaction that prunes the workflows. A pending one stays to be sent (its own
/// `webhooks.max_age_secs` ends it), and invariant 9 keeps checking it.
///
/// Two statements, each by a key: with the state in one DELETE, SQLite's planner picks the
/// `(state, next_attempt_at)` index and walks every finished delivery for each batch.
pub async fn delete_finished<C: ConnectionTrait>(
    txn: &C,
    workflows: &[Uuid],
) -> Result<u64, DbErr> {
    let theirs: Vec<(Uuid, String)> = webhook_delivery::Entity::find()
        .select_only()
        .column(webhook_delivery::Column::Id)
        .column(webhook_delivery::Column::State)
        .filter(webhook_delivery::Column::WorkflowId.is_in(workflows.iter().copied()))
        .into_tuple()
        .all(txn)
        .await?;
    let finished: Vec<Uuid> = theirs
        .into_iter()
        .filter(|(_, state)| state == DELIVERED || state == FAILED)
        .map(|(id, _)| id)
        .collect();
    if finished.is_empty() {
        return Ok(0);
    }
    Ok(webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::Id.is_in(finished))
        .exec(txn)
        .await?
        .rows_affected)
}
