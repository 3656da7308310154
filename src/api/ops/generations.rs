//! `GET /v1/ops/generations`: every account's generations, filtered (`generation_filter`),
//! sorted, a cursor's page at a time, with the totals per state for the filter. Bounded: the
//! time range defaults to the last day, counts stop at `COUNT_CAP`, and the whole read gives up
//! after `QUERY_TIMEOUT` with 503 `query_timeout`.
use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::workflow::WorkflowState;
use atelier_actors::workflow::read::{self as workflows, SortBy, SortKey, WorkflowFilter};
use atelier_entities::workflow;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::generation_filter::{FILTER_PARAMS, FilterSpec};
use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::openapi::ErrorBody;
use crate::api::query::Params;
use crate::state::AppState;

/// Counts stop here (`totals_capped` says when one did).
pub const COUNT_CAP: u64 = 100_000;
/// Longest an operator's read may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// A generation as an operator lists it: the whole row but its secrets and inputs.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpsGeneration {
    pub id: Uuid,
    pub account_id: Uuid,
    pub state: &'static str,
    pub provider: String,
    pub provider_task_id: Option<String>,
    pub cost: i64,
    pub charge: Option<i64>,
    pub attempt: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub deadline_at: DateTime<Utc>,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub retry_of: Option<Uuid>,
    /// When retention deleted its timeline, callbacks, idempotency key and finished
    /// deliveries (`retention.days` after it ended).
    pub pruned_at: Option<DateTime<Utc>>,
    /// When retention deleted its result object (`retention.results_days` after it settled).
    pub result_expired_at: Option<DateTime<Utc>>,
}

impl From<workflow::Model> for OpsGeneration {
    fn from(row: workflow::Model) -> Self {
        Self {
            id: row.id,
            account_id: row.account_id,
            state: row.state.as_str(),
            provider: row.provider,
            provider_task_id: row.provider_task_id,
            cost: row.cost,
            charge: row.charge,
            attempt: row.attempt,
            next_attempt_at: row.next_attempt_at,
            deadline_at: row.deadline_at,
            error_code: row.error_code,
            error_message: row.error_message,
            created_at: row.created_at,
            updated_at: row.updated_at,
            retry_of: row.retry_of,
            pruned_at: row.pruned_at,
            result_expired_at: row.result_expired_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct ListPage {
    items: Vec<OpsGeneration>,
    next_cursor: Option<String>,
    /// Per state, what the filter matches without its `state` part.
    #[schema(value_type = BTreeMap<String, u64>)]
    totals: BTreeMap<&'static str, u64>,
    /// A total reached `COUNT_CAP` (it says at least that many).
    totals_capped: bool,
    /// The filter as applied, its time range absolute (to share or page through).
    filter: FilterSpec,
}

/// How a page is ordered, as the query string says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Order {
    sort: SortBy,
    ascending: bool,
}

impl Order {
    fn parse(params: &Params) -> Result<Self, ApiError> {
        let sort =
            params.parsed(
                "sort",
                "invalid_sort",
                "created_at or updated_at",
                |raw| match raw {
                    "created_at" => Some(SortBy::CreatedAt),
                    "updated_at" => Some(SortBy::UpdatedAt),
                    _ => None,
                },
            )?;
        let ascending =
            params.parsed("order", "invalid_order", "asc or desc", |raw| match raw {
                "asc" => Some(true),
                "desc" => Some(false),
                _ => None,
            })?;
        Ok(Self {
            sort: sort.unwrap_or(SortBy::CreatedAt),
            ascending: ascending.unwrap_or(false),
        })
    }

    fn tag(self) -> &'static str {
        match (self.sort, self.ascending) {
            (SortBy::CreatedAt, true) => "ca",
            (SortBy::CreatedAt, false) => "cd",
            (SortBy::UpdatedAt, true) => "ua",
            (SortBy::UpdatedAt, false) => "ud",
        }
    }

    /// The opaque cursor after `key`, valid for this order only.
    fn cursor(self, (at, id): SortKey) -> String {
        let at = at.to_rfc3339_opts(SecondsFormat::AutoSi, true);
        URL_SAFE_NO_PAD.encode(format!("{}|{at}|{id}", self.tag()))
    }

    fn read_cursor(self, raw: &str) -> Option<SortKey> {
        let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        let mut parts = decoded.splitn(3, '|');
        let (tag, at, id) = (parts.next()?, parts.next()?, parts.next()?);
        if tag != self.tag() {
            return None;
        }
        let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
        Some((at, Uuid::parse_str(id).ok()?))
    }
}

#[utoipa::path(
    get, path = "/v1/ops/generations", tag = "ops",
    security(("operator_token" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page, with the same `sort` and `order`"),
        ("sort" = Option<String>, Query, pattern = "^(created_at|updated_at)$", description = "`created_at` (default) or `updated_at`"),
        ("order" = Option<String>, Query, pattern = "^(asc|desc)$", description = "`desc` (default) or `asc`"),
        ("state" = Option<String>, Query, pattern = "^(reserved|submitted|awaiting_callback|uploading|settled|released)(,(reserved|submitted|awaiting_callback|uploading|settled|released))*$", description = "States, comma-separated"),
        ("provider" = Option<String>, Query, min_length = 1, max_length = 255, description = "Only this provider"),
        ("account" = Option<uuid::Uuid>, Query, description = "Only this account's"),
        ("error_code" = Option<String>, Query, min_length = 1, max_length = 255, description = "Only with this error code"),
        ("created_from" = Option<DateTime<Utc>>, Query, description = "Created at or after (RFC 3339); a range is at most 31 days"),
        ("created_to" = Option<DateTime<Utc>>, Query, description = "Created at or before (RFC 3339)"),
        ("updated_from" = Option<DateTime<Utc>>, Query, description = "Updated at or after (RFC 3339)"),
        ("updated_to" = Option<DateTime<Utc>>, Query, description = "Updated at or before (RFC 3339)"),
        ("q" = Option<String>, Query, min_length = 1, max_length = 255, description = "A generation id or a provider task id"),
    ),
    responses(
        (status = 200, description = "A page of every account's generations, the totals per state and the filter as applied", body = ListPage),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `invalid_sort`, `invalid_order`, `invalid_state`, `invalid_account`, `invalid_time`, `invalid_range`, `invalid_filter`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody),
        (status = 503, description = "`query_timeout`: the read took longer than 5 s; narrow the filter", body = ErrorBody)
    )
)]
pub async fn list(
    _: Operator,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut allowed = vec!["limit", "cursor", "sort", "order"];
    allowed.extend(FILTER_PARAMS);
    let params = Params::parse(&request, &allowed)?;
    let limit = params.limit()?;
    let order = Order::parse(&params)?;
    let after = params.cursor(|raw| order.read_cursor(raw))?;
    let filter = FilterSpec::from_params(&params)?.resolve(state.clock.now())?;
    let read = async {
        let (rows, next) = workflows::search(
            &state.db,
            &filter,
            order.sort,
            order.ascending,
            after,
            limit,
        )
        .await?;
        let totals = totals(&state, &filter).await?;
        Ok::<_, ApiError>((rows, next, totals))
    };
    let (rows, next, totals) = within_timeout(read).await?;
    let totals_capped = totals.values().any(|count| *count >= COUNT_CAP);
    Ok(HttpResponse::Ok().json(ListPage {
        items: rows.into_iter().map(OpsGeneration::from).collect(),
        next_cursor: next.map(|key| order.cursor(key)),
        totals,
        totals_capped,
        filter: FilterSpec::absolute(&filter),
    }))
}

