//! `GET /v1/ledger`: the caller's append-only entries, newest first, cursor-paginated.
use std::collections::HashMap;

use actix_web::{HttpResponse, web};
use atelier_actors::ledger::read;
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::auth::Client;
use super::error::ApiError;
use crate::state::AppState;

const DEFAULT_LIMIT: u64 = 50;
const MAX_LIMIT: u64 = 200;

#[derive(Debug, Serialize)]
struct EntryView {
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

#[derive(Debug, Serialize)]
struct Page {
    items: Vec<EntryView>,
    next_cursor: Option<String>,
}

pub fn parse_limit(query: &HashMap<String, String>) -> Result<u64, ApiError> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(raw) => raw
            .parse::<u64>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                ApiError::invalid(
                    "invalid_limit",
                    format!("limit: must be an integer from 1 to {MAX_LIMIT}"),
                )
            }),
    }
}

pub async fn list(
    Client(account): Client,
    state: web::Data<AppState>,
    query: web::Query<HashMap<String, String>>,
) -> Result<HttpResponse, ApiError> {
    let limit = parse_limit(&query)?;
    let before = match query.get("cursor") {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| {
                    ApiError::invalid(
                        "invalid_cursor",
                        "cursor: not a cursor this endpoint returned",
                    )
                })?,
        ),
    };
    let (entries, next) = read::entries_page(&state.db, account.id, before, limit).await?;
    let items = entries
        .into_iter()
        .map(|entry| EntryView {
            id: entry.id,
            kind: entry.kind.as_str(),
            package_id: entry.package_id,
            amount: entry.amount,
            generation_id: entry.generation_id,
            hold_id: entry.hold_id,
            available_after: entry.available_after,
            held_after: entry.held_after,
            at: entry.created_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}
