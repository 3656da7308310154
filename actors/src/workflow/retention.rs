//! Retention's side of the workflow tables (docs/design.md §1, "Retention"): what a generation
//! that ended long ago leaves behind is deleted in small batches, each one short transaction,
//! so that a pruner never holds locks long beside the hot path.
//!
//! A pruned workflow keeps its row (the ledger names it, and `GET /v1/generations/{id}` still
//! answers) with `pruned_at` set; its events, provider callbacks, generation idempotency key
//! and finished webhook deliveries go. A result past its own retention is deleted from
//! storage by the caller, then marked here (`result_expired_at`). Ledger tables are never
//! touched.
//!
//! Several processes may prune one database at once. Each batch picks its rows from the
//! partial indexes of `m20261207_000020_retention` outside any transaction, then locks those
//! still to do in id order (`FOR NO KEY UPDATE SKIP LOCKED` on PostgreSQL: a row another
//! pruner or the workflow writer holds is left for a later batch instead of waited for, so
//! no two sessions wait on each other; SQLite's IMMEDIATE transaction already excludes other
//! writers) and works only on those. Every delete names rows by workflow id, so a batch
//! repeated after a crash or by another process deletes nothing twice.
use atelier_entities::workflow;
use atelier_entities::{idempotency_key, webhook_inbox, workflow_event};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, LockBehavior, LockType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter,
    QueryOrder, QueryResult, QuerySelect, Statement,
};
use uuid::Uuid;

use super::command::IDEMPOTENCY_SCOPE;
use crate::db;
use crate::webhooks_out::outbox;

/// The partial index `workflows_to_prune` and its predicate, repeated word for word: the
/// databases use a partial index only for a query whose WHERE clause contains its predicate,
/// and cannot see that bound parameters would match it. No other query implies it, so no
/// other query can use the index.
const TO_PRUNE: Partial = Partial {
    index: "workflows_to_prune",
    predicate: "pruned_at IS NULL AND state IN ('settled', 'released')",
    still: "pruned_at IS NULL",
};
/// `workflows_to_expire` and its predicate (only a settle sets `result_key`).
const TO_EXPIRE: Partial = Partial {
    index: "workflows_to_expire",
    predicate: "result_expired_at IS NULL AND result_key IS NOT NULL",
    still: "result_expired_at IS NULL",
};

/// A partial index the pruner reads its batches from.
struct Partial {
    index: &'static str,
    /// The index's WHERE clause, word for word.
    predicate: &'static str,
    /// What a candidate must still match once locked: the mark not yet set (the rest of the
    /// predicate cannot change back). Only that: with the `state IN (…)` term too, SQLite's
    /// planner reads the candidates through `workflows_by_deadline`, walking every ended row
    /// (measured: ~45 ms per batch over 200,000 ended rows, against ~0.4 ms by primary key).
    still: &'static str,
}

/// What one batch deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pruned {
    pub workflows: u64,
    pub events: u64,
    pub callbacks: u64,
    pub keys: u64,
    pub deliveries: u64,
}

impl Pruned {
    pub fn add(&mut self, other: Pruned) {
        self.workflows += other.workflows;
        self.events += other.events;
        self.callbacks += other.callbacks;
        self.keys += other.keys;
        self.deliveries += other.deliveries;
    }
}

/// Prunes at most `limit` workflows that ended before `cutoff`, oldest first, in one
/// transaction; `pruned.workflows < limit` means none was left (or the rest were locked).
pub async fn prune_batch(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Pruned, DbErr> {
    let candidates = oldest(db, "id", &TO_PRUNE, cutoff, limit)
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<Uuid>(0))
        .collect::<Result<Vec<Uuid>, DbErr>>()?;
    if candidates.is_empty() {
        return Ok(Pruned::default());
    }
    db::with_retries("a retention batch", || prune_these(db, &candidates, now)).await
}

