//! Every read of `workflows`, `workflow_events` and `webhook_inbox` (writes go through the
//! `Workflows` handle). Nothing here locks or waits on anything but the database.
use atelier_entities::workflow::{self, WorkflowState};
use atelier_entities::{idempotency_key, webhook_inbox, workflow_event};

use chrono::{DateTime, Utc};
use std::collections::{HashMap, HashSet};

use sea_orm::sea_query::{Alias, Expr, LikeExpr, Query, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};
use uuid::Uuid;

use crate::db::page_of;

use super::command::IDEMPOTENCY_SCOPE;
use super::feed_event::{FeedEvent, Scope};
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
/// backlog is worked through in order. Each query is served by its own index. `shards`: only
/// workflows of these (`None`: of every shard).
pub async fn due<C: ConnectionTrait>(
    db: &C,
    now: DateTime<Utc>,
    limit: u64,
    shards: Option<&[i16]>,
) -> Result<Vec<Uuid>, DbErr> {
    let mut due: Vec<Uuid> = Vec::new();
    for column in [
        workflow::Column::NextAttemptAt,
        workflow::Column::DeadlineAt,
    ] {
        let mut query = workflow::Entity::find()
            .select_only()
            .column(workflow::Column::Id)
            .filter(workflow::Column::State.is_in(LIVE))
            .filter(column.lte(now));
        if let Some(shards) = shards {
            query = query.filter(workflow::Column::Shard.is_in(shards.iter().copied()));
        }
        let ids: Vec<Uuid> = query
            .order_by_asc(column)
            .limit(limit)
            .into_tuple()
            .all(db)
            .await?;
        due.extend(ids);
    }
    due.extend(with_pending_callbacks(db, limit, shards).await?);
    due.sort();
    due.dedup();
    Ok(due)
}

/// Workflows with callbacks not yet processed (of `shards` only, when given).
async fn with_pending_callbacks<C: ConnectionTrait>(
    db: &C,
    limit: u64,
    shards: Option<&[i16]>,
) -> Result<Vec<Uuid>, DbErr> {
    let mut query = webhook_inbox::Entity::find()
        .select_only()
        .column(webhook_inbox::Column::WorkflowId)
        .distinct()
        .filter(webhook_inbox::Column::ProcessedAt.is_null());
    if let Some(shards) = shards {
        let of_shards = Query::select()
            .column(workflow::Column::Id)
            .from(workflow::Entity)
            .and_where(workflow::Column::Shard.is_in(shards.iter().copied()))
            .to_owned();
        query = query.filter(webhook_inbox::Column::WorkflowId.in_subquery(of_shards));
    }
    query.limit(limit).into_tuple().all(db).await
}

/// How many workflows are in `state`.
pub async fn count_in<C: ConnectionTrait>(db: &C, state: WorkflowState) -> Result<u64, DbErr> {
    workflow::Entity::find()
        .filter(workflow::Column::State.eq(state))
        .count(db)
        .await
}

/// How many workflows retention has pruned.
pub async fn count_pruned<C: ConnectionTrait>(db: &C) -> Result<u64, DbErr> {
    workflow::Entity::find()
        .filter(workflow::Column::PrunedAt.is_not_null())
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

/// Which workflows an operator's list or bulk action covers; every field set narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    /// Any of these states (all when empty).
    pub states: Vec<WorkflowState>,
    pub provider: Option<String>,
    pub account_id: Option<Uuid>,
    pub error_code: Option<String>,
    /// Created within `[from, to]`.
    pub created: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// Last changed within `[from, to]`.
    pub updated: Option<(DateTime<Utc>, DateTime<Utc>)>,
    /// The workflow with this id, or the one whose provider task id this is.
    pub lookup: Option<String>,
}

/// The column an operator's list is sorted by (the id breaks ties).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    CreatedAt,
    UpdatedAt,
}

impl SortBy {
    fn column(self) -> workflow::Column {
        match self {
            SortBy::CreatedAt => workflow::Column::CreatedAt,
            SortBy::UpdatedAt => workflow::Column::UpdatedAt,
        }
    }

    fn of(self, row: &workflow::Model) -> DateTime<Utc> {
        match self {
            SortBy::CreatedAt => row.created_at,
            SortBy::UpdatedAt => row.updated_at,
        }
    }
}

/// Where an operator's page starts: after the row with this sort value and id.
pub type SortKey = (DateTime<Utc>, Uuid);

