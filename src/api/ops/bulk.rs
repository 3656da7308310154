//! `POST /v1/ops/generations/bulk`: cancel or wake every live generation a filter matches —
//! a dry run answers the count; the real run needs that count back and a reason, and starts a
//! background job (`crate::ops::bulk`) whose progress `GET /v1/ops/bulk/{id}` shows.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::workflow::read as workflows;
use atelier_entities::ops_bulk_job;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::generation_filter::FilterSpec;
use super::generations::within_timeout;
use super::{action, checked_reason};
use crate::api::auth::{Admin, Operator};
use crate::api::error::ApiError;
use crate::api::json::ApiJson;
use crate::api::openapi::ErrorBody;
use crate::api::query::{Page, Params};
use crate::ops::audit;
use crate::ops::bulk::{self, BulkAction, MAX_TARGETS, NewJob};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    #[serde(default)]
    filter: FilterSpec,
    /// `cancel` or `wake`.
    #[schema(pattern = "^(cancel|wake)$")]
    action: String,
    /// True: only count the targets. False: start the job (needs `reason` and `expected_count`).
    dry_run: bool,
    /// The count a dry run answered; needed for a real run.
    #[serde(default)]
    expected_count: Option<u64>,
    /// Needed for a real run: 1 to 1000 bytes once trimmed.
    #[serde(default)]
    #[schema(max_length = 1000)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
struct DryRun {
    action: &'static str,
    count: u64,
    filter: FilterSpec,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobView {
    id: Uuid,
    action: String,
    #[schema(value_type = Object)]
    filter: serde_json::Value,
    reason: String,
    state: String,
    total: i64,
    done: i64,
    skipped: i64,
    failed: i64,
    error: Option<String>,
    started_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<ops_bulk_job::Model> for JobView {
    fn from(row: ops_bulk_job::Model) -> Self {
        Self {
            id: row.id,
            action: row.action,
            filter: serde_json::from_str(&row.filter).unwrap_or_default(),
            reason: row.reason,
            state: row.state,
            total: row.total,
            done: row.done,
            skipped: row.skipped,
            failed: row.failed,
            error: row.error,
            started_at: row.started_at,
            updated_at: row.updated_at,
            finished_at: row.finished_at,
        }
    }
}

#[utoipa::path(
    post, path = "/v1/ops/generations/bulk", tag = "ops",
    security(("admin_token" = [])),
    request_body = BulkBody,
    responses(
        (status = 200, description = "A dry run: how many live generations the filter matches, and the filter made absolute", body = DryRun),
        (status = 202, description = "The job, started in the background", body = JobView),
        (status = 409, description = "`count_changed`: the count is not `expected_count` any more (the message gives it)", body = ErrorBody),
        (status = 422, description = "`invalid_action`, `too_many` (above 10,000 targets), `missing_reason`, `invalid_reason`, `missing_expected_count`, the filter's `invalid_state`, `invalid_account`, `invalid_time`, `invalid_range`, `invalid_filter`; or a body field error", body = ErrorBody),
        (status = 503, description = "`query_timeout`: counting took longer than 5 s; narrow the filter", body = ErrorBody)
    )
)]
pub async fn start(
    _: Admin,
    state: web::Data<AppState>,
    request: HttpRequest,
    body: ApiJson<BulkBody>,
) -> Result<HttpResponse, ApiError> {
    let body = body.0;
    let kind = BulkAction::parse(&body.action)
        .ok_or_else(|| ApiError::invalid("invalid_action", "action: cancel or wake"))?;
    let now = state.clock.now();
    let filter = body.filter.resolve(now)?;
    let absolute = FilterSpec::absolute(&filter);
    let count = within_timeout(async {
        Ok(workflows::count_bulk_targets(&state.db, &filter, now, MAX_TARGETS + 1).await?)
    })
    .await?;
    if count > MAX_TARGETS {
        return Err(ApiError::invalid(
            "too_many",
            format!("more than {MAX_TARGETS} generations match; narrow the filter"),
        ));
    }
    if body.dry_run {
        return Ok(HttpResponse::Ok().json(DryRun {
            action: kind.as_str(),
            count,
            filter: absolute,
        }));
    }
    let reason = confirmed(body.reason, body.expected_count, count)?;
    let id = Uuid::now_v7();
    let mut entry = action(
        &request,
        match kind {
            BulkAction::Cancel => "generation.bulk_cancel",
            BulkAction::Wake => "generation.bulk_wake",
        },
        "bulk_job",
        Some(id.to_string()),
        Some(reason.clone()),
    );
    entry.filter = Some(serde_json::to_value(&absolute).expect("serialises"));
    audit::record(&state.db, entry, now).await?;
    let job = bulk::create(
        &state.db,
        NewJob {
            id,
            action: kind,
            filter: absolute,
            reason,
            total: count,
            cutoff: now,
        },
    )
    .await?;
    tracing::info!(bulk_job_id = %id, action = kind.as_str(), total = count, "bulk job started");
    bulk::spawn(state.clone(), id);
    Ok(HttpResponse::Accepted().json(JobView::from(job)))
}

/// What a real run needs beyond a dry run: a reason, and the count the operator saw, which
/// must still be the count. The reason, checked.
fn confirmed(
    reason: Option<String>,
    expected: Option<u64>,
    count: u64,
) -> Result<String, ApiError> {
    let reason = checked_reason(reason, true)?.expect("a required reason is present");
    let expected = expected.ok_or_else(|| {
        ApiError::invalid(
            "missing_expected_count",
            "expected_count: the count a dry run answered",
        )
    })?;
    if expected != count {
        return Err(ApiError::conflict(
            "count_changed",
            format!("{count} generations match now, not {expected}; check again with a dry run"),
        ));
    }
    Ok(reason)
}

#[utoipa::path(
    get, path = "/v1/ops/bulk/{id}", tag = "ops",
    security(("operator_token" = [])),
    params(("id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job and its progress", body = JobView),
        (status = 404, description = "`bulk_job_not_found`", body = ErrorBody)
    )
)]
pub async fn get(
    _: Operator,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let not_found = || ApiError::not_found("bulk_job_not_found", "no such bulk job");
    let id = Uuid::parse_str(&path).map_err(|_| not_found())?;
    let job = bulk::find(&state.db, id).await?.ok_or_else(not_found)?;
    Ok(HttpResponse::Ok().json(JobView::from(job)))
}

#[utoipa::path(
    get, path = "/v1/ops/bulk", tag = "ops",
    security(("operator_token" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<uuid::Uuid>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "The bulk jobs, newest first", body = Page<JobView, Uuid>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn list(
    _: Operator,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(&request, &["limit", "cursor"])?;
    let limit = params.limit()?;
    let before = params.cursor(|raw| Uuid::parse_str(raw).ok())?;
    let (rows, next) = bulk::list(&state.db, before, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(JobView::from).collect::<Vec<_>>(),
        next_cursor: next,
    }))
}