async fn prune_these(
    db: &DatabaseConnection,
    candidates: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Pruned, DbErr> {
    let txn = db::begin_write(db).await?;
    let ids = lock_still(&*txn, candidates, TO_PRUNE.still).await?;
    if ids.is_empty() {
        return Ok(Pruned::default());
    }
    let events = workflow_event::Entity::delete_many()
        .filter(workflow_event::Column::WorkflowId.is_in(ids.iter().copied()))
        .exec(&*txn)
        .await?
        .rows_affected;
    let callbacks = webhook_inbox::Entity::delete_many()
        .filter(webhook_inbox::Column::WorkflowId.is_in(ids.iter().copied()))
        .exec(&*txn)
        .await?
        .rows_affected;
    let keys = idempotency_key::Entity::delete_many()
        .filter(idempotency_key::Column::Scope.eq(IDEMPOTENCY_SCOPE))
        .filter(idempotency_key::Column::ResourceId.is_in(ids.iter().copied()))
        .exec(&*txn)
        .await?
        .rows_affected;
    let deliveries = outbox::delete_finished(&*txn, &ids).await?;
    let workflows = mark(&*txn, &ids, workflow::Column::PrunedAt, now).await?;
    txn.commit().await?;
    Ok(Pruned {
        workflows,
        events,
        callbacks,
        keys,
        deliveries,
    })
}

/// At most `limit` settled workflows whose result is still stored and which settled before
/// `cutoff`, oldest first, with their result keys: the caller deletes each object, then
/// marks the rows (`mark_results_expired`). Deleting first means a crash between the two
/// leaves a row the next pass picks again (deleting a missing object is no error), never a
/// row marked expired whose object was kept.
pub async fn results_to_expire(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<(Uuid, String)>, DbErr> {
    oldest(db, "id, result_key", &TO_EXPIRE, cutoff, limit)
        .await?
        .iter()
        .map(|row| Ok((row.try_get_by_index(0)?, row.try_get_by_index(1)?)))
        .collect()
}

/// Marks these workflows' results expired (those not marked yet); how many it marked.
pub async fn mark_results_expired(
    db: &DatabaseConnection,
    ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    db::with_retries("marking expired results", || async {
        let txn = db::begin_write(db).await?;
        let still = lock_still(&*txn, ids, TO_EXPIRE.still).await?;
        let marked = mark(&*txn, &still, workflow::Column::ResultExpiredAt, now).await?;
        txn.commit().await?;
        Ok(marked)
    })
    .await
}

/// The ids (and `columns`) of at most `limit` rows of the partial index `partial`, last
/// changed before `cutoff`, oldest first. Read outside any
/// transaction: it takes no lock.
///
/// Hand-written SQL because SQLite must be told the index: without statistics its planner
/// prefers `workflows_by_deadline` for the `state IN (…)` term and would walk every ended row
/// (pruned ones too) for each batch. `INDEXED BY` also fails loudly should the index go.
/// PostgreSQL picks the partial index by itself (checked with a generic plan).
async fn oldest(
    db: &DatabaseConnection,
    columns: &str,
    partial: &Partial,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<QueryResult>, DbErr> {
    let backend = db.get_database_backend();
    let (hint, cutoff_at, limit_at) = match backend {
        DbBackend::Postgres => (String::new(), "$1", "$2"),
        _ => (format!(" INDEXED BY {}", partial.index), "?", "?"),
    };
    let predicate = partial.predicate;
    let sql = format!(
        "SELECT {columns} FROM workflows{hint} WHERE {predicate} AND updated_at < {cutoff_at} \
         ORDER BY updated_at LIMIT {limit_at}"
    );
    let values = [cutoff.into(), (limit.min(i64::MAX as u64) as i64).into()];
    db.query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await
}

/// Of `candidates`, those still matching `predicate` (a `Partial::still`), locked in id order;
/// rows another session holds are skipped (PostgreSQL), not waited for.
async fn lock_still<C: ConnectionTrait>(
    txn: &C,
    candidates: &[Uuid],
    predicate: &'static str,
) -> Result<Vec<Uuid>, DbErr> {
    workflow::Entity::find()
        .select_only()
        .column(workflow::Column::Id)
        .filter(workflow::Column::Id.is_in(candidates.iter().copied()))
        .filter(Expr::cust(predicate))
        .order_by_asc(workflow::Column::Id)
        .lock_with_behavior(LockType::NoKeyUpdate, LockBehavior::SkipLocked)
        .into_tuple()
        .all(txn)
        .await
}

/// Sets `column` to `now` on these rows; nothing else of the row changes (`updated_at` stays
/// when the workflow ended, which the outbox's invariant reads).
async fn mark<C: ConnectionTrait>(
    txn: &C,
    ids: &[Uuid],
    column: workflow::Column,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    Ok(workflow::Entity::update_many()
        .col_expr(column, Expr::value(now))
        .filter(workflow::Column::Id.is_in(ids.iter().copied()))
        .exec(txn)
        .await?
        .rows_affected)
}
