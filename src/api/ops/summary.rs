//! `GET /v1/ops/summary`: the overview an operator opens first — workflows per state now,
//! settled and released per hour over a range, the oldest live generation and a watchlist of
//! those live past a threshold, and what the ledger moved over the range. Every read is
//! bounded: the range (at most `MAX_RANGE`), the watchlist (`WATCHLIST`), and the whole in
//! time (`SUMMARY_TIMEOUT`, each statement on PostgreSQL too).
use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::db;
use atelier_actors::ledger::read as ledger_read;
use atelier_actors::workflow::WorkflowState;
use atelier_actors::workflow::read::{self as workflow_read, EndedInHour};
use atelier_entities::ledger_entry::EntryKind;
use atelier_entities::workflow;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use sea_orm::DbErr;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::bounded::within;
use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::ledger::instant;
use crate::api::openapi::ErrorBody;
use crate::api::query::Params;
use crate::state::AppState;

pub const DEFAULT_RANGE: TimeDelta = TimeDelta::hours(24);
pub const MAX_RANGE: TimeDelta = TimeDelta::days(31);
pub const DEFAULT_WATCH_AFTER_SECS: i64 = 600;
/// The longest `watch_after_secs`: a week.
pub const MAX_WATCH_AFTER_SECS: i64 = 7 * 24 * 3600;
pub const WATCHLIST: u64 = 50;
pub const SUMMARY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Serialize, ToSchema)]
struct HourView {
    hour: DateTime<Utc>,
    settled: i64,
    /// Released workflows per failure code.
    released: BTreeMap<String, i64>,
}

#[derive(Debug, Serialize, ToSchema)]
struct LiveView {
    id: Uuid,
    account_id: Uuid,
    state: &'static str,
    provider: String,
    created_at: DateTime<Utc>,
    age_secs: i64,
}

impl LiveView {
    fn new(row: workflow::Model, now: DateTime<Utc>) -> Self {
        Self {
            id: row.id,
            account_id: row.account_id,
            state: row.state.as_str(),
            provider: row.provider,
            created_at: row.created_at,
            age_secs: (now - row.created_at).num_seconds(),
        }
    }
}

/// Credits each kind of ledger entry moved over the range.
#[derive(Debug, Default, Serialize, ToSchema)]
struct LedgerTotals {
    granted: i64,
    held: i64,
    consumed: i64,
    released: i64,
    expired: i64,
    voided: i64,
}

#[derive(Debug, Serialize, ToSchema)]
struct SummaryView {
    now: DateTime<Utc>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    /// Workflows per state now, every state named.
    #[schema(value_type = BTreeMap<String, i64>)]
    states: BTreeMap<&'static str, i64>,
    hours: Vec<HourView>,
    oldest_live: Option<LiveView>,
    watch_after_secs: i64,
    /// Live generations created more than `watch_after_secs` ago, oldest first.
    watchlist: Vec<LiveView>,
    ledger: LedgerTotals,
}

/// What the query string asks for.
struct Asked {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    watch_after: TimeDelta,
}

fn asked(params: &Params, now: DateTime<Utc>) -> Result<Asked, ApiError> {
    let to = instant(params, "to")?.unwrap_or(now);
    let from = instant(params, "from")?.unwrap_or(to - DEFAULT_RANGE);
    if from >= to {
        return Err(ApiError::invalid(
            "invalid_range",
            "from: must be before to",
        ));
    }
    if to - from > MAX_RANGE {
        return Err(ApiError::invalid(
            "invalid_range",
            format!("from: at most {} days before to", MAX_RANGE.num_days()),
        ));
    }
    let must_be = format!("an integer from 1 to {MAX_WATCH_AFTER_SECS}");
    let watch_after =
        params.parsed("watch_after_secs", "invalid_watch_after", &must_be, |raw| {
            raw.parse::<i64>()
                .ok()
                .filter(|secs| (1..=MAX_WATCH_AFTER_SECS).contains(secs))
        })?;
    Ok(Asked {
        from,
        to,
        watch_after: TimeDelta::seconds(watch_after.unwrap_or(DEFAULT_WATCH_AFTER_SECS)),
    })
}