fn filtered(filter: &WorkflowFilter) -> sea_orm::Select<workflow::Entity> {
    use sea_orm::sea_query::Condition;
    let mut query = workflow::Entity::find();
    if !filter.states.is_empty() {
        query = query.filter(workflow::Column::State.is_in(filter.states.clone()));
    }
    if let Some(provider) = &filter.provider {
        query = query.filter(workflow::Column::Provider.eq(provider.as_str()));
    }
    if let Some(account_id) = filter.account_id {
        query = query.filter(workflow::Column::AccountId.eq(account_id));
    }
    if let Some(code) = &filter.error_code {
        query = query.filter(workflow::Column::ErrorCode.eq(code.as_str()));
    }
    for (column, range) in [
        (workflow::Column::CreatedAt, filter.created),
        (workflow::Column::UpdatedAt, filter.updated),
    ] {
        if let Some((from, to)) = range {
            query = query.filter(column.gte(from)).filter(column.lte(to));
        }
    }
    if let Some(lookup) = &filter.lookup {
        let mut any = Condition::any().add(workflow::Column::ProviderTaskId.eq(lookup.as_str()));
        if let Ok(id) = Uuid::parse_str(lookup) {
            any = any.add(workflow::Column::Id.eq(id));
        }
        query = query.filter(any);
    }
    query
}

/// One page of the workflows `filter` matches, sorted by `sort` (then id), descending unless
/// `ascending`; `after` is the key the previous page ended at.
pub async fn search<C: ConnectionTrait>(
    db: &C,
    filter: &WorkflowFilter,
    sort: SortBy,
    ascending: bool,
    after: Option<SortKey>,
    limit: u64,
) -> Result<(Vec<workflow::Model>, Option<SortKey>), DbErr> {
    use sea_orm::sea_query::Condition;
    let column = sort.column();
    let mut query = filtered(filter);
    if let Some((at, id)) = after {
        let (beyond_at, beyond_id) = if ascending {
            (column.gt(at), workflow::Column::Id.gt(id))
        } else {
            (column.lt(at), workflow::Column::Id.lt(id))
        };
        let tie = Condition::all().add(column.eq(at)).add(beyond_id);
        query = query.filter(Condition::any().add(beyond_at).add(tie));
    }
    query = if ascending {
        query
            .order_by_asc(column)
            .order_by_asc(workflow::Column::Id)
    } else {
        query
            .order_by_desc(column)
            .order_by_desc(workflow::Column::Id)
    };
    let rows = query.limit(limit + 1).all(db).await?;
    Ok(page_of(rows, limit, |row| (sort.of(row), row.id)))
}

/// How many workflows `filter` matches, counting no further than `cap`.
pub async fn count_capped<C: ConnectionTrait>(
    db: &C,
    filter: &WorkflowFilter,
    cap: u64,
) -> Result<u64, DbErr> {
    count_at_most(db, filtered(filter), cap).await
}

/// How many rows `query` yields, counting no further than `cap`: the database stops reading
/// rows there, so a count over a huge table costs at most `cap` index entries.
async fn count_at_most<C: ConnectionTrait>(
    db: &C,
    query: sea_orm::Select<workflow::Entity>,
    cap: u64,
) -> Result<u64, DbErr> {
    use sea_orm::QueryTrait;
    use sea_orm::sea_query::{Alias, Expr, Query};
    let inner = query
        .select_only()
        .column(workflow::Column::Id)
        .limit(cap)
        .into_query();
    let statement = Query::select()
        .expr(Expr::cust("COUNT(*)"))
        .from_subquery(inner, Alias::new("capped"))
        .to_owned();
    let statement = db.get_database_backend().build(&statement);
    let count: i64 = match db.query_one_raw(statement).await? {
        Some(row) => row.try_get_by_index(0)?,
        None => 0,
    };
    Ok(u64::try_from(count).unwrap_or_default())
}

/// What a bulk action covers: the workflows `filter` matches that were created at or before
/// `cutoff` and are live (`None`: a filter naming only terminal states covers nothing).
fn bulk_targets(
    filter: &WorkflowFilter,
    cutoff: DateTime<Utc>,
) -> Option<sea_orm::Select<workflow::Entity>> {
    let mut live = filter.clone();
    live.states = if filter.states.is_empty() {
        LIVE.to_vec()
    } else {
        filter
            .states
            .iter()
            .copied()
            .filter(|state| LIVE.contains(state))
            .collect()
    };
    if live.states.is_empty() {
        return None;
    }
    Some(filtered(&live).filter(workflow::Column::CreatedAt.lte(cutoff)))
}

/// How many workflows a bulk action over `filter` started at `cutoff` covers, up to `cap`.
pub async fn count_bulk_targets<C: ConnectionTrait>(
    db: &C,
    filter: &WorkflowFilter,
    cutoff: DateTime<Utc>,
    cap: u64,
) -> Result<u64, DbErr> {
    match bulk_targets(filter, cutoff) {
        Some(query) => count_at_most(db, query, cap).await,
        None => Ok(0),
    }
}

