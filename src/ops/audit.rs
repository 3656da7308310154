//! The operators' audit log, the one owner of the `ops_audit` table. Every operator action
//! appends its row *before* it runs: a crash between the two leaves a recorded request whose
//! effect may be missing, never an effect nobody recorded. Rows are never changed.
use atelier_entities::ops_audit;
use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

/// Longest reason kept; the API refuses longer ones before anything is written.
pub const MAX_REASON_LEN: usize = 1000;

/// One action about to run.
#[derive(Debug, Clone)]
pub struct Action {
    pub operator: &'static str,
    /// What is done, e.g. `generation.cancel` (`<target kind>.<verb>`).
    pub action: &'static str,
    pub target_kind: &'static str,
    pub target_id: Option<String>,
    /// The filter of a bulk action, as JSON.
    pub filter: Option<serde_json::Value>,
    pub reason: Option<String>,
    /// The request's peer address.
    pub source: String,
}

/// Appends `action`; its id. The caller runs the action only once this returned.
pub async fn record(
    db: &impl ConnectionTrait,
    action: Action,
    now: DateTime<Utc>,
) -> Result<i64, DbErr> {
    let row = ops_audit::ActiveModel {
        id: NotSet,
        at: Set(now),
        operator: Set(action.operator.to_owned()),
        action: Set(action.action.to_owned()),
        target_kind: Set(action.target_kind.to_owned()),
        target_id: Set(action.target_id),
        filter: Set(action.filter.map(|filter| filter.to_string())),
        reason: Set(action.reason),
        source: Set(action.source.chars().take(64).collect()),
    };
    let inserted = ops_audit::Entity::insert(row).exec(db).await?;
    Ok(inserted.last_insert_id)
}

/// What `list` narrows the log to.
#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
}

/// Newest first, ids below `before`; the page and the cursor of the next one.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<(Vec<ops_audit::Model>, Option<i64>), DbErr> {
    let mut query = ops_audit::Entity::find();
    if let Some(action) = &filter.action {
        query = query.filter(ops_audit::Column::Action.eq(action.as_str()));
    }
    if let Some(kind) = &filter.target_kind {
        query = query.filter(ops_audit::Column::TargetKind.eq(kind.as_str()));
    }
    if let Some(id) = &filter.target_id {
        query = query.filter(ops_audit::Column::TargetId.eq(id.as_str()));
    }
    if let Some(before) = before {
        query = query.filter(ops_audit::Column::Id.lt(before));
    }
    let mut rows = query
        .order_by_desc(ops_audit::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|row| row.id)
    } else {
        None
    };
    Ok((rows, next))
}
