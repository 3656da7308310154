//! Every read of `workflows`, `workflow_events` and `webhook_inbox` (writes go through the
//! `Workflows` handle). Nothing here locks or waits on anything but the database.
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::{idempotency_key, webhook_inbox, workflow_event};
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, LikeExpr, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::db::page_of;

use super::command::IDEMPOTENCY_SCOPE;
use super::inputs::InputImage;
use super::machine::LIVE;

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
    let rows = query.all(db).await?;
    Ok(page_of(rows, limit, |row| row.id))
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

/// The workflow's latest timeline entry.
pub async fn last_event<C: ConnectionTrait>(
    db: &C,
    workflow_id: Uuid,
) -> Result<Option<workflow_event::Model>, DbErr> {
    workflow_event::Entity::find()
        .filter(workflow_event::Column::WorkflowId.eq(workflow_id))
        .order_by_desc(workflow_event::Column::Id)
        .one(db)
        .await
}

/// A workflow, whoever owns it.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    workflow_id: Uuid,
) -> Result<Option<workflow::Model>, DbErr> {
    workflow::Entity::find_by_id(workflow_id).one(db).await
}

/// Whether a live workflow of the account keeps `key` among its stored inputs: an object that
/// must stay in storage until that workflow ends. Matched in the inputs' JSON, which holds
/// each stored input as `{"stored":"<key>"}`.
pub async fn live_with_input<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    key: &str,
) -> Result<bool, DbErr> {
    let needle = serde_json::to_string(&InputImage::Stored(key.to_owned())).expect("serialises");
    let escaped: String = needle
        .chars()
        .flat_map(|c| match c {
            '!' | '%' | '_' => vec!['!', c],
            c => vec![c],
        })
        .collect();
    let pattern = LikeExpr::new(format!("%{escaped}%")).escape('!');
    let found = workflow::Entity::find()
        .filter(workflow::Column::AccountId.eq(account_id))
        .filter(workflow::Column::State.is_in(LIVE))
        .filter(workflow::Column::Inputs.like(pattern))
        .count(db)
        .await?;
    Ok(found > 0)
}

/// The callbacks stored for a workflow that nothing has acted on yet, oldest first.
pub async fn pending_callbacks<C: ConnectionTrait>(
    db: &C,
    workflow_id: Uuid,
) -> Result<Vec<webhook_inbox::Model>, DbErr> {
    webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::WorkflowId.eq(workflow_id))
        .filter(webhook_inbox::Column::ProcessedAt.is_null())
        .order_by_asc(webhook_inbox::Column::Id)
        .all(db)
        .await
}

/// Live workflows with something to do at `now` (due, or past their deadline) and ones
/// holding unprocessed callbacks; at most `limit` of each kind, soonest first, so that a
/// backlog is worked through in order. Each query is served by its own index.
pub async fn due<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    let mut due: Vec<Uuid> = Vec::new();
    for column in [
        workflow::Column::NextAttemptAt,
        workflow::Column::DeadlineAt,
    ] {
        let ids: Vec<Uuid> = workflow::Entity::find()
            .select_only()
            .column(workflow::Column::Id)
            .filter(workflow::Column::State.is_in(LIVE))
            .filter(column.lte(now))
            .order_by_asc(column)
            .limit(limit)
            .into_tuple()
            .all(db)
            .await?;
        due.extend(ids);
    }
    let with_callbacks: Vec<Uuid> = webhook_inbox::Entity::find()
        .select_only()
        .column(webhook_inbox::Column::WorkflowId)
        .distinct()
        .filter(webhook_inbox::Column::ProcessedAt.is_null())
        .limit(limit)
        .into_tuple()
        .all(db)
        .await?;
    due.extend(with_callbacks);
    due.sort();
    due.dedup();
    Ok(due)
}

/// How many workflows are in `state`.
pub async fn count_in<C: ConnectionTrait>(db: &C, state: WorkflowState) -> Result<u64, DbErr> {
    workflow::Entity::find()
        .filter(workflow::Column::State.eq(state))
        .count(db)
        .await
}

/// Every callback stored for these workflows (processed or not).
pub async fn callbacks_of<C: ConnectionTrait>(
    db: &C,
    workflow_ids: &[Uuid],
) -> Result<Vec<webhook_inbox::Model>, DbErr> {
    webhook_inbox::Entity::find()
        .filter(webhook_inbox::Column::WorkflowId.is_in(workflow_ids.iter().copied()))
        .all(db)
        .await
}