/// The next `limit` ids of a bulk action's targets, ascending, after `after`.
pub async fn bulk_targets_after<C: ConnectionTrait>(
    db: &C,
    filter: &WorkflowFilter,
    cutoff: DateTime<Utc>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    let Some(mut query) = bulk_targets(filter, cutoff) else {
        return Ok(Vec::new());
    };
    if let Some(after) = after {
        query = query.filter(workflow::Column::Id.gt(after));
    }
    query
        .select_only()
        .column(workflow::Column::Id)
        .order_by_asc(workflow::Column::Id)
        .limit(limit)
        .into_tuple()
        .all(db)
        .await
}

/// The newest workflow an operator re-ran `workflow_id` as.
pub async fn retried_as<C: ConnectionTrait>(
    db: &C,
    workflow_id: Uuid,
) -> Result<Option<Uuid>, DbErr> {
    workflow::Entity::find()
        .select_only()
        .column(workflow::Column::Id)
        .filter(workflow::Column::RetryOf.eq(workflow_id))
        .order_by_desc(workflow::Column::Id)
        .into_tuple()
        .one(db)
        .await
}

/// The id of the newest timeline entry; 0 when there is none.
pub async fn newest_event_id<C: ConnectionTrait>(db: &C) -> Result<i64, DbErr> {
    let newest = workflow_event::Entity::find()
        .select_only()
        .column(workflow_event::Column::Id)
        .order_by_desc(workflow_event::Column::Id)
        .limit(1)
        .into_tuple::<i64>()
        .one(db)
        .await?;
    Ok(newest.unwrap_or(0))
}

/// The newest timeline id a read saw, and, on PostgreSQL, which transactions could still
/// commit entries with smaller ids: the feed's input (see `feed_frontier`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Horizon {
    pub newest: i64,
    /// `None` on SQLite, whose single writer commits ids in order.
    pub snapshot: Option<Snapshot>,
}

/// What was in progress when a horizon was read (PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The read's snapshot, cluster-wide: every transaction below `xmin` had ended, every one
    /// from `xmax` on had not begun (64-bit transaction ids).
    pub xmin: i64,
    pub xmax: i64,
    /// The (32-bit) ids of the write transactions then running in this database; `None` when
    /// some session here is another role's, whose transaction the read may not see.
    pub running: Option<Vec<i64>>,
}

/// The newest timeline id, the snapshot it was read in and the transactions running in this
/// database, in one statement.
pub async fn event_horizon<C: ConnectionTrait>(db: &C) -> Result<Horizon, DbErr> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Postgres {
        return Ok(Horizon {
            newest: newest_event_id(db).await?,
            snapshot: None,
        });
    }
    // A session of a role the reader may not inspect shows its query as this text and hides
    // its transaction id.
    let statement = sea_orm::Statement::from_string(
        sea_orm::DatabaseBackend::Postgres,
        "SELECT (SELECT COALESCE(MAX(id), 0) FROM workflow_events) AS newest, \
                pg_snapshot_xmin(s)::text::bigint AS xmin, \
                pg_snapshot_xmax(s)::text::bigint AS xmax, \
                a.hidden, a.running \
         FROM pg_current_snapshot() AS s, \
              (SELECT coalesce(bool_or(query = '<insufficient privilege>'), false) AS hidden, \
                      coalesce(string_agg(backend_xid::text, ','), '') AS running \
               FROM pg_stat_activity WHERE datname = current_database()) AS a",
    );
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| DbErr::Custom("the horizon read returned no row".into()))?;
    let hidden: bool = row.try_get("", "hidden")?;
    let running: String = row.try_get("", "running")?;
    let running = (!hidden).then(|| {
        running
            .split(',')
            .filter_map(|xid| xid.parse().ok())
            .collect()
    });
    Ok(Horizon {
        newest: row.try_get("", "newest")?,
        snapshot: Some(Snapshot {
            xmin: row.try_get("", "xmin")?,
            xmax: row.try_get("", "xmax")?,
            running,
        }),
    })
}

