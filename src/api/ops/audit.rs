//! `GET /v1/ops/audit`: the operators' actions, newest first, filtered by action and target.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_entities::ops_audit;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::auth::Operator;
use crate::api::error::ApiError;
use crate::api::openapi::ErrorBody;
use crate::api::query::{Page, Params};
use crate::ops::audit::{self, AuditFilter};
use crate::state::AppState;

/// Longest value a text filter takes.
const MAX_FILTER_LEN: usize = 255;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditView {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub operator: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub filter: Option<serde_json::Value>,
    pub reason: Option<String>,
    pub source: String,
}

impl From<ops_audit::Model> for AuditView {
    fn from(row: ops_audit::Model) -> Self {
        Self {
            id: row.id,
            at: row.at,
            operator: row.operator,
            action: row.action,
            target_kind: row.target_kind,
            target_id: row.target_id,
            filter: row
                .filter
                .and_then(|filter| serde_json::from_str(&filter).ok()),
            reason: row.reason,
            source: row.source,
        }
    }
}

fn text(params: &Params, name: &str) -> Result<Option<String>, ApiError> {
    params.parsed(
        name,
        "invalid_filter",
        &format!("1 to {MAX_FILTER_LEN} bytes"),
        |raw| (!raw.is_empty() && raw.len() <= MAX_FILTER_LEN).then(|| raw.to_owned()),
    )
}

#[utoipa::path(
    get, path = "/v1/ops/audit", tag = "ops",
    security(("operator_token" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<String>, Query, pattern = "^[1-9][0-9]{0,17}$", description = "`next_cursor` of the previous page"),
        ("action" = Option<String>, Query, min_length = 1, max_length = 255, description = "Only this action"),
        ("target_kind" = Option<String>, Query, min_length = 1, max_length = 255, description = "Only actions on this kind of target"),
        ("target_id" = Option<String>, Query, min_length = 1, max_length = 255, description = "Only actions on this target"),
    ),
    responses(
        (status = 200, description = "The operators' actions, newest first", body = Page<AuditView, String>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `invalid_filter`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn list(
    _: Operator,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(
        &request,
        &["limit", "cursor", "action", "target_kind", "target_id"],
    )?;
    let limit = params.limit()?;
    let before = params.cursor(|raw| raw.parse::<i64>().ok().filter(|id| *id > 0))?;
    let filter = AuditFilter {
        action: text(&params, "action")?,
        target_kind: text(&params, "target_kind")?,
        target_id: text(&params, "target_id")?,
    };
    let (rows, next) = audit::list(&state.db, &filter, before, limit).await?;
    Ok(HttpResponse::Ok().json(Page {
        items: rows.into_iter().map(AuditView::from).collect::<Vec<_>>(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}