/// Runs an operator's read for at most `QUERY_TIMEOUT`; past it, 503 `query_timeout`. A read
/// the database cut for waiting on a lock (`lock_timeout`, as long) timed out too.
pub async fn within_timeout<T>(
    read: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let timed_out = || {
        ApiError::new(
            actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
            "query_timeout",
            format!(
                "the query took longer than {} s; narrow the filter",
                QUERY_TIMEOUT.as_secs()
            ),
        )
    };
    match tokio::time::timeout(QUERY_TIMEOUT, read).await {
        Err(_) => Err(timed_out()),
        Ok(Err(error)) if error.code == "database_busy" => Err(timed_out()),
        Ok(answer) => answer,
    }
}

/// What `filter` matches in each state, its own state part left out (so that the totals show
/// where the rest of the filter's generations are), each counted up to `COUNT_CAP`.
async fn totals(
    state: &AppState,
    filter: &WorkflowFilter,
) -> Result<BTreeMap<&'static str, u64>, ApiError> {
    let mut totals = BTreeMap::new();
    for one in WorkflowState::ALL {
        let mut narrowed = filter.clone();
        narrowed.states = vec![one];
        let count = workflows::count_capped(&state.db, &narrowed, COUNT_CAP).await?;
        totals.insert(one.as_str(), count);
    }
    Ok(totals)
}

/// The generation named in the path, whoever owns it; 404 otherwise.
pub async fn find(state: &AppState, raw_id: &str) -> Result<workflow::Model, ApiError> {
    let not_found = || ApiError::not_found("generation_not_found", "no such generation");
    let id = Uuid::parse_str(raw_id).map_err(|_| not_found())?;
    workflows::find(&state.db, id).await?.ok_or_else(not_found)
}