/// Up to `limit` timeline entries in `scope` with ids in `(after, upto]` (no upper bound when
/// `upto` is `None`), in id order, with their workflow's account and provider.
pub async fn feed_events<C: ConnectionTrait>(
    db: &C,
    scope: Scope,
    after: i64,
    upto: Option<i64>,
    limit: u64,
) -> Result<Vec<FeedEvent>, DbErr> {
    let mut query = workflow_event::Entity::find()
        .filter(workflow_event::Column::Id.gt(after))
        .order_by_asc(workflow_event::Column::Id)
        .limit(limit);
    if let Some(upto) = upto {
        query = query.filter(workflow_event::Column::Id.lte(upto));
    }
    query = match scope {
        Scope::All => query,
        Scope::Workflow(id) => query.filter(workflow_event::Column::WorkflowId.eq(id)),
        Scope::Account(account_id) => query.filter(
            workflow_event::Column::WorkflowId.in_subquery(
                Query::select()
                    .column(workflow::Column::Id)
                    .from(workflow::Entity)
                    .and_where(workflow::Column::AccountId.eq(account_id))
                    .take(),
            ),
        ),
    };
    let events = query.all(db).await?;
    let owners = owners_of(db, &events).await?;
    Ok(events
        .into_iter()
        .filter_map(|event| {
            let (account_id, provider) = owners.get(&event.workflow_id)?.clone();
            Some(FeedEvent {
                id: event.id,
                workflow_id: event.workflow_id,
                account_id,
                provider,
                from: event.from_state,
                to: event.to_state,
                reason: event.reason,
                attempt: event.attempt,
                version: event.version,
                at: event.at,
            })
        })
        .collect())
}

/// Each event's workflow's account and provider.
async fn owners_of<C: ConnectionTrait>(
    db: &C,
    events: &[workflow_event::Model],
) -> Result<HashMap<Uuid, (Uuid, String)>, DbErr> {
    let ids: HashSet<Uuid> = events.iter().map(|event| event.workflow_id).collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = workflow::Entity::find()
        .select_only()
        .columns([
            workflow::Column::Id,
            workflow::Column::AccountId,
            workflow::Column::Provider,
        ])
        .filter(workflow::Column::Id.is_in(ids))
        .into_tuple::<(Uuid, Uuid, String)>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, account_id, provider)| (id, (account_id, provider)))
        .collect())
}

/// How many workflows each state holds now (states holding none are absent).
pub async fn counts_by_state<C: ConnectionTrait>(
    db: &C,
) -> Result<Vec<(WorkflowState, i64)>, DbErr> {
    workflow::Entity::find()
        .select_only()
        .column(workflow::Column::State)
        .column_as(workflow::Column::Id.count(), "count")
        .group_by(workflow::Column::State)
        .into_tuple()
        .all(db)
        .await
}

/// Workflows that ended within one hour, with one state and failure code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedInHour {
    pub hour: DateTime<Utc>,
    pub state: WorkflowState,
    pub error_code: Option<String>,
    pub count: i64,
}

/// Terminal workflows that ended (their last update) in [`from`, `to`), counted per hour, state
/// and failure code, oldest hour first. The hour is computed in SQL, in each database's own
/// dialect (sea-query has no portable date truncation), so that the count of rows read stays
/// in the database.
pub async fn ended_per_hour<C: ConnectionTrait>(
    db: &C,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<EndedInHour>, DbErr> {
    let hour = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => {
            "CAST(floor(extract(epoch FROM updated_at) / 3600) AS BIGINT)"
        }
        _ => "CAST(strftime('%s', updated_at) AS INTEGER) / 3600",
    };
    let rows: Vec<(i64, WorkflowState, Option<String>, i64)> = workflow::Entity::find()
        .select_only()
        .column_as(Expr::cust(hour), "hour")
        .column(workflow::Column::State)
        .column(workflow::Column::ErrorCode)
        .column_as(workflow::Column::Id.count(), "count")
        .filter(workflow::Column::State.is_in([WorkflowState::Settled, WorkflowState::Released]))
        .filter(workflow::Column::UpdatedAt.gte(from))
        .filter(workflow::Column::UpdatedAt.lt(to))
        .group_by(Expr::cust(hour))
        .group_by(workflow::Column::State)
        .group_by(workflow::Column::ErrorCode)
        .order_by_asc(Expr::cust(hour))
        .into_tuple()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(hour, state, error_code, count)| {
            let hour = DateTime::from_timestamp(hour.checked_mul(3600)?, 0)?;
            Some(EndedInHour {
                hour,
                state,
                error_code,
                count,
            })
        })
        .collect())
}

/// Live workflows created at or before `created_by`, oldest first, at most `limit`.
pub async fn live_since<C: ConnectionTrait>(
    db: &C,
    created_by: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<workflow::Model>, DbErr> {
    workflow::Entity::find()
        .filter(workflow::Column::State.is_in(LIVE))
        .filter(workflow::Column::CreatedAt.lte(created_by))
        .order_by_asc(workflow::Column::CreatedAt)
        .order_by_asc(workflow::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