#[utoipa::path(
    get, path = "/v1/ops/summary", tag = "ops",
    security(("operator_token" = [])),
    params(
        ("from" = Option<DateTime<Utc>>, Query, description = "RFC 3339; 24 hours before `to` when absent, at most 31 days before it"),
        ("to" = Option<DateTime<Utc>>, Query, description = "RFC 3339; now when absent"),
        ("watch_after_secs" = Option<i64>, Query, minimum = 1, maximum = 604800, description = "Live generations older than this are on the watchlist; 600 when absent"),
    ),
    responses(
        (status = 200, description = "States now, the range per hour, the oldest live generations and the ledger's totals", body = SummaryView),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_time`, `invalid_range` (`from` not before `to`, or more than 31 days), `invalid_watch_after`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody),
        (status = 504, description = "`summary_timeout`: the reads took longer than 10 s", body = ErrorBody)
    )
)]
pub async fn get(
    _: Operator,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["from", "to", "watch_after_secs"])?;
    let now = state.clock.now();
    let asked = asked(&params, now)?;
    let message = format!(
        "the summary took longer than {} s; ask for a shorter range",
        SUMMARY_TIMEOUT.as_secs()
    );
    let work = summarize(&state, &asked, now);
    let summary = within(SUMMARY_TIMEOUT, "summary_timeout", &message, work).await?;
    Ok(HttpResponse::Ok().json(summary))
}

/// Every read in one snapshot, so that the numbers agree with each other.
async fn summarize(
    state: &AppState,
    asked: &Asked,
    now: DateTime<Utc>,
) -> Result<SummaryView, DbErr> {
    let snapshot = db::begin_bounded_snapshot(&state.db, SUMMARY_TIMEOUT).await?;
    let mut states: BTreeMap<&'static str, i64> = WorkflowState::ALL
        .iter()
        .map(|state| (state.as_str(), 0))
        .collect();
    for (state, count) in workflow_read::counts_by_state(&snapshot).await? {
        states.insert(state.as_str(), count);
    }
    let ended = workflow_read::ended_per_hour(&snapshot, asked.from, asked.to).await?;
    let oldest = workflow_read::live_since(&snapshot, now, 1).await?;
    let watched = workflow_read::live_since(&snapshot, now - asked.watch_after, WATCHLIST).await?;
    let totals = ledger_read::totals_by_kind(&snapshot, asked.from, asked.to).await?;
    snapshot.rollback().await?;
    let total = |kind| totals.get(&kind).copied().unwrap_or(0);
    Ok(SummaryView {
        now,
        from: asked.from,
        to: asked.to,
        states,
        hours: hours(asked.from, asked.to, ended),
        oldest_live: oldest.into_iter().next().map(|row| LiveView::new(row, now)),
        watch_after_secs: asked.watch_after.num_seconds(),
        watchlist: watched
            .into_iter()
            .map(|row| LiveView::new(row, now))
            .collect(),
        ledger: LedgerTotals {
            granted: total(EntryKind::Grant),
            held: total(EntryKind::Hold),
            consumed: total(EntryKind::Settle),
            released: total(EntryKind::Release),
            expired: total(EntryKind::Expire),
            voided: total(EntryKind::Void),
        },
    })
}

/// One entry per hour the range touches, oldest first, empty hours included (a chart needs
/// them): at most 31 × 24 + 1.
fn hours(from: DateTime<Utc>, to: DateTime<Utc>, ended: Vec<EndedInHour>) -> Vec<HourView> {
    let hour = TimeDelta::hours(1);
    let first = from.duration_trunc(hour).unwrap_or(from);
    let mut by_hour: BTreeMap<DateTime<Utc>, HourView> = BTreeMap::new();
    let mut at = first;
    while at < to {
        by_hour.insert(
            at,
            HourView {
                hour: at,
                settled: 0,
                released: BTreeMap::new(),
            },
        );
        at += hour;
    }
    for row in ended {
        let Some(view) = by_hour.get_mut(&row.hour) else {
            continue;
        };
        match row.state {
            WorkflowState::Settled => view.settled += row.count,
            _ => {
                let code = row.error_code.unwrap_or_else(|| "unknown".into());
                *view.released.entry(code).or_default() += row.count;
            }
        }
    }
    by_hour.into_values().collect()
}
