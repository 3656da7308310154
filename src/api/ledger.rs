//! `GET /v1/ledger`: the caller's append-only entries, newest first, cursor-paginated, filtered
//! by kind, generation and time.
use actix_web::{HttpRequest, HttpResponse, web};
use atelier_actors::ledger::read::{self, EntryFilter};
use atelier_entities::ledger_entry::{self, EntryKind};
use chrono::{DateTime, Utc};
use sea_orm::Iterable;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use super::openapi::ErrorBody;
use super::query::{Page, Params};
use crate::state::AppState;

/// A ledger entry as the API shows it (also on an account's ops page).
#[derive(Debug, Serialize, ToSchema)]
pub struct EntryView {
    id: i64,
    kind: &'static str,
    package_id: Uuid,
    amount: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    generation_id: Option<Uuid>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_id: Option<Uuid>,
    available_after: i64,
    held_after: i64,
    at: DateTime<Utc>,
}

impl From<ledger_entry::Model> for EntryView {
    fn from(entry: ledger_entry::Model) -> Self {
        Self {
            id: entry.id,
            kind: entry.kind.as_str(),
            package_id: entry.package_id,
            amount: entry.amount,
            generation_id: entry.generation_id,
            hold_id: entry.hold_id,
            available_after: entry.available_after,
            held_after: entry.held_after,
            at: entry.created_at,
        }
    }
}

/// The filters `GET /v1/ledger` takes, each checked.
fn filter(params: &Params) -> Result<EntryFilter, ApiError> {
    let kinds: Vec<&str> = EntryKind::iter().map(EntryKind::as_str).collect();
    let kind = params.parsed(
        "kind",
        "invalid_kind",
        &format!("one of {}", kinds.join(", ")),
        |raw| EntryKind::iter().find(|kind| kind.as_str() == raw),
    )?;
    let generation_id = params.parsed(
        "generation",
        "invalid_generation",
        "a generation id",
        |raw| Uuid::parse_str(raw).ok(),
    )?;
    let from = instant(params, "from")?;
    let to = instant(params, "to")?;
    if let (Some(from), Some(to)) = (from, to)
        && from >= to
    {
        return Err(ApiError::invalid(
            "invalid_range",
            "from: must be before to",
        ));
    }
    Ok(EntryFilter {
        kind,
        generation_id,
        from,
        to,
    })
}

/// An RFC 3339 timestamp (`+` written `%2B`, as a query string reads `+` as a space).
pub(crate) fn instant(params: &Params, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
    params.parsed(
        name,
        "invalid_time",
        "an RFC 3339 timestamp such as 2030-01-01T00:00:00Z",
        |raw| {
            DateTime::parse_from_rfc3339(raw)
                .ok()
                .map(|at| at.with_timezone(&Utc))
        },
    )
}

#[utoipa::path(
    get, path = "/v1/ledger", tag = "client",
    security(("api_key" = [])),
    params(
        ("limit" = Option<u64>, Query, minimum = 1, maximum = 200, description = "Page size, 50 when absent"),
        ("cursor" = Option<String>, Query, pattern = "^[1-9][0-9]{0,17}$", description = "`next_cursor` of the previous page"),
        ("kind" = Option<String>, Query, pattern = "^(grant|hold|settle|release|expire|void)$", description = "`grant`, `hold`, `settle`, `release`, `expire` or `void`"),
        ("generation" = Option<uuid::Uuid>, Query, description = "Only this generation's entries"),
        ("from" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "Entries at or after this instant"),
        ("to" = Option<chrono::DateTime<chrono::Utc>>, Query, description = "Entries before this instant"),
    ),
    responses(
        (status = 200, description = "The caller's entries, newest first", body = Page<EntryView, String>),
        (status = 400, description = "`malformed_query`", body = ErrorBody),
        (status = 422, description = "`invalid_limit`, `invalid_cursor`, `invalid_kind`, `invalid_generation`, `invalid_time`, `invalid_range`, `unknown_parameter`, `duplicate_parameter`", body = ErrorBody)
    )
)]
pub async fn list(
    Client(account): Client,
    state: web::Data<AppState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let params = Params::parse(
        &request,
        &["limit", "cursor", "kind", "generation", "from", "to"],
    )?;
    let limit = params.limit()?;
    let before = params.cursor(|raw| raw.parse::<i64>().ok().filter(|id| *id > 0))?;
    let filter = filter(&params)?;
    let (entries, next) = read::entries_page(&state.db, account.id, &filter, before, limit).await?;
    let items: Vec<EntryView> = entries.into_iter().map(EntryView::from).collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}