/// The timeline entries of these workflows that moved them to `state`.
pub async fn moves_to<C: ConnectionTrait>(
    db: &C,
    workflow_ids: &[Uuid],
    state: WorkflowState,
) -> Result<Vec<workflow_event::Model>, DbErr> {
    workflow_event::Entity::find()
        .filter(workflow_event::Column::WorkflowId.is_in(workflow_ids.iter().copied()))
        .filter(workflow_event::Column::ToState.eq(state))
        .all(db)
        .await
}

/// When each of these workflows' first callback arrived (workflows without one are left out).
pub async fn first_callbacks<C: ConnectionTrait>(
    db: &C,
    workflow_ids: &[Uuid],
) -> Result<HashMap<Uuid, DateTime<Utc>>, DbErr> {
    let received: Vec<(Uuid, DateTime<Utc>)> = webhook_inbox::Entity::find()
        .select_only()
        .column(webhook_inbox::Column::WorkflowId)
        .column(webhook_inbox::Column::ReceivedAt)
        .filter(webhook_inbox::Column::WorkflowId.is_in(workflow_ids.iter().copied()))
        .into_tuple()
        .all(db)
        .await?;
    let mut first: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    for (id, at) in received {
        first
            .entry(id)
            .and_modify(|seen| *seen = (*seen).min(at))
            .or_insert(at);
    }
    Ok(first)
}

/// Live workflows per state, each count stopping at `cap` (an index range per state, never a
/// scan of the whole table), and when the oldest live one was created. The oldest is found
/// by the `(state, deadline_at)` index: the earliest deadline, which is the earliest creation
/// while `workflow.overall_deadline_secs` stays as it is.
pub async fn live_summary<C: ConnectionTrait>(
    db: &C,
    cap: u64,
) -> Result<(Vec<(WorkflowState, u64)>, Option<DateTime<Utc>>), DbErr> {
    let mut counts = Vec::with_capacity(LIVE.len());
    let mut oldest: Option<DateTime<Utc>> = None;
    for state in LIVE {
        let capped = workflow::Entity::find()
            .select_only()
            .column(workflow::Column::Id)
            .filter(workflow::Column::State.eq(state))
            .limit(cap)
            .into_query();
        let count = SelectStatement::new()
            .expr(Expr::cust("COUNT(*) AS live"))
            .from_subquery(capped, Alias::new("capped"))
            .to_owned();
        let live = match db.query_one(&count).await? {
            Some(row) => row.try_get::<i64>("", "live")?.max(0) as u64,
            None => 0,
        };
        counts.push((state, live));
        let first: Option<DateTime<Utc>> = workflow::Entity::find()
            .select_only()
            .column(workflow::Column::CreatedAt)
            .filter(workflow::Column::State.eq(state))
            .order_by_asc(workflow::Column::DeadlineAt)
            .limit(1)
            .into_tuple()
            .one(db)
            .await?;
        oldest = match (oldest, first) {
            (Some(seen), Some(first)) => Some(seen.min(first)),
            (seen, first) => seen.or(first),
        };
    }
    Ok((counts, oldest))
}

/// Credits charged per provider by the workflows settled among those whose deadline is at or
/// after `since` (created no earlier than `since` minus the overall deadline): a range of
/// the `(state, deadline_at)` index, so the sum stays bounded by the period, not the table.
pub async fn charged_by_provider<C: ConnectionTrait>(
    db: &C,
    since: DateTime<Utc>,
) -> Result<HashMap<String, i64>, DbErr> {
    let sums: Vec<(String, i64)> = workflow::Entity::find()
        .select_only()
        .column(workflow::Column::Provider)
        .column_as(
            Expr::cust("CAST(SUM(COALESCE(charge, cost)) AS BIGINT)"),
            "charged",
        )
        .filter(workflow::Column::State.eq(WorkflowState::Settled))
        .filter(workflow::Column::DeadlineAt.gte(since))
        .group_by(workflow::Column::Provider)
        .into_tuple()
        .all(db)
        .await?;
    Ok(sums.into_iter().collect())
}

/// The `Idempotency-Key` an account's generation create claimed: the hash of the request that
/// claimed it, and the workflow it made.
pub async fn claimed_key<C: ConnectionTrait>(
    db: &C,
    account_id: Uuid,
    key: &str,
) -> Result<Option<(String, Uuid)>, DbErr> {
    let id = (account_id, IDEMPOTENCY_SCOPE.to_owned(), key.to_owned());
    let claimed = idempotency_key::Entity::find_by_id(id).one(db).await?;
    Ok(claimed.map(|claimed| (claimed.request_hash, claimed.resource_id)))
}
